"""One DGCN training step's inputs and its supervision work, shared by the step benchmark
(tests/benchmarks/bench_dgcn_step.py) and the GPU check (tools/gpu_check.py)."""

from __future__ import annotations

import numpy as np
import torch

from dgcn.data.loading import normalize, resize_image, resize_labels
from dgcn.data.synthetic import render_scene
from dgcn.graphcut import knn_edges_batch
from dgcn.losses import smoothed_softmax
from dgcn.supervision import crf_images, grow_images
from tools.timing import median_times

CRF = {"gaussian_sxy": 3.0, "gaussian_compat": 3.0, "bilateral_sxy": 80.0, "bilateral_srgb": 13.0,
       "bilateral_compat": 10.0, "iterations": 10, "scale": 1 / 12}


def batch_inputs(rng: np.random.Generator, batch: int, size: int, grid: int, num_classes: int) -> tuple:
    """Synthetic scenes, their ground truth at the grid as dense labels, and cues on ~35% of the grid pixels."""
    scenes = [render_scene(np.random.default_rng([0, 0, i]), size) for i in range(batch)]
    images = np.stack([image for image, _ in scenes])
    labels = np.stack([resize_labels(labels, (grid, grid)) for _, labels in scenes]).astype(np.int64)
    cues = np.zeros((batch, num_classes, grid, grid), np.uint8)
    b, r, c = np.nonzero(rng.random(labels.shape) < 0.35)
    cues[b, labels[b, r, c], r, c] = 1
    classes = [np.unique(row) for row in labels]
    small = np.stack([resize_image(image, (grid, grid)) for image in images])
    return normalize(torch.from_numpy(images)), torch.from_numpy(labels), cues, classes, small


def supervision_work(model: torch.nn.Module, x: torch.Tensor, cues: np.ndarray, classes: list, small: np.ndarray,
                     repeats: int) -> dict[str, float]:
    """Median wall seconds of each part of one batch's supervision run in this process (kNN graphs on the torch
    threads, cuts and CRFs on one core): together a lower bound on the core-seconds the supervision needs."""
    with torch.no_grad():
        out = model(x)
    probs = smoothed_softmax(out.scores).numpy()
    edges = knn_edges_batch(out.features, 10)
    return median_times({
        "knn": lambda: knn_edges_batch(out.features, 10),
        "cuts": lambda: grow_images(cues, probs, classes, edges, 0.7, 10.0),
        "crf": lambda: crf_images(small, probs, CRF),
    }, repeats)

"""DGCN training step vs a plain cross-entropy step of the same model, batch and input.

The DGCN step adds the kNN graph, the per-class graph cuts and the training-time dense CRF (in worker processes) and
the seeding + constrain losses. Target: <= 1.3x the plain step. Two configurations: the embedded default (small net,
96x96, batch 16) and the published network (DeepLab-v2 ResNet-101, 321x321, 21 classes; batch 4 to keep it short on a
CPU). Both steps timed alike: one warm-up step each, then medians of repetitions taking turns.
Run: python tests/benchmarks/bench_dgcn_step.py
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from timing import median_times, verdict

from dgcn.data.loading import normalize, resize_image, resize_labels
from dgcn.data.synthetic import render_scene
from dgcn.graphcut import knn_edges_batch
from dgcn.losses import constrain_loss, seeding_loss, smoothed_softmax
from dgcn.models.registry import build_segmenter
from dgcn.supervision import SupervisionPool, crf_images, grow_images

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


def measure(arch: str, num_classes: int, batch: int, size: int, repeats: int) -> bool:
    """Time both steps on the same model, batch and input; print the figures and the verdict."""
    torch.manual_seed(0)
    model = build_segmenter(arch, num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    grid = -(-size // model.output_stride)
    x, labels, cues, classes, small = batch_inputs(np.random.default_rng(0), batch, size, grid, num_classes)

    def plain_step() -> None:
        loss = F.cross_entropy(model(x).scores, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with SupervisionPool(workers=2, crf_params=CRF) as pool:

        def dgcn_step() -> None:
            out = model(x)
            probs = smoothed_softmax(out.scores)
            pending = pool.submit(out.features.detach(), probs.detach(), cues, classes, small)
            supervision, crf_probs = pending.result()
            loss = seeding_loss(probs, supervision) + constrain_loss(probs, crf_probs)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        # The warm-up step also makes the workers import their libraries.
        times = median_times({"plain": plain_step, "dgcn": dgcn_step}, repeats)
        plain, dgcn = times["plain"], times["dgcn"]
    work = supervision_work(model, x, cues, classes, small, repeats)
    cores = len(os.sched_getaffinity(0))
    print(f"{arch}: batch {batch}, {size}x{size} input, {grid}x{grid} grid, {num_classes} classes, "
          f"torch threads {torch.get_num_threads()}, {cores} cores")
    print(f"  medians of {repeats} steps each after one warm-up step, taking turns")
    print(f"  plain cross-entropy step: {1000 * plain:.1f} ms; DGCN step (kNN + graph cuts + CRF + losses): "
          f"{1000 * dgcn:.1f} ms")
    total = sum(work.values())
    print(f"  supervision work per batch, in this process: kNN {1000 * work['knn']:.1f} ms, graph cuts "
          f"{1000 * work['cuts']:.1f} ms, CRFs {1000 * work['crf']:.1f} ms; at least {1000 * total:.1f} core-ms "
          f"that the network must wait for, so no schedule on {cores} cores beats {1 + total / cores / plain:.2f}x")
    return verdict(f"  {arch} DGCN step / plain step", dgcn / plain, 1.3, at_least=False)


def main() -> None:
    measure("small", 6, batch=16, size=96, repeats=15)
    measure("deeplab_v2", 21, batch=4, size=321, repeats=3)


if __name__ == "__main__":
    main()

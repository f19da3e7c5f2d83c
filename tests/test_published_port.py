"""The port of the published supervision (published_supervision.py) gives dgcn.graphcut's result on the same inputs.

Inputs without near-ties: random Gaussian features, whose distances differ by far more than the published float32
norm expansion rounds, so both kNN rules pick the same k - 1 neighbours (checked first). With ties the two differ by
design: the port keeps every tie and lets rounding decide near-ties, knn_edges measures them exactly and caps them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from published_supervision import published_knn_matrix, published_supervision

from dgcn.graphcut import grow_supervision, knn_edges_batch
from dgcn.losses import smoothed_softmax
from dgcn.supervision import SupervisionPool

BATCH, CLASSES, H, W, K = 3, 6, 14, 13, 10


def inputs(seed: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """features (B, 16, H, W): Gaussian plus 4 on the channel of the pixel's most likely class; smoothed probabilities
    (B, C, H, W) float32; cues (B, C, H, W) uint8: background and two classes per image, seeded on ~35% of the pixels
    with their most likely class, a few pixels with two."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    features = torch.randn(BATCH, 16, H, W, generator=gen)
    scores = torch.full((BATCH, CLASSES, H, W), -4.0)
    cues = np.zeros((BATCH, CLASSES, H, W), np.uint8)
    for b in range(BATCH):
        present = np.array([0, *rng.choice(np.arange(1, CLASSES), 2, replace=False)])
        # Smooth class scores along the rows, so that the cuts have regions to grow into.
        ramp = torch.linspace(-3, 3, W)
        scores[b, present] = torch.stack([ramp * s for s in (1.0, -1.0, 0.3)])[:, None, :] + torch.randn(
            3, H, W, generator=gen)
        labels = present[scores[b, present].argmax(0).numpy()]
        # Features that separate the classes, so that kNN neighbours mostly share a label.
        features[b, :CLASSES] += 4.0 * torch.from_numpy(labels == np.arange(CLASSES)[:, None, None])
        seeded = rng.random((H, W)) < 0.35
        cues[b, labels[seeded], *np.nonzero(seeded)] = 1
        double = rng.random((H, W)) < 0.03
        cues[b, present[-1], *np.nonzero(double)] = 1
    probs = smoothed_softmax(scores).numpy().astype(np.float32)
    return features, probs, cues


def cued_classes(cues: np.ndarray) -> list[np.ndarray]:
    """The classes the published caller cuts: those with a cue in the image."""
    return [np.nonzero(image.any(axis=(1, 2)))[0] for image in cues]


@pytest.mark.parametrize("seed", [0, 1])
def test_published_knn_matrix_marks_the_same_neighbours(seed):
    features, _, _ = inputs(seed)
    matrix = published_knn_matrix(features, K)
    for image, (src, dst) in zip(matrix, knn_edges_batch(features, K), strict=True):
        assert np.all(np.diag(image) == 0), "a node left out of its own k nearest"
        expected = np.zeros_like(image)
        expected[src, dst] = 1
        assert np.array_equal(image, expected)
        assert np.all((image == 1).sum(axis=1) == K - 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_published_supervision_equals_grow_supervision(seed):
    features, probs, cues = inputs(seed)
    published = published_supervision(cues, probs, published_knn_matrix(features, K))
    assert published.dtype == np.float32 and set(np.unique(published)) <= {0.0, 1.0}
    edges = knn_edges_batch(features, K)
    ours = np.stack([grow_supervision(cues[b], probs[b], classes, edges[b])
                     for b, classes in enumerate(cued_classes(cues))])
    assert np.array_equal(published.astype(np.uint8), ours)
    grown = ours.astype(bool) & ~cues.astype(bool)
    assert grown.sum() > 0.1 * cues.size / CLASSES, "the cuts grew almost nothing: a weak check"
    with SupervisionPool(workers=0, k=K) as pool:
        pooled = pool.grow(features, probs, cues, cued_classes(cues)).result()
    assert np.array_equal(pooled, ours)

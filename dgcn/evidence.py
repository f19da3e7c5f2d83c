"""Soft evidence on the network's grid (the export's probabilities and grown masks) turned into full-resolution label
maps and dense-CRF unaries (spec sections 3 and 4).

Both upsample the grid bilinearly to the image, so the export's pseudo-label and the CRF's unary come from the same
arithmetic: the label is argmax over the present classes of (grown mask + probability), the cut deciding where it
claims a pixel and the network elsewhere.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dgcn.crf import iter_dense_crf
from dgcn.data.palette import IGNORE_INDEX
from dgcn.storage.evidence import Evidence

# Where the bilinearly upsampled grown mask of a pixel's label reaches this, the cut's claim covers the pixel (it lies
# nearer to grown cells than to ungrown ones) and the CRF unary is confident there.
GROWN_COVER = 0.5


def _upsampled(evidence: Evidence, size: tuple[int, int]) -> tuple[np.ndarray, torch.Tensor]:
    """(classes (K,), (3, K, H, W) float32: grown + probs, grown, probs) over the K present classes, upsampled
    bilinearly from the grid to `size` = (H, W)."""
    classes = evidence.classes
    probs = torch.from_numpy(evidence.probs[classes].astype(np.float32))
    grown = torch.from_numpy(evidence.grown[classes].astype(np.float32))
    stacked = torch.stack([grown + probs, grown, probs])
    up = F.interpolate(stacked, size=tuple(int(v) for v in size), mode="bilinear", align_corners=False)
    return classes, up


def evidence_labels(evidence: Evidence, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(pseudo_label, network_argmax), both (H, W) uint8 class indices at `size` = (H, W).

    pseudo_label: argmax over the present classes of the bilinearly upsampled (grown mask + probability);
    network_argmax: the same without the grown mask. Absent classes never appear.
    """
    classes, up = _upsampled(evidence, size)
    return (classes[up[0].argmax(dim=0).numpy()].astype(np.uint8),
            classes[up[2].argmax(dim=0).numpy()].astype(np.uint8))


def evidence_unary(evidence: Evidence, size: tuple[int, int], confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(classes (K,) int64, (K, H, W) float32 probabilities) over the image's K present classes at `size` = (H, W),
    the CRF's unary.

    Every pixel starts from the network's probability, upsampled bilinearly (the published evaluate code's unary).
    Where the upsampled grown mask of the pixel's pseudo-label (see evidence_labels) is >= GROWN_COVER the cut's claim
    is trusted: the label gets `confidence` and the rest (1 - confidence) is shared as the network's probabilities,
    q = confidence * onehot(label) + (1 - confidence) * p. `confidence` >= 0.5 keeps the label the argmax there.
    """
    if not 0.5 <= confidence <= 1:
        raise ValueError(f"confidence must lie in [0.5, 1], got {confidence}")
    classes, up = _upsampled(evidence, size)
    label = up[0].argmax(dim=0, keepdim=True)
    claimed = up[1].gather(0, label) >= GROWN_COVER
    probs = up[2]
    confident = confidence * torch.zeros_like(probs).scatter_(0, label, 1.0) + (1.0 - confidence) * probs
    return classes, torch.where(claimed, confident, probs).numpy()


def iter_crf_labels(
    images: Iterable[np.ndarray], evidence: Iterable[Evidence], *, confidence: float, workers: int = 2,
    **kernels: float,
) -> Iterator[np.ndarray]:
    """Per (image (H, W, 3) uint8 RGB, Evidence) pair, in order: the (H, W) uint8 label map of a dense CRF (dgcn.crf
    keyword arguments `kernels`) over the image's present classes, its unary from evidence_unary(confidence).

    The unaries are built here and the CRFs run in `workers` processes (0 = in-process), streaming like iter_dense_crf.
    """
    pending_classes: deque[np.ndarray] = deque()
    images, sized = itertools.tee(images)

    def unaries() -> Iterator[np.ndarray]:
        for image, item in zip(sized, evidence, strict=True):
            classes, unary = evidence_unary(item, image.shape[:2], confidence)
            pending_classes.append(classes)
            yield unary

    for q in iter_dense_crf(images, unaries(), workers=workers, **kernels):
        yield pending_classes.popleft()[q.argmax(axis=0)].astype(np.uint8)


def evidence_from_labels(labels: np.ndarray, grid: tuple[int, int], present: Sequence[int] | np.ndarray,
                         num_classes: int, *, threshold: float = 0.7) -> Evidence:
    """A label map as evidence on a grid: what a network that knows `labels` would give the export.

    labels: (H, W) integer class indices, IGNORE_INDEX (255) for unknown pixels; present: the image's classes
    (background included), which must contain every label. probs: each class's share of the known pixels of each
    cell (adaptive average pooling; a cell without known pixels is uniform over the present classes); grown: the
    cells where that share exceeds `threshold` (the graph cut's rule: grown where the network's P > threshold).
    Used to measure what the CRF path does to known labels (tests, README figures).
    """
    labels = np.asarray(labels)
    classes = np.unique(np.asarray(present, dtype=np.int64))
    if labels.ndim != 2 or not classes.size or classes[0] < 0 or classes[-1] >= num_classes:
        raise ValueError(f"labels must be (H, W) and present a non-empty subset of [0, {num_classes}), got "
                         f"{labels.shape} and {classes.tolist()}")
    stray = np.setdiff1d(np.unique(labels), np.append(classes, IGNORE_INDEX))
    if stray.size:
        raise ValueError(f"labels contain values {stray.tolist()} outside the present classes {classes.tolist()}")
    onehot = torch.from_numpy(labels[None] == np.arange(num_classes)[:, None, None]).float()
    shares = F.adaptive_avg_pool2d(onehot[None], tuple(int(v) for v in grid))[0]
    known = shares.sum(dim=0, keepdim=True)
    uniform = torch.zeros(num_classes, 1, 1)
    uniform[classes] = 1.0 / classes.size
    probs = torch.where(known > 0, shares / known.clamp_min(1e-12), uniform).numpy()
    is_present = np.zeros(num_classes, dtype=bool)
    is_present[classes] = True
    return Evidence(probs.astype(np.float16), (probs > threshold).astype(np.uint8), is_present)

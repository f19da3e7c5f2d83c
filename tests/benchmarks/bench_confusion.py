"""Confusion matrix: bincount vs the published per-pixel loop, on the voc-mini masks with noisy predictions.

The baseline ports the published evaluation's per-image matrix (Unrealluver/dgcn, tool/dgcnutils.py,
ConfusionMatrix.generateM: one Python iteration per pixel of the flattened arrays, float64 counts). The published
eval_pred.py maps it over the images with a multiprocessing Pool; here both sides run in this one process, so the ratio
is per core. Both timed alike: warm-up, then medians of repetitions taking turns.
Run: python tests/benchmarks/bench_confusion.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dgcn.metrics import confusion_matrix
from tools.timing import median_times, verdict

MASKS = Path(__file__).resolve().parents[1] / "data" / "voc-mini" / "SegmentationClassAug"
CLASSES = 21
REPEATS, WARMUP = 3, 1


def published_matrix(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The published per-image matrix: float64 (C, C), a pixel counted at (gt, pred) when its gt is a class (< C)."""
    gt, pred = gt.flatten(), pred.flatten()
    matrix = np.zeros((CLASSES, CLASSES))
    for i in range(len(gt)):
        if gt[i] < CLASSES:
            matrix[gt[i], pred[i]] += 1.0
    return matrix


def main() -> None:
    rng = np.random.default_rng(0)
    gts = [np.array(Image.open(path)) for path in sorted(MASKS.glob("*.png"))]
    preds = []
    for gt in gts:
        pred = np.where(gt == 255, 0, gt)
        noise = rng.random(gt.shape) < 0.2
        pred[noise] = rng.integers(0, CLASSES, int(noise.sum()))
        preds.append(pred.astype(np.uint8))
    pixels = sum(g.size for g in gts)
    print(f"{len(gts)} VOC masks, {pixels} pixels, {CLASSES} classes")

    pairs = list(zip(gts, preds, strict=True))
    published = sum(published_matrix(g, p) for g, p in pairs)
    ours = sum(confusion_matrix(g, p, CLASSES) for g, p in pairs)
    assert np.array_equal(published, ours), "bincount != published per-pixel loop"
    times = median_times({"published": lambda: [published_matrix(g, p) for g, p in pairs],
                          "ours": lambda: [confusion_matrix(g, p, CLASSES) for g, p in pairs]}, REPEATS, WARMUP)
    print(f"medians of {REPEATS} calls per side after {WARMUP} warm-up: published per-pixel loop (generateM port) "
          f"{times['published']:.3f} s; ours (bincount) {times['ours'] * 1e3:.2f} ms")
    passed = verdict("speed-up over the published per-pixel loop", times["published"] / times["ours"], 50.0)
    print("PASS" if passed else "FAIL")


if __name__ == "__main__":
    main()

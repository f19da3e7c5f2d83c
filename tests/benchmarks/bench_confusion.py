"""Confusion matrix: bincount vs the published per-pixel loop, on the voc-mini masks with noisy predictions.

Run: python tests/benchmarks/bench_confusion.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image
from timing import best_time, verdict

from dgcn.metrics import confusion_matrix

MASKS = Path(__file__).resolve().parents[3] / "shared" / "voc-mini" / "SegmentationClassAug"
CLASSES = 21


def pixel_loop(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The published accumulation: one Python iteration per pixel."""
    conf = np.zeros((CLASSES, CLASSES), np.int64)
    for g, p in zip(gt.ravel().tolist(), pred.ravel().tolist(), strict=True):
        if g != 255:
            conf[g, p] += 1
    return conf


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

    start = time.perf_counter()
    loop = sum(pixel_loop(g, p) for g, p in zip(gts, preds, strict=True))
    loop_time = time.perf_counter() - start
    ours = sum(confusion_matrix(g, p, CLASSES) for g, p in zip(gts, preds, strict=True))
    assert np.array_equal(loop, ours), "bincount != per-pixel loop"
    ours_time = best_time(lambda: [confusion_matrix(g, p, CLASSES) for g, p in zip(gts, preds, strict=True)], 20)
    print(f"per-pixel loop: {loop_time:.3f} s; ours (bincount): {ours_time * 1e3:.2f} ms")
    print("PASS" if verdict("speed-up over the per-pixel loop", loop_time / ours_time, 50.0) else "FAIL")


if __name__ == "__main__":
    main()

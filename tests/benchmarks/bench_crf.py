"""Dense CRF refinement at full resolution: dense_crf_many with 2 worker processes vs 1.

The voc-mini photos resized to 500x375, with noisy 21-class probabilities around their ground-truth masks. Both
timed alike: one warm-up call each (process start), then medians of 3 calls taking turns.
Run: python tests/benchmarks/bench_crf.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dgcn.crf import dense_crf_many
from tools.timing import median_times, verdict

VOC = Path(__file__).resolve().parents[1] / "data" / "voc-mini"
CLASSES, SIZE = 21, (500, 375)
REPEATS, WARMUP = 3, 1


def noisy_probs(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(C, H, W) float32 softmax of 3 * one-hot(mask) + unit Gaussian noise (ignore pixels count as background)."""
    labels = np.where(mask == 255, 0, mask)
    scores = 3.0 * (labels[None] == np.arange(CLASSES)[:, None, None]) + rng.normal(size=(CLASSES, *mask.shape))
    scores = np.exp(scores - scores.max(0))
    return (scores / scores.sum(0)).astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(0)
    ids = sorted(path.stem for path in (VOC / "JPEGImages").glob("*.jpg"))
    images = [np.array(Image.open(VOC / "JPEGImages" / f"{i}.jpg").convert("RGB").resize(SIZE)) for i in ids]
    masks = [np.array(Image.open(VOC / "SegmentationClassAug" / f"{i}.png").resize(SIZE, Image.NEAREST)) for i in ids]
    probs = [noisy_probs(mask, rng) for mask in masks]
    print(f"{len(images)} photos at {SIZE[0]}x{SIZE[1]}, {CLASSES} classes, 10 mean-field iterations")

    times = median_times({workers: lambda w=workers: dense_crf_many(iter(images), iter(probs), workers=w)
                          for workers in (1, 2)}, REPEATS, WARMUP)
    results = {workers: dense_crf_many(iter(images), iter(probs), workers=workers) for workers in (1, 2)}
    for workers, seconds in times.items():
        print(f"workers={workers}: median {seconds:.2f} s ({seconds / len(images):.3f} s per image)")
    assert all(np.array_equal(a, b) for a, b in zip(results[1], results[2], strict=True)), "results differ"
    gain = np.mean([(r.argmax(0) == m).mean() for r, m in zip(results[2], masks, strict=True)]) - np.mean(
        [(p.argmax(0) == m).mean() for p, m in zip(probs, masks, strict=True)]
    )
    print(f"pixel agreement with the masks after CRF minus before: {gain:+.3f}")
    print("PASS" if verdict("2 workers vs 1", times[1] / times[2], 1.7) else "FAIL")


if __name__ == "__main__":
    main()

"""How far colour alone goes on a data set: the best per-pixel RGB classifier of the train split, scored on val.

Each pixel's colour is quantised to L levels per channel; each colour cell takes the class most frequent among the
train pixels of that cell (the Bayes-optimal per-pixel rule on the train split, up to the quantisation), cells never
seen in train take the most frequent class. Prints, for each L of `--levels`, the val mIoU and, as its ceiling, the
train mIoU of the same rule.
Run: python -m tools.probes.rgb_baseline [data/synthetic] (after `dvc repro synthesize@synthetic`)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dgcn.data.palette import SYNTHETIC_CLASSES
from dgcn.data.voc import VOCDataset
from dgcn.metrics import ConfusionMatrix


def colour_cells(image: np.ndarray, levels: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int64 index of each pixel's quantised colour, in [0, levels ** 3)."""
    q = image.astype(np.int64) * levels // 256
    return (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", default=Path("data/synthetic"), help="a VOC-layout data root")
    parser.add_argument("--levels", type=int, nargs="+", default=[4, 8, 16, 32], help="levels per colour channel")
    args = parser.parse_args()
    train, val = (VOCDataset(args.root, split, SYNTHETIC_CLASSES) for split in ("train_aug", "val"))
    classes = len(SYNTHETIC_CLASSES)
    for levels in args.levels:
        cells = levels**3
        counts = np.zeros(cells * classes, np.int64)
        for name in train.names:
            mask = train.mask(name)
            kept = mask != 255
            counts += np.bincount(colour_cells(train.image(name), levels)[kept] * classes + mask[kept],
                                  minlength=cells * classes)
        counts = counts.reshape(cells, classes)
        rule = np.where(counts.any(axis=1), counts.argmax(axis=1), counts.sum(axis=0).argmax())
        figures = []
        for split in (train, val):
            scores = ConfusionMatrix(classes)
            for name in split.names:
                scores.add(split.mask(name), rule[colour_cells(split.image(name), levels)])
            figures.append(f"{split.split} ({len(split.names)} images) {scores.miou():.3f}")
        print(f"per-pixel RGB classifier, {levels}^3 colour cells: mIoU " + ", ".join(figures))


if __name__ == "__main__":
    main()

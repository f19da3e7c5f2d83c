"""The files behind docs/own-seeds.md's figures: our own CAMs written in the IRN format, seeds eroded from the ground
truth, and the mIoU of seeds taken as pseudo-labels.

- `irn`: the CAMs of a cues stage's classifier.pt, computed as that stage computes them, written as IRN-style
  `<id>.npy` dicts: keys (the image's classes - 1), cam (the maps on the cue grid), high_res (each grid cell's value
  over its pixels: read back exactly when an image's sides are multiples of the grid, as the embedded default's are).
- `eroded`: each training mask's connected regions (background's too) eroded to `--fraction` of their area, as
  `<id>.png` seed maps (255 = no seed).
- `score`: the mIoU of a folder of seed maps against the masks, an unseeded pixel counted as a miss.
Run: python -m tools.probes.own_seeds irn --manifest artifacts/synthetic/prepare/manifest.json \\
     --classifier artifacts/synthetic/cues/classifier.pt --config pipelines/synthetic.yaml --out data/synthetic/irn
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from dgcn.cam import compute_cams
from dgcn.data.palette import IGNORE_INDEX, voc_palette
from dgcn.metrics import confusion_matrix
from dgcn.model_files import load_model
from stages.manifest import Manifest
from stages.params import load_params
from stages.schemas.cues import CuesParams


def write_irn_cams(folder: Path, names: Sequence[str], sizes: Sequence[tuple[int, int]],
                   classes: Sequence[Sequence[int]], cams: np.ndarray) -> None:
    """IRN-style dicts of grid CAMs (N, C-1, G, G), one `<id>.npy` per image, maps of the image's classes only."""
    folder.mkdir(parents=True, exist_ok=True)
    grid = cams.shape[-1]
    for name, (height, width), present, cam in zip(names, sizes, classes, cams, strict=True):
        own = cam[np.asarray(present, dtype=np.int64) - 1]
        rows, cols = np.arange(height) * grid // height, np.arange(width) * grid // width
        np.save(folder / f"{Path(name).stem}.npy", {"keys": np.asarray(present, dtype=np.int64) - 1, "cam": own,
                                                    "high_res": own[:, rows[:, None], cols[None, :]]},
                allow_pickle=True)


def _erode(region: np.ndarray) -> np.ndarray:
    """One step of 4-neighbour erosion; outside the image counts as outside the region."""
    padded = np.pad(region, 1)
    return region & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def _components(mask: np.ndarray) -> np.ndarray:
    """(H, W) int64 id of each pixel's 4-connected region of one class (the smallest flat index in it)."""
    ids = np.arange(mask.size, dtype=np.int64).reshape(mask.shape)
    while True:
        low = ids.copy()
        for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
            neighbour = np.roll(ids, shift, axis=axis)
            same = np.roll(mask, shift, axis=axis) == mask
            edge = [slice(None)] * 2
            edge[axis] = slice(0, 1) if shift == 1 else slice(-1, None)
            same[tuple(edge)] = False  # np.roll wraps around: no neighbour across the border
            low = np.where(same, np.minimum(low, neighbour), low)
        if np.array_equal(low, ids):
            return ids
        ids = low


def eroded_seeds(mask: np.ndarray, fraction: float) -> np.ndarray:
    """Each connected region of each class, ignored pixels aside, eroded to the deepest pixels that hold at least
    `fraction` of its area (depth = erosion steps a pixel survives); 255 elsewhere."""
    seeds = np.full(mask.shape, IGNORE_INDEX, dtype=np.uint8)
    regions = _components(mask)
    for region_id in np.unique(regions[mask != IGNORE_INDEX]):
        region = regions == region_id
        depth = np.zeros(mask.shape, dtype=np.int64)
        layer = region
        while layer.any():
            depth += layer
            layer = _erode(layer)
        levels = np.sort(depth[region])[::-1]
        deepest = levels[int(np.ceil(fraction * levels.size)) - 1]
        seeds[region & (depth >= deepest)] = mask[region][0]
    return seeds


def write_seed_pngs(folder: Path, names: Sequence[str], seeds: Sequence[np.ndarray]) -> None:
    """`<id>.png` palette seed maps."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, seed in zip(names, seeds, strict=True):
        image = Image.fromarray(seed, mode="P")
        image.putpalette(voc_palette().ravel().tolist())
        image.save(folder / f"{Path(name).stem}.png")


def seed_miou(masks: Sequence[np.ndarray], seeds: Sequence[np.ndarray], num_classes: int) -> float:
    """mIoU of seed maps taken as pseudo-labels: an unseeded pixel (255) is a prediction of no class, so it counts
    in its true class's union and in no intersection."""
    counts = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)  # the last class: no seed
    for mask, seed in zip(masks, seeds, strict=True):
        counts += confusion_matrix(mask, np.where(seed == IGNORE_INDEX, num_classes, seed), num_classes + 1)
    tp = np.diag(counts)[:num_classes]
    union = counts[:num_classes].sum(axis=1) + counts[:, :num_classes].sum(axis=0) - tp
    return round(float((tp[union > 0] / union[union > 0]).mean()), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    irn = commands.add_parser("irn", help="our CAMs as IRN-style <id>.npy dicts")
    irn.add_argument("--classifier", type=Path, required=True)
    irn.add_argument("--config", type=Path, required=True)
    irn.add_argument("--defaults", type=Path, default=Path("params.yaml"))
    eroded = commands.add_parser("eroded", help="ground truth eroded to seeds, as <id>.png")
    eroded.add_argument("--fraction", type=float, default=0.3)
    score = commands.add_parser("score", help="the mIoU of seed maps taken as pseudo-labels")
    score.add_argument("--seeds", type=Path, required=True)
    for command in (irn, eroded, score):
        command.add_argument("--manifest", type=Path, required=True)
    for command in (irn, eroded):
        command.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    train = Manifest.load(args.manifest).train
    if args.command == "irn":
        settings = load_params("cues", CuesParams, config=args.config, defaults=args.defaults)
        cams = compute_cams(load_model(args.classifier, "classifier"), train.dataset.image, train.names,
                            input_size=settings.input_size, scales=settings.scales)
        write_irn_cams(args.out, train.names, train.sizes, train.classes, cams)
    elif args.command == "eroded":
        write_seed_pngs(args.out, train.names,
                        [eroded_seeds(train.dataset.mask(name), args.fraction) for name in train.names])
    else:
        seeds = [np.asarray(Image.open(args.seeds / f"{Path(name).stem}.png")) for name in train.names]
        masks = [train.dataset.mask(name) for name in train.names]
        print(f"seeds as pseudo-labels: mIoU {seed_miou(masks, seeds, train.dataset.num_classes)}")


if __name__ == "__main__":
    main()

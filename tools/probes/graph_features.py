"""Which features build the graph, and are ours informative? The DGCN graph cut of every training image on kNN graphs
of several feature choices, with the trained network's own probabilities and the image's cues.

    python -m tools.probes.graph_features [--project DIR] [--model M] [--manifest J] [--cues Z]
        [--config Y] [--defaults P] [--images N] [--xy-scale 1.0] [--thresholds T ...] [--batch-stats]
        [--per-class CHOICE ...]

Relative paths (and the manifest's data root) resolve against --project (default: the current directory), which is
where the stages ran; the defaults are the embedded setting's artifacts (artifacts/synthetic/...). --config and
--defaults (default: this repository's pipelines/synthetic.yaml and params.yaml) give graph_cut (knn_k, seed_capacity,
threshold) and train_dgcn (crop_size, batch_size); pass an experiment's own files to use its overrides.

Each training image is fed as train_dgcn feeds it (dgcn.data.crops.CueCrops: a crop_size crop, the whole 96 x 96 image
on the embedded set; cues remapped to the grid; the mask zoomed to the grid by nearest neighbour, as train_dgcn's
scoring does), without colour jitter, rescaling or mirroring. The network runs in eval mode (BatchNorm running
statistics, as the export runs it); --batch-stats runs it in train mode on batches of train_dgcn.batch_size images in
manifest order (batch statistics, as training does, though training's batches are shuffled).

Feature choices, each a (D, g, g) map per image on the network's g x g output grid:
  concat   the network's graph features (SegmentationNet.forward: early level resized to the middle grid + middle):
           what training uses, unnormalised as training passes them
  early    its first trunk.early_channels channels; middle: the rest
  rgb      the crop's colour on the grid (0-1), as train_dgcn.graph_features: rgb builds the training graph
           (dgcn.training.dgcn.colour_features of the crop's grid image)
  rgb_xy   rgb plus the cell's (row, col) / (g - 1) times --xy-scale (1: the image's full height weighs as much as a
           channel's full colour range)
  xy       the coordinates alone (control: a purely spatial graph)
  random   16 standard-normal values per cell, seeded (control: a random graph)

Per choice, over all probed images: edge_purity, the fraction of the directed kNN pairs (dgcn.graphcut.knn_edges_batch
with graph_cut.knn_k, ties capped as in training) whose two cells share the ground-truth label (pairs touching an
ignored cell left out); then, per threshold (default: graph_cut.threshold and 0, i.e. without the P > threshold rule),
the supervision of dgcn.supervision.grow_images (grow_supervision of each image: cues, smoothed probabilities, the
image's classes with background, graph_cut.seed_capacity) scored by dgcn.cues.cue_quality against the grid mask, as
train_dgcn logs grown_precision / grown_recall, pooled over all images (training averages per-batch ratios).
`added_precision` / `added_labels` score only the labels the cut adds to the cues. Prints one JSON line per choice
(and one for the cues alone), then a table; --per-class adds, for the cues and the named choices' growth, precision
and recall class by class (background included), as a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from dgcn.cues import CueQuality, CueStore, cue_quality
from dgcn.data.augment import CropGeometry
from dgcn.data.crops import CueCrops, NamedFiles, SampleKey
from dgcn.data.palette import IGNORE_INDEX
from dgcn.graphcut import knn_edges_batch
from dgcn.losses import smoothed_softmax
from dgcn.model_files import load_model
from dgcn.models.segmenter import SegmentationNet
from dgcn.supervision import grow_images
from dgcn.training.dgcn import colour_features
from dgcn.training.loader import network_input
from stages.manifest import Manifest
from stages.params import load_params
from stages.schemas.graph_cut import GraphCutParams
from stages.schemas.train_dgcn import TrainDGCNParams

REPO = Path(__file__).resolve().parents[2]
CHOICES = ("concat", "early", "middle", "rgb", "rgb_xy", "xy", "random")
Batch = tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def batches(crops: CueCrops, count: int, size: int, seed: int) -> list[Batch]:
    """The first `count` samples in batches of `size`: (x (B, 3, S, S), grid images (B, g, g, 3), cues (B, C, g, g),
    valid (B, g, g), mask_grid (B, g, g), indices (B,)); epoch 0, no mirror."""
    out = []
    for start in range(0, count, size):
        items = [crops[SampleKey(seed, 0, i, False)] for i in range(start, min(start + size, count))]
        x, grid_images, cues, valid, mask_grid, index = zip(*items, strict=True)
        out.append((torch.stack(x), torch.from_numpy(np.stack(grid_images)), np.stack(cues), np.stack(valid),
                    np.stack(mask_grid), np.array(index)))
    return out


def coordinates(batch: int, grid: int, scale: float) -> torch.Tensor:
    """(batch, 2, grid, grid): each cell's (row, col) / (grid - 1), times scale."""
    axis = torch.arange(grid, dtype=torch.float32) / max(grid - 1, 1)
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    return (scale * torch.stack([rows, cols]))[None].expand(batch, -1, -1, -1)


def feature_maps(model: SegmentationNet, x: torch.Tensor, grid_images: torch.Tensor, xy_scale: float,
                 rng: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every feature choice of a batch, (B, D, g, g) float32 each, and the smoothed probabilities (B, C, g, g)."""
    with torch.no_grad():
        out = model(network_input(x, torch.device("cpu")))
    features = out.features.float().contiguous()
    batch, _, grid, _ = features.shape
    early = model.trunk.early_channels
    rgb = colour_features(grid_images)
    xy = coordinates(batch, grid, xy_scale)
    maps = {"concat": features, "early": features[:, :early], "middle": features[:, early:], "rgb": rgb,
            "rgb_xy": torch.cat([rgb, xy], dim=1), "xy": xy,
            "random": torch.randn(batch, 16, grid, grid, generator=rng)}
    return {name: value.contiguous() for name, value in maps.items()}, smoothed_softmax(out.scores.float())


def pure_pairs(edges: tuple[np.ndarray, np.ndarray], labels: np.ndarray) -> tuple[int, int]:
    """(pairs whose two nodes share a label, pairs scored): labels (n,) the grid mask, IGNORE_INDEX left out."""
    src, dst = edges
    scored = (labels[src] != IGNORE_INDEX) & (labels[dst] != IGNORE_INDEX)
    return int((labels[src] == labels[dst])[scored].sum()), int(scored.sum())


def class_counts(supervision: np.ndarray, mask_grid: np.ndarray) -> np.ndarray:
    """(3, C) per class: labels of the class on the true class's pixels, labels of the class, the class's pixels;
    supervision (B, C, g, g) multi-hot, mask_grid (B, g, g) with IGNORE_INDEX left out."""
    valid = mask_grid != IGNORE_INDEX
    truth = np.stack([mask_grid == c for c in range(supervision.shape[1])], axis=1)
    labelled = supervision.astype(bool) & valid[:, None]
    return np.stack([(labelled & truth).sum(axis=(0, 2, 3)), labelled.sum(axis=(0, 2, 3)),
                     truth.sum(axis=(0, 2, 3))])


class Tally:
    """Running counts of one feature choice: kNN pairs and, per threshold, the grown and the added labels' quality,
    pooled and per class."""

    def __init__(self, thresholds: list[float]) -> None:
        empty = CueQuality(0, 0, 0)
        self.pure = self.pairs = 0
        self.grown = dict.fromkeys(thresholds, empty)
        self.added = dict.fromkeys(thresholds, empty)
        self.per_class: dict[float, np.ndarray] = dict.fromkeys(thresholds, np.zeros(1, dtype=np.int64))

    def row(self, name: str, dim: int, images: int) -> dict[str, object]:
        row: dict[str, object] = {"features": name, "dim": dim, "images": images, "pairs": self.pairs,
                                  "edge_purity": round(self.pure / self.pairs, 4)}
        for t in self.grown:
            grown, added = self.grown[t], self.added[t]
            row |= {f"grown_precision@{t:g}": round(grown.precision, 4),
                    f"grown_recall@{t:g}": round(grown.coverage, 4),
                    f"added_precision@{t:g}": round(added.precision, 4), f"added_labels@{t:g}": added.cue_labels}
        return row


def probe(model: SegmentationNet, data: list[Batch], classes: list[np.ndarray], cut: GraphCutParams,
          thresholds: list[float], xy_scale: float) -> tuple[dict[str, Tally], dict]:
    """Tallies of every feature choice and the cues' own quality (and the dims of the choices) over the batches."""
    tallies = {name: Tally(thresholds) for name in CHOICES}
    seeds, dims, seeds_per_class = CueQuality(0, 0, 0), {}, np.zeros(1, dtype=np.int64)
    rng = torch.Generator().manual_seed(0)
    for x, grid_images, cues, valid, mask_grid, indices in data:
        maps, probs = feature_maps(model, x, grid_images, xy_scale, rng)
        probs_np = probs.numpy().astype(np.float32)
        image_classes = [classes[i] for i in indices]
        labels = mask_grid.reshape(len(indices), -1)
        seeds += cue_quality(cues, mask_grid)
        for name, features in maps.items():
            dims[name] = features.shape[1]
            tally = tallies[name]
            edges = knn_edges_batch(features, cut.knn_k, torch.from_numpy(valid))
            for pair, label in zip(edges, labels, strict=True):
                pure, scored = pure_pairs(pair, label)
                tally.pure += pure
                tally.pairs += scored
            for t in thresholds:
                supervision = grow_images(cues, probs_np, image_classes, edges, t, cut.seed_capacity, valid)
                tally.grown[t] += cue_quality(supervision, mask_grid)
                tally.added[t] += cue_quality(supervision & (1 - cues), mask_grid)
                tally.per_class[t] = tally.per_class[t] + class_counts(supervision, mask_grid)
        seeds_per_class = seeds_per_class + class_counts(cues, mask_grid)
    return tallies, {"dims": dims, "seeds": seeds, "seeds_per_class": seeds_per_class}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=Path("."), help="where the stages ran (relative paths)")
    parser.add_argument("--model", type=Path, default=Path("artifacts/synthetic/train_dgcn/model.pt"))
    parser.add_argument("--manifest", type=Path, default=Path("artifacts/synthetic/prepare/manifest.json"))
    parser.add_argument("--cues", type=Path, default=Path("artifacts/synthetic/cues/cues.zarr"))
    parser.add_argument("--config", type=Path, default=REPO / "pipelines/synthetic.yaml")
    parser.add_argument("--defaults", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--images", type=int, default=None, help="the first N training images (default: all)")
    parser.add_argument("--xy-scale", type=float, default=1.0, help="weight of rgb_xy's coordinates")
    parser.add_argument("--thresholds", type=float, nargs="+", default=None,
                        help="grow_supervision thresholds (default: graph_cut.threshold and 0)")
    parser.add_argument("--batch-stats", action="store_true", help="BatchNorm on batch statistics (train mode)")
    parser.add_argument("--per-class", nargs="+", choices=CHOICES, default=[],
                        help="also print these choices' growth precision / recall class by class")
    args = parser.parse_args()
    config, defaults = args.config.resolve(), args.defaults.resolve()
    os.chdir(args.project)
    cut = load_params("graph_cut", GraphCutParams, config=config, defaults=defaults)
    settings = load_params("train_dgcn", TrainDGCNParams, config=config, defaults=defaults)
    thresholds = args.thresholds if args.thresholds is not None else [cut.threshold, 0.0]
    manifest = Manifest.load(args.manifest)
    train = manifest.train
    store = CueStore(args.cues)
    train.check_store(store.names, args.cues, "cues")
    model = load_model(args.model, "segmenter")
    model.train(args.batch_stats)
    grid = -(-settings.crop_size // model.output_stride)
    crops = CueCrops(NamedFiles(train.dataset.image, train.names), store, CropGeometry(settings.crop_size), grid,
                     NamedFiles(train.mask_or_none, train.names))
    count = len(train.names) if args.images is None else min(args.images, len(train.names))
    began = time.perf_counter()
    data = batches(crops, count, settings.batch_size, settings.seed)
    classes = [np.flatnonzero(row) for row in store.image_labels]
    tallies, extra = probe(model, data, classes, cut, thresholds, args.xy_scale)
    seeds = extra["seeds"]
    print(json.dumps({"features": "cues_alone", "images": count, "precision": round(seeds.precision, 4),
                      "recall": round(seeds.coverage, 4)}))
    rows = [tally.row(name, extra["dims"][name], count) for name, tally in tallies.items()]
    for row in rows:
        print(json.dumps(row))
    header = f"{'features':<8} {'dim':>4} {'purity':>7}" + "".join(
        f"  {'P@' + format(t, 'g'):>5} {'R@' + format(t, 'g'):>6} {'addP':>6} {'added':>6}" for t in thresholds)
    print(f"\nk={cut.knn_k} seed_capacity={cut.seed_capacity:g} grid={grid} images={count} "
          f"bn={'batch' if args.batch_stats else 'running'} stats; cues alone: P={seeds.precision:.3f} "
          f"R={seeds.coverage:.3f}; {time.perf_counter() - began:.0f} s")
    print(header)
    for row in rows:
        print(f"{row['features']:<8} {row['dim']:>4} {row['edge_purity']:>7.3f}" + "".join(
            f"  {row[f'grown_precision@{t:g}']:>5.3f} {row[f'grown_recall@{t:g}']:>6.3f} "
            f"{row[f'added_precision@{t:g}']:>6.3f} {row[f'added_labels@{t:g}']:>6}" for t in thresholds))
    if args.per_class:
        columns = {"cues": extra["seeds_per_class"]} | {
            f"{name}@{t:g}": tallies[name].per_class[t] for name in args.per_class for t in thresholds}
        print_per_class(manifest.class_names, columns)


def print_per_class(class_names: tuple[str, ...], columns: dict[str, np.ndarray]) -> None:
    """One row per class: its share of the scored pixels, then precision / recall of each column's (3, C) counts;
    then the same as one JSON line."""
    truth = next(iter(columns.values()))[2]
    scores = {column: {name: (counts[0, c] / max(counts[1, c], 1), counts[0, c] / max(counts[2, c], 1))
                       for c, name in enumerate(class_names)}
              for column, counts in columns.items()}
    print("\nper class (precision / recall of the class's labels; share: of the scored pixels)")
    print(f"{'class':<12} {'share':>6}" + "".join(f"  {name:>15}" for name in columns))
    for c, name in enumerate(class_names):
        cells = [f"{column[name][0]:.3f} / {column[name][1]:.3f}" for column in scores.values()]
        print(f"{name:<12} {truth[c] / truth.sum():>6.3f}" + "".join(f"  {cell:>15}" for cell in cells))
    print(json.dumps({"per_class": {column: {name: {"precision": round(precision, 4), "recall": round(recall, 4)}
                                             for name, (precision, recall) in by_class.items()}
                                    for column, by_class in scores.items()}}))


if __name__ == "__main__":
    main()

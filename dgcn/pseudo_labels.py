"""Pseudo-labels from a trained DGCN network: its test-time probabilities at the image's own aspect ratio, the cues
grown by graph cut, one label map per image at the image's own size, and the evidence the CRF refines (spec 3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch

from dgcn.cues import CueStore
from dgcn.data.augment import zoom_nearest
from dgcn.data.loading import long_side_shape, normalize, resize_image
from dgcn.evidence import evidence_labels
from dgcn.inference import predict, restrict_to_classes
from dgcn.storage.evidence import Evidence
from dgcn.supervision import ChunkedFuture, SupervisionPool


class ExportedImage(NamedTuple):
    """pseudo_label and network_argmax: (H, W) uint8 at the image's size; evidence: on the network's grid, from which
    evidence_labels gives back exactly these two maps."""

    pseudo_label: np.ndarray
    network_argmax: np.ndarray
    evidence: Evidence


# One group of a batch: the batch rows of its images, their restricted probabilities (b, C, h, w) float32, their
# present classes (b, C) and the pending graph cut.
_Group = tuple[list[int], torch.Tensor, torch.Tensor, ChunkedFuture[np.ndarray, np.ndarray] | None]


def scale_one_shape(size: tuple[int, int], input_size: int | None) -> tuple[int, int]:
    """(height, width) of the scale-1 network input for an image of `size`: the image's own size for input_size None
    (the published test time, at the scale the network was trained at), else resized so that its longer side is
    input_size (aspect ratio kept)."""
    return (int(size[0]), int(size[1])) if input_size is None else long_side_shape(size, input_size)


@torch.no_grad()
def network_grid(model: torch.nn.Module, shape: tuple[int, int]) -> tuple[int, int]:
    """(h, w) output grid of `model` for one (height, width) = `shape` input (e.g. (47, 63) for 375 x 500 at stride
    8)."""
    model.eval()
    parameter = next(model.parameters())
    scores = model(torch.zeros(1, 3, *shape, device=parameter.device, dtype=parameter.dtype)).scores
    return int(scores.shape[-2]), int(scores.shape[-1])


def evidence_grid(model: torch.nn.Module, sizes: Sequence[tuple[int, int]], input_size: int | None) -> tuple[int, int]:
    """(Gh, Gw) bounding the evidence grid of every image of `sizes` ((height, width) each): the network's grid for
    the largest scale-1 input height and width (a grid grows with its input along each axis)."""
    if not sizes:
        raise ValueError("evidence_grid needs at least one image size")
    shapes = [scale_one_shape(size, input_size) for size in sizes]
    return network_grid(model, (max(h for h, _ in shapes), max(w for _, w in shapes)))


def cues_on_grid(cues: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(C, G, G') cues over the whole image -> (C, h, w) on another grid of the same image, nearest neighbour with
    cell centres aligned (each target cell takes the source cell under its centre; identity when the grids agree)."""
    return zoom_nearest(np.asarray(cues), grid)


def iter_pseudo_labels(
    model: torch.nn.Module,
    load_image: Callable[[str], np.ndarray],
    names: Sequence[str],
    cues: Sequence[np.ndarray] | CueStore,
    image_labels: np.ndarray,
    pool: SupervisionPool | None,
    *,
    input_size: int | None,
    scales: Sequence[float],
    flip: bool,
    batch_size: int,
    runs: Sequence[range] | None = None,
) -> Iterator[ExportedImage]:
    """Per image of `names`, in order: its ExportedImage; with `runs` (ranges of positions, e.g. one rank's Zarr
    shards), per image of the runs in their order, batches cut within each run.

    load_image(name) -> (H, W, 3) uint8 RGB at the image's own size; cues[i] (C, G, G) {0,1} over the whole image;
    image_labels (N, C) {0,1}, background included.
    The scale-1 input of `predict` (multi-scale over `scales` and mirrored with `flip`) is the image itself for
    input_size None, else the image resized so that its longer side is `input_size` (scale_one_shape); images of a
    batch with the same scale-1 shape go through the network together. On the network's grid (that of the scale-1
    input): the probabilities restricted to the image's classes and stored as float16, the cues zoomed to the grid and
    grown by the pool's graph cut (its k, threshold, seed_capacity and network_seeds) on the scale-1 features (pool
    None: no cut, the grown masks are empty and the labels are the network's restricted argmax). The label maps are
    evidence_labels of that evidence, so absent classes never appear. The cuts of one batch run in the pool's workers
    while the next batch goes through the network; results do not depend on the worker count.
    """
    count = len(names)
    if len(cues) != count or len(image_labels) != count:
        raise ValueError(f"names ({count}), cues ({len(cues)}) and image_labels ({len(image_labels)}) must describe "
                         f"the same images")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pending: tuple[range, list[tuple[int, int]], list[_Group]] | None = None
    for indices in _batches([range(count)] if runs is None else runs, batch_size, count):
        images = [load_image(names[i]) for i in indices]
        shapes = [scale_one_shape(image.shape[:2], input_size) for image in images]
        groups = []
        for shape in dict.fromkeys(shapes):  # distinct shapes in order of first appearance
            rows = [row for row, other in enumerate(shapes) if other == shape]
            x = normalize(torch.from_numpy(np.stack([resize_image(images[row], shape) for row in rows])))
            prediction = predict(model, x, scales=scales, flip=flip)
            grid = tuple(prediction.probs.shape[-2:])
            present = torch.from_numpy(np.stack([np.asarray(image_labels[indices[row]]) for row in rows]))
            probs = restrict_to_classes(prediction.probs, present)
            batch_cues = np.stack([cues_on_grid(cues[indices[row]], grid) for row in rows])
            classes = [np.flatnonzero(row) for row in present.numpy()]
            grown = None if pool is None else pool.grow(prediction.features, probs, batch_cues, classes)
            groups.append((rows, probs, present, grown))
        # The previous batch's cuts ran in the workers during this batch's forward passes; finish it now.
        if pending is not None:
            yield from _exported(*pending)
        pending = (indices, [image.shape[:2] for image in images], groups)
    if pending is not None:
        yield from _exported(*pending)


def _batches(runs: Sequence[range], batch_size: int, count: int) -> Iterator[range]:
    """Consecutive batches of at most batch_size positions within each run, runs in order; ValueError for a run
    outside 0 .. count - 1."""
    for run in runs:
        if run.step != 1 or (len(run) and not 0 <= run.start <= run.stop - 1 < count):
            raise ValueError(f"runs must be consecutive positions within the {count} images, got {run}")
        for begin in range(run.start, run.stop, batch_size):
            yield range(begin, min(begin + batch_size, run.stop))


def _exported(indices: range, sizes: list[tuple[int, int]], groups: list[_Group]) -> Iterator[ExportedImage]:
    """The ExportedImage of each image of a batch, in batch order, once its group's cuts are done."""
    results: list[ExportedImage | None] = [None] * len(indices)
    for rows, probs, present, grown in groups:
        supervision = np.zeros(probs.shape, np.uint8) if grown is None else grown.result()
        for position, row in enumerate(rows):
            evidence = Evidence(probs[position].numpy().astype(np.float16), supervision[position],
                                present[position].numpy().astype(bool))
            results[row] = ExportedImage(*evidence_labels(evidence, sizes[row]), evidence)
    for result in results:
        assert result is not None
        yield result

"""Cues (seeds): sparse, high-precision pixel labels on a G x G grid over the whole image (the network's output grid
for a square input; the published format), their store and their quality.

Cues are multi-hot (C, G, G) uint8 maps, channel 0 = background: a pixel may carry no label, one, or several
(imported published cues keep one). Spec section 1.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from dgcn.data.files import eight_bit
from dgcn.data.palette import IGNORE_INDEX
from dgcn.errors import InputError
from dgcn.graphcut import seed_labels
from dgcn.storage.atomic import atomic_output
from dgcn.storage.zarr_store import (
    NamedImageStore,
    check_class_names,
    check_names,
    check_provenance,
    create_image_array,
    create_store_group,
    record_layout,
    write_whole_array,
    wrong_layout,
)

FORMAT_NAME = "dgcn-cues"
FORMAT_VERSION = 3  # 2: checksums, layout, provenance, dimension names; 3: shard digests covering the store


def _check_unit_interval(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


def cues_from_cams(
    cams: np.ndarray,
    present: np.ndarray | Sequence[int],
    *,
    fg_threshold: float = 0.7,
    bg_threshold: float = 0.1,
    saliency: np.ndarray | None = None,
    saliency_threshold: float = 0.07,
) -> np.ndarray:
    """Cues of one image from its class activation maps.

    cams: (C-1, h, w) float CAMs, foreground class c at index c-1. present: foreground classes in the image (1..C-1).
    Each present class's CAM is ReLU'd and divided by its maximum. Foreground cue for c where that normalised score is
    >= fg_threshold. Background cue where every present class scores < bg_threshold or, when `saliency` ((h, w) in
    [0, 1]) is given, where saliency < saliency_threshold instead (0.07: the published DRFI threshold).
    Conflicts: a pixel claimed by several classes goes to the one with the highest normalised score (ties: the lower
    class index), and background is never set where a foreground cue is. Absent classes get no cues.
    Returns (C, h, w) uint8 with at most one 1 per pixel.
    """
    cams = np.asarray(cams)
    if cams.ndim != 3 or cams.shape[0] < 1 or cams.dtype.kind != "f":
        raise ValueError(f"cams must be a (C-1, h, w) float array, got {cams.shape} {cams.dtype}")
    if not np.isfinite(cams).all():
        raise ValueError("cams contain NaN or infinite values")
    num_classes = cams.shape[0] + 1
    classes = np.unique(np.asarray(present, dtype=np.int64).reshape(-1))
    if classes.size and (classes.min() < 1 or classes.max() >= num_classes):
        raise ValueError(f"present classes must lie in 1..{num_classes - 1}, got {classes.tolist()}")
    if not 0.0 < fg_threshold <= 1.0:
        raise ValueError(f"fg_threshold must lie in (0, 1], got {fg_threshold}")
    _check_unit_interval(bg_threshold, "bg_threshold")
    _check_unit_interval(saliency_threshold, "saliency_threshold")

    scores = np.maximum(cams[classes - 1], 0.0)
    peaks = scores.max(axis=(1, 2), keepdims=True)
    normalised = np.divide(scores, peaks, out=np.zeros_like(scores), where=peaks > 0)

    cues = np.zeros((num_classes, *cams.shape[1:]), dtype=np.uint8)
    claimed = np.zeros(cams.shape[1:], dtype=bool)
    if classes.size:
        winner = normalised.argmax(axis=0)  # first maximum = lowest class index among ties
        claimed = normalised.max(axis=0) >= fg_threshold
        for k, c in enumerate(classes):
            cues[c] = claimed & (winner == k)
    if saliency is None:
        low = (normalised < bg_threshold).all(axis=0)
    else:
        saliency = np.asarray(saliency)
        if saliency.shape != cams.shape[1:]:
            raise ValueError(f"saliency must be {cams.shape[1:]} like the CAMs, got {saliency.shape}")
        if not (np.isfinite(saliency).all() and saliency.min() >= 0.0 and saliency.max() <= 1.0):
            raise ValueError("saliency values must be finite and lie in [0, 1]")
        low = saliency < saliency_threshold
    cues[0] = low & ~claimed
    return cues


def open_saliency(path: str | Path, image_size: tuple[int, int]) -> Image.Image:
    """The saliency map of an image of (height, width) `image_size`, opened: its header read, no pixel decoded.
    FileNotFoundError when it is missing, InputError when its size differs (PIL's OSError when it is no image)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"saliency map not found: {path}")
    image = Image.open(path)
    if (image.height, image.width) != tuple(image_size):
        image.close()
        raise InputError(f"{path}: saliency map is {image.height}x{image.width}, its image "
                         f"{image_size[0]}x{image_size[1]}")
    return image


def load_saliency(path: str | Path, image_size: tuple[int, int], grid: int) -> np.ndarray:
    """A saliency map (a grey PNG the size of its image, 0..255 = not..most salient) -> (grid, grid) float32 in [0, 1]
    over the whole image, resized bilinearly as the cues' grid is (the published code zooms DRFI maps to 41 x 41)."""
    with open_saliency(path, image_size) as image:
        grey = np.asarray(eight_bit(image).convert("L"), dtype=np.float32) / 255.0
    resized = Image.fromarray(grey, mode="F").resize((grid, grid), Image.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def cue_label_map(cues: np.ndarray) -> np.ndarray:
    """(C, h, w) multi-hot cues -> (h, w) uint8 label map for display and scoring: the highest seeded class per pixel,
    as the graph cut's terminals use it (`seed_labels`), IGNORE_INDEX (255) where no class is seeded."""
    cues = np.asarray(cues)
    if cues.ndim != 3 or not 1 <= cues.shape[0] <= IGNORE_INDEX:
        raise ValueError(f"cues must be (C, h, w) with 1 <= C <= {IGNORE_INDEX}, got shape {cues.shape}")
    labels = seed_labels(cues).reshape(cues.shape[1:])
    return np.where(labels >= 0, labels, IGNORE_INDEX).astype(np.uint8)


def _check_cue_arrays(
    names: list[str], cues: np.ndarray, image_labels: np.ndarray, num_classes: int, where: str
) -> None:
    """Shapes, dtypes, 0/1 values, background always present, and no cue for a class absent from the image."""
    count = len(names)
    square = cues.ndim == 4 and cues.shape[2] == cues.shape[3]
    if cues.dtype != np.uint8 or not square or cues.shape[:2] != (count, num_classes):
        found = f"{cues.shape} {cues.dtype}"
        raise ValueError(f"{where}: cues must be (N={count}, C={num_classes}, G, G) uint8, got {found}")
    if image_labels.dtype != np.uint8 or image_labels.shape != (count, num_classes):
        raise ValueError(f"{where}: image_labels must be (N={count}, C={num_classes}) uint8, got {image_labels.shape}")
    if cues.max(initial=0) > 1 or image_labels.max(initial=0) > 1:
        raise ValueError(f"{where}: cues and image_labels must hold only 0 and 1")
    if not image_labels[:, 0].all():
        raise ValueError(f"{where}: image {names[int(np.argmin(image_labels[:, 0]))]!r} lacks the background label")
    stray = cues.any(axis=(2, 3)) & (image_labels == 0)
    if stray.any():
        i, c = (int(v) for v in np.argwhere(stray)[0])
        raise ValueError(f"{where}: image {names[i]!r} has cues for class {c}, which its image labels say is absent")


def write_cue_store(
    path: str | Path,
    names: Sequence[str],
    cues: np.ndarray,
    image_labels: np.ndarray,
    class_names: Sequence[str],
    shard_images: int = 256,
    *,
    provenance: Mapping[str, str],
) -> None:
    """Write cues (N, C, G, G) uint8 and image_labels (N, C) uint8 as a deterministic Zarr v3 group, atomically.

    Layout (format "dgcn-cues", version 3): arrays `cues` (image, class, y, x; sharded, one image per inner chunk),
    `image_labels` (image, class), `names` (image); attributes `class_names`, `grid` (G), `provenance` and `layout`
    (see dgcn.storage.zarr_store).
    """
    where = f"cue store {path}"
    names = check_names(names, where)
    provenance = check_provenance(provenance, where)
    class_names = check_class_names(class_names, where)
    cues, image_labels = np.asarray(cues), np.asarray(image_labels)
    _check_cue_arrays(names, cues, image_labels, len(class_names), where)
    with atomic_output(path) as temporary:
        attributes = {"class_names": class_names, "grid": int(cues.shape[2])}
        group = create_store_group(temporary, FORMAT_NAME, FORMAT_VERSION, attributes, provenance)
        write_whole_array(group, "names", np.asarray(names, dtype=str), ["image"])
        write_whole_array(group, "image_labels", image_labels, ["image", "class"])
        array = create_image_array(group, "cues", cues.shape, shard_images, 0, ["image", "class", "y", "x"])
        for start in range(0, len(names), shard_images):
            array[start : start + shard_images] = cues[start : start + shard_images]
        record_layout(group, temporary)


class CueStore(NamedImageStore):
    """Read a cue store: `store[i]` is the (C, G, G) uint8 cue map of image i (an index or an id); `image_labels` is
    (N, C) uint8.

    Raises FileNotFoundError for a missing path and StoreError (a ValueError) for anything else amiss.
    """

    def __init__(self, path: str | Path) -> None:
        arrays = {"cues": (4, "uint8"), "image_labels": (2, "uint8")}
        super().__init__(path, FORMAT_NAME, FORMAT_VERSION, arrays, "cues")
        self.class_names: list[str] = list(self.attributes.get("class_names", []))
        self.grid: int = int(self.attributes.get("grid", -1))
        self.image_labels: np.ndarray = self._whole("image_labels")
        expected = (len(self.names), len(self.class_names), self.grid, self.grid)
        if self._images.shape != expected or self.image_labels.shape != expected[:2]:
            found = f"cues {self._images.shape}, image_labels {self.image_labels.shape}"
            raise wrong_layout(self.path, f"{found} disagree with names, class_names and grid {expected}")

    def __getitem__(self, i: int | str) -> np.ndarray:
        return self._read(self._position(i))

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, block in self._blocks():
            yield from block


def _read_input_list(input_list_path: Path) -> list[tuple[str, int]]:
    """(image id, pickle index) per non-empty line of `<dir>/<name>.jpg <idx>`; the row number if idx is missing."""
    entries = []
    lines = [line.split() for line in input_list_path.read_text().splitlines() if line.strip()]
    for row, fields in enumerate(lines):
        if len(fields) > 2 or (len(fields) == 2 and not fields[1].isdigit()):
            raise InputError(f"{input_list_path}: line {row + 1} is not '<name>.jpg <idx>': {' '.join(fields)!r}")
        entries.append((PurePosixPath(fields[0]).stem, int(fields[1]) if len(fields) == 2 else row))
    return entries


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what the published cue format holds: builtin containers, numpy arrays, dtypes and scalars; and
    only arrays of plain numbers whose sizes the file's own bytes account for (a 100-byte pickle could otherwise ask
    numpy for terabytes, or for object arrays). `size`: the file's size in bytes."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
                # protocol 2 stores an array's bytes as _codecs.encode(str, "latin1") or bytes(...)
                ("_codecs", "encode"), ("builtins", "bytes"), ("__builtin__", "bytes")}

    def __init__(self, file: BinaryIO, size: int) -> None:
        super().__init__(file, encoding="latin1")  # the published file was written by Python 2
        # an array's bytes are in the file: all of them together may not exceed it (a margin for small files)
        self._budget = max(4 * size, 1 << 20)
        unpickler = self

        class CheckedArray(np.ndarray):
            """numpy's pickled arrays are filled by __setstate__: checked before numpy allocates."""

            def __setstate__(self, state: tuple) -> None:
                shape, dtype = state[-4:-2] if isinstance(state, tuple) and len(state) >= 4 else (None, None)
                unpickler._allocate(shape, dtype)
                super().__setstate__(state)

        self._array_class = CheckedArray

    def _allocate(self, shape: Any, dtype: Any) -> None:
        """Refuse an array that is not of plain numbers, or whose bytes exceed what is left of the budget."""
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise pickle.UnpicklingError(f"refused an array of dtype {dtype!r}: only arrays of numbers")
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise pickle.UnpicklingError(f"refused an array of shape {shape!r}")
        size = math.prod(shape) * dtype.itemsize
        if size > self._budget:
            raise pickle.UnpicklingError(f"refused an array of shape {shape} {dtype}: {size} bytes, more than the "
                                         "file holds")
        self._budget -= size

    def _reconstruct(self, subtype: type, shape: Any, dtype: Any) -> np.ndarray:
        """numpy's own pickles ask for an empty array here, then fill it (CheckedArray.__setstate__)."""
        try:
            checked = np.dtype(dtype)
        except TypeError as error:
            raise pickle.UnpicklingError(f"refused dtype {dtype!r}") from error
        self._allocate(shape, checked)
        return np.ndarray.__new__(self._array_class, shape, checked)

    def find_class(self, module: str, name: str) -> Any:
        module = module.replace("numpy.core.", "numpy._core.")  # Python 2 / numpy 1 pickles name numpy.core
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only containers and numpy arrays")
        if (module, name) == ("numpy", "ndarray"):
            return self._array_class
        if name == "_reconstruct":
            return self._reconstruct
        return super().find_class(module, name)


def _indices(value: Any, limit: int, cap: int, where: str, what: str) -> np.ndarray:
    """(n,) int64 of an index list of a cue pickle: integers (a list, or an integer array) in 0..limit-1, at most `cap`
    of them (checked before the list is converted: a crafted list may be huge)."""
    try:
        count = len(value)
        array = np.asarray(value).reshape(-1) if count <= cap else None
    except (TypeError, ValueError, OverflowError) as error:  # not a sequence, ragged, ...
        raise InputError(f"{where}: {what} are not a flat list of integers (a {type(value).__name__})") from error
    if array is None or array.size > cap:
        raise InputError(f"{where}: {count} {what}, more than the {cap} an image can have")
    if array.size and array.dtype.kind not in "iu":  # floats would be truncated, strings parsed: neither is an index
        raise InputError(f"{where}: {what} are {array.dtype} values, not integers")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= limit):
        raise InputError(f"{where}: {what} outside 0..{limit - 1}")
    return array


def import_published_cues(
    pickle_path: str | Path, input_list_path: str | Path, num_classes: int = 21, grid: int = 41
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read the published DSRG/DGCN cue pickle into (names, cues (N, C, G, G) uint8, image_labels (N, C) uint8).

    The pickle maps '<idx>_labels' to the present foreground classes and '<idx>_cues' to (class, row, col) arrays;
    `<idx>` comes from `input_list_path`. A cell cued for several classes keeps the highest alone, as the published
    data set's marker map does (hustvl/DGCN dataset.py:56-58). The pickle is read by a restricted unpickler that admits
    only containers and numpy arrays of numbers, so a crafted file cannot run code or exhaust memory; every index must
    be an integer in range.
    """
    pickle_path, input_list_path = Path(pickle_path), Path(input_list_path)
    entries = _read_input_list(input_list_path)
    names = check_names([name for name, _ in entries], str(input_list_path))
    with pickle_path.open("rb") as file:
        try:
            published = ArrayUnpickler(file, pickle_path.stat().st_size).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError,
                ValueError) as error:
            raise InputError(f"{pickle_path}: not a DSRG/DGCN cue pickle: {error}") from error
    if not isinstance(published, dict):
        raise InputError(f"{pickle_path}: expected a dict of '<idx>_labels' / '<idx>_cues', got {type(published)}")
    cues = np.zeros((len(names), num_classes, grid, grid), dtype=np.uint8)
    image_labels = np.zeros((len(names), num_classes), dtype=np.uint8)
    image_labels[:, 0] = 1
    for i, (name, idx) in enumerate(entries):
        where = f"{pickle_path}, image {name!r} (idx {idx})"
        if f"{idx}_labels" not in published or f"{idx}_cues" not in published:
            raise InputError(f"{where}: keys '{idx}_labels' / '{idx}_cues' are missing")
        image_labels[i, _indices(published[f"{idx}_labels"], num_classes, num_classes, where, "labels")] = 1
        triple = published[f"{idx}_cues"]
        if not isinstance(triple, tuple | list) or len(triple) != 3:
            raise InputError(f"{where}: cues must be three equally long arrays (class, row, col), got "
                             f"{type(triple).__name__}")
        classes, rows, cols = (_indices(axis, limit, num_classes * grid * grid, where, f"cue {what} indices")
                               for axis, limit, what in zip(triple, (num_classes, grid, grid), ("class", "row", "col"),
                                                            strict=True))
        if not len(classes) == len(rows) == len(cols):
            raise InputError(f"{where}: cues must be three equally long arrays (class, row, col)")
        if not image_labels[i, classes].all():
            raise InputError(f"{where}: cues for classes {sorted(set(classes.tolist()))} not all among its labels")
        highest = np.full((grid, grid), -1, dtype=np.int64)
        np.maximum.at(highest, (rows, cols), classes)
        cued = highest >= 0
        cues[i, highest[cued], *np.nonzero(cued)] = 1
    return names, cues, image_labels


def differing_label_sets(image_labels: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Indices of the images whose label sets differ: two (N, C) {0,1} arrays, e.g. a published pickle's labels and
    the ones derived from the masks. Returns (M,) int64, ascending."""
    image_labels, other = np.asarray(image_labels), np.asarray(other)
    if image_labels.ndim != 2 or image_labels.shape != other.shape:
        raise ValueError(f"image labels must be two (N, C) arrays of one shape, got {image_labels.shape} {other.shape}")
    return np.flatnonzero((image_labels.astype(bool) != other.astype(bool)).any(axis=1))


def export_published_cues(
    pickle_path: str | Path,
    input_list_path: str | Path,
    names: Sequence[str],
    cues: np.ndarray,
    image_labels: np.ndarray,
) -> None:
    """Write cues (N, C, G, G) uint8 and image_labels (N, C) uint8 in the published pickle + input_list.txt format.

    Image i gets idx i and the line `<name>.jpg <i>`; the pickle uses protocol 2 so Python 2 code can read it.
    """
    names = check_names(names, str(input_list_path))
    cues, image_labels = np.asarray(cues), np.asarray(image_labels)
    _check_cue_arrays(names, cues, image_labels, image_labels.shape[-1], str(pickle_path))
    published: dict[str, object] = {}
    for i in range(len(names)):
        published[f"{i}_labels"] = np.flatnonzero(image_labels[i, 1:]) + 1
        published[f"{i}_cues"] = tuple(np.nonzero(cues[i]))
    with atomic_output(pickle_path) as temporary, temporary.open("wb") as file:
        pickle.dump(published, file, protocol=2)
    with atomic_output(input_list_path) as temporary:
        temporary.write_text("".join(f"{name}.jpg {i}\n" for i, name in enumerate(names)))


@dataclass(frozen=True)
class CueQuality:
    """Counts behind cue precision and coverage; add instances to pool them over images."""

    correct: int  # cue labels (pixel, class) whose class is the pixel's ground truth
    cue_labels: int  # cue labels on non-ignored pixels
    gt_pixels: int  # non-ignored ground-truth pixels

    @property
    def precision(self) -> float:
        """Fraction of cue labels that agree with the ground truth (NaN without cues)."""
        return self.correct / self.cue_labels if self.cue_labels else math.nan

    @property
    def coverage(self) -> float:
        """Fraction of non-ignored ground-truth pixels carrying a correct cue (NaN without such pixels)."""
        return self.correct / self.gt_pixels if self.gt_pixels else math.nan

    def __add__(self, other: CueQuality) -> CueQuality:
        return CueQuality(
            self.correct + other.correct, self.cue_labels + other.cue_labels, self.gt_pixels + other.gt_pixels
        )


def cue_quality(cues: np.ndarray, gt_grid: np.ndarray) -> CueQuality:
    """Score cues (..., C, G, G) multi-hot against ground truth (..., G, G) on the same grid; gt 255 is ignored.

    Cue labels on ignored pixels count nowhere. Each pixel has one true class, so correct labels = covered pixels.
    """
    cues, gt_grid = np.asarray(cues), np.asarray(gt_grid)
    if cues.ndim < 3 or cues.shape[:-3] + cues.shape[-2:] != gt_grid.shape:
        raise ValueError(f"cues (..., C, G, G) {cues.shape} and gt_grid (..., G, G) {gt_grid.shape} do not match")
    num_classes = cues.shape[-3]
    if gt_grid.dtype.kind not in "iu":
        raise ValueError(f"gt_grid must hold integer class labels, got {gt_grid.dtype}")
    valid = gt_grid != IGNORE_INDEX
    if valid.any() and (gt_grid[valid].min() < 0 or gt_grid[valid].max() >= num_classes):
        raise ValueError(f"gt_grid has labels outside 0..{num_classes - 1} and {IGNORE_INDEX}")
    labelled = cues.astype(bool) & np.expand_dims(valid, -3)
    true_class = np.expand_dims(np.where(valid, gt_grid, 0), -3)
    correct = np.take_along_axis(labelled, true_class, axis=-3)
    return CueQuality(int(correct.sum()), int(labelled.sum()), int(valid.sum()))

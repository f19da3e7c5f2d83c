"""Label store: per-image uint8 label maps (pseudo-labels, CRF-refined labels) in one deterministic Zarr v3 group.

Layout (format "dgcn-labels", version 3):
- `labels`  uint8 (N, Hmax, Wmax) (image, y, x), padded with 255; inner chunk one image, shard `shard_images` images;
- `shapes`  int32 (N, 2) (image, hw), (height, width) of each image;
- `names`   string (N,) (image), image ids;
- attributes `class_names` (list of C str), `palette` (C RGB triples), `provenance` and `layout` (zarr_store).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from dgcn.data.palette import IGNORE_INDEX
from dgcn.storage.zarr_store import (
    NamedImageStore,
    ShardedStoreWriter,
    check_class_names,
    create_image_array,
    create_store_group,
    write_whole_array,
    wrong_layout,
)

FORMAT_NAME = "dgcn-labels"
FORMAT_VERSION = 3  # 2: checksums, layout, provenance, dimension names; 3: shard digests covering the store


def _check_shapes(shapes: np.ndarray | Sequence[Sequence[int]], count: int, where: str) -> np.ndarray:
    """(N, 2) positive (height, width) as int32."""
    array = np.asarray(shapes)
    if array.shape != (count, 2) or array.dtype.kind not in "iu" or (array.size and array.min() < 1):
        found = f"{array.shape} {array.dtype}"
        raise ValueError(f"{where}: shapes must be (N={count}, 2) positive (height, width) integers, got {found}")
    return array.astype(np.int32)


def _check_palette(palette: np.ndarray | Sequence[Sequence[int]], num_classes: int, where: str) -> list[list[int]]:
    """First `num_classes` rows of an (>= C, 3) palette with values 0..255, as nested lists for JSON."""
    array = np.asarray(palette)
    if array.ndim != 2 or array.shape[1] != 3 or array.shape[0] < num_classes or array.dtype.kind not in "iu":
        found = f"{array.shape} {array.dtype}"
        raise ValueError(f"{where}: palette must be (>= {num_classes}, 3) integer RGB rows, got {found}")
    if array.min() < 0 or array.max() > 255:
        raise ValueError(f"{where}: palette values must lie in 0..255")
    return array[:num_classes].astype(int).tolist()


class LabelStoreWriter(ShardedStoreWriter):
    """Write a label store shard by shard, publishing it atomically on a clean exit of the `with` block.

    The group is built in a temporary directory beside `path`; on clean exit every image must have been written,
    then it replaces `path`. On an exception the temporary directory is deleted and a previous `path` stays intact.
    `palette` may have more rows than classes (e.g. the full 256-row VOC map); the first C are kept.
    """

    kind = "label store"

    def __init__(
        self,
        path: str | Path,
        names: Sequence[str],
        shapes: np.ndarray | Sequence[Sequence[int]],
        class_names: Sequence[str],
        palette: np.ndarray | Sequence[Sequence[int]],
        shard_images: int = 256,
        *,
        provenance: Mapping[str, str],
    ) -> None:
        super().__init__(path, names, shard_images, provenance)
        self.shapes = _check_shapes(shapes, len(self.names), self.where)
        self.class_names = check_class_names(class_names, self.where)
        self.palette = _check_palette(palette, len(self.class_names), self.where)

    def _create(self, temporary: Path) -> None:
        attributes = {"class_names": self.class_names, "palette": self.palette}
        self._group = create_store_group(temporary, FORMAT_NAME, FORMAT_VERSION, attributes, self.provenance)
        write_whole_array(self._group, "names", np.asarray(self.names, dtype=str), ["image"])
        write_whole_array(self._group, "shapes", self.shapes, ["image", "hw"])
        height, width = (int(v) for v in self.shapes.max(axis=0))
        self._labels = create_image_array(self._group, "labels", (len(self.names), height, width), self.shard_images,
                                          IGNORE_INDEX, ["image", "y", "x"])

    def __enter__(self) -> LabelStoreWriter:
        return super().__enter__()

    def write(self, start: int, labels: Sequence[np.ndarray]) -> None:
        """Store images start .. start+len(labels)-1: a whole shard (the last one may be shorter).

        `start` must be a multiple of `shard_images` and `labels` must hold exactly min(shard_images, N - start)
        (h_i, w_i) uint8 maps with values < C or 255, matching the declared shapes.
        """
        count = self._claim_shard(start, len(labels), "label maps")
        block = np.full((count, *self._labels.shape[1:]), IGNORE_INDEX, dtype=np.uint8)
        for offset, label in enumerate(labels):
            self._check_label(start + offset, label)
            block[offset, : label.shape[0], : label.shape[1]] = label
        self._labels[start : start + count] = block
        self._shard_written(start)

    def _check_label(self, i: int, label: np.ndarray) -> None:
        """ValueError naming image `i` when its map has the wrong dtype, shape or class values."""
        name = self.names[i]
        expected = tuple(int(v) for v in self.shapes[i])
        if not isinstance(label, np.ndarray) or label.dtype != np.uint8:
            raise ValueError(f"{self.path}: label map of image {name!r} must be a uint8 array")
        if label.shape != expected:
            raise ValueError(f"{self.path}: label map of image {name!r} is {label.shape}, declared {expected}")
        values = np.unique(label)
        bad = values[(values >= len(self.class_names)) & (values != IGNORE_INDEX)]
        if bad.size:
            raise ValueError(f"{self.path}: label map of image {name!r} has values {bad.tolist()} outside the classes")


def write_label_store(
    path: str | Path,
    names: Sequence[str],
    labels: Sequence[np.ndarray],
    class_names: Sequence[str],
    palette: np.ndarray | Sequence[Sequence[int]],
    shard_images: int = 256,
    *,
    provenance: Mapping[str, str],
) -> None:
    """Write all (h_i, w_i) uint8 label maps at once (see LabelStoreWriter)."""
    if len(labels) != len(names):
        raise ValueError(f"{path}: {len(labels)} label maps for {len(names)} names")
    shapes = [np.shape(label) for label in labels]
    with LabelStoreWriter(path, names, shapes, class_names, palette, shard_images, provenance=provenance) as writer:
        for start in range(0, len(labels), shard_images):
            writer.write(start, labels[start : start + shard_images])


class LabelStore(NamedImageStore):
    """Read a label store: `store[i]` is the (h_i, w_i) uint8 map of image i (an index or an id); iterating yields the
    maps in order.

    Raises FileNotFoundError for a missing path and StoreError (a ValueError) for anything else amiss.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, FORMAT_NAME, FORMAT_VERSION, {"labels": (3, "uint8"), "shapes": (2, "i")}, "labels")
        self.shapes: np.ndarray = self._whole("shapes")
        self.class_names: list[str] = list(self.attributes.get("class_names", []))
        self.palette: np.ndarray = np.asarray(self.attributes.get("palette", []), dtype=np.uint8)
        self._check_layout()

    def _check_layout(self) -> None:
        """The shapes, class names and palette agree with the labels array."""
        padded = self._images.shape[1:]
        if self.shapes.shape != (len(self.names), 2) or self.shapes.min(initial=1) < 1:
            raise wrong_layout(self.path, f"shapes is {self.shapes.shape}, expected ({len(self.names)}, 2) positive")
        if len(self.names) and tuple(int(v) for v in self.shapes.max(axis=0)) != padded:
            raise wrong_layout(self.path, f"largest image shape {self.shapes.max(axis=0)} != labels padding {padded}")
        if len(self.class_names) < 2 or self.palette.shape != (len(self.class_names), 3):
            raise wrong_layout(self.path, "class_names / palette attributes missing or of different lengths")

    def __getitem__(self, i: int | str) -> np.ndarray:
        i = self._position(i)
        height, width = (int(v) for v in self.shapes[i])
        return self._read((i, slice(0, height), slice(0, width)))

    def __iter__(self) -> Iterator[np.ndarray]:
        for start, block in self._blocks():
            for offset, padded in enumerate(block):
                height, width = (int(v) for v in self.shapes[start + offset])
                yield padded[:height, :width]

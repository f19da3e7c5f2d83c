"""Evidence store: what the CRF needs of each exported image, on the network's grid, in one deterministic Zarr group.

Layout (format "dgcn-evidence", version 3), dimensions (image, class, y, x) / (image, hw) / (image, class):
- `probs`  float16 (N, C, Gh, Gw): the network's probabilities restricted to the image's classes (0 for the others),
  padded with 0 beyond the image's grid; inner chunk one image, shard `shard_images` images;
- `grown`  uint8 (N, C, Gh, Gw): the graph cut's grown masks (0/1, several classes may claim a cell), padded with 0;
- `grids`  int32 (N, 2): (height, width) of each image's grid;
- `image_labels` uint8 (N, C): the classes each image may contain (background included);
- `names`  string (N,); attributes `class_names` (list of C str), `provenance` and `layout` (zarr_store).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dgcn.storage.zarr_store import (
    NamedImageStore,
    ShardedStoreWriter,
    check_class_names,
    create_image_array,
    create_store_group,
    write_whole_array,
    wrong_layout,
)

FORMAT_NAME = "dgcn-evidence"
FORMAT_VERSION = 3  # 2: checksums, layout, provenance, dimension names; 3: shard digests covering the store


@dataclass(frozen=True)
class Evidence:
    """One image's evidence on its network grid (h, w).

    probs: (C, h, w) float16 probabilities, summing to ~1 over the present classes and 0 on the others;
    grown: (C, h, w) uint8 0/1 grown masks; present: (C,) bool, the classes the image may contain (background
    included).
    """

    probs: np.ndarray
    grown: np.ndarray
    present: np.ndarray

    def __post_init__(self) -> None:
        probs, grown, present = self.probs, self.grown, self.present
        if probs.ndim != 3 or probs.dtype != np.float16:
            raise ValueError(f"evidence probs must be (C, h, w) float16, got {probs.shape} {probs.dtype}")
        if grown.shape != probs.shape or grown.dtype != np.uint8:
            raise ValueError(f"evidence grown must be {probs.shape} uint8 like probs, got {grown.shape} {grown.dtype}")
        if present.shape != probs.shape[:1] or present.dtype != np.bool_ or not present.any():
            raise ValueError(f"evidence present must be ({probs.shape[0]},) bool with a class set, got {present.shape}")

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.probs.shape[1]), int(self.probs.shape[2])

    @property
    def classes(self) -> np.ndarray:
        """(K,) int64 indices of the present classes, ascending."""
        return np.flatnonzero(self.present)


class EvidenceStoreWriter(ShardedStoreWriter):
    """Write an evidence store shard by shard, published atomically on a clean exit of the `with` block.

    `grid` (Gh, Gw) bounds every image's grid (the padding of the arrays); each image's own grid and classes are
    taken from its Evidence.
    """

    kind = "evidence store"

    def __init__(
        self,
        path: str | Path,
        names: Sequence[str],
        class_names: Sequence[str],
        grid: tuple[int, int],
        shard_images: int = 256,
        *,
        provenance: Mapping[str, str],
    ) -> None:
        super().__init__(path, names, shard_images, provenance)
        self.class_names = check_class_names(class_names, self.where)
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"{self.where}: grid must be (height, width) >= 1, got {grid}")
        self.grid = (int(grid[0]), int(grid[1]))
        self._grids = np.zeros((len(self.names), 2), dtype=np.int32)
        self._image_labels = np.zeros((len(self.names), len(self.class_names)), dtype=np.uint8)

    def _create(self, temporary: Path) -> None:
        attributes = {"class_names": self.class_names}
        self._group = create_store_group(temporary, FORMAT_NAME, FORMAT_VERSION, attributes, self.provenance)
        write_whole_array(self._group, "names", np.asarray(self.names, dtype=str), ["image"])
        shape = (len(self.names), len(self.class_names), *self.grid)
        dimensions = ["image", "class", "y", "x"]
        self._probs = create_image_array(self._group, "probs", shape, self.shard_images, 0.0, dimensions,
                                         dtype="float16")
        self._grown = create_image_array(self._group, "grown", shape, self.shard_images, 0, dimensions)

    def __enter__(self) -> EvidenceStoreWriter:
        return super().__enter__()

    def write(self, start: int, evidence: Sequence[Evidence]) -> None:
        """Store images start .. start+len(evidence)-1: a whole shard (the last one may be shorter), C classes each,
        grids within the store's `grid`."""
        count = self._claim_shard(start, len(evidence), "evidence items")
        probs = np.zeros((count, *self._probs.shape[1:]), dtype=np.float16)
        grown = np.zeros((count, *self._grown.shape[1:]), dtype=np.uint8)
        for offset, item in enumerate(evidence):
            i = start + offset
            height, width = item.grid
            if item.probs.shape[0] != len(self.class_names) or height > self.grid[0] or width > self.grid[1]:
                raise ValueError(f"{self.path}: evidence of image {self.names[i]!r} is {item.probs.shape}, beyond "
                                 f"({len(self.class_names)}, {self.grid[0]}, {self.grid[1]})")
            probs[offset, :, :height, :width] = item.probs
            grown[offset, :, :height, :width] = item.grown
            self._grids[i] = (height, width)
            self._image_labels[i] = item.present
        self._probs[start : start + count] = probs
        self._grown[start : start + count] = grown
        self._shard_written(start)

    def _finish(self) -> None:
        write_whole_array(self._group, "grids", self._grids, ["image", "hw"])
        write_whole_array(self._group, "image_labels", self._image_labels, ["image", "class"])


class EvidenceStore(NamedImageStore):
    """Read an evidence store: `store[i]` is image i's Evidence (an index or an id); iterating yields them in order, a
    shard at a time.

    Raises FileNotFoundError for a missing path and StoreError (a ValueError) for anything else amiss.
    """

    def __init__(self, path: str | Path) -> None:
        arrays = {"probs": (4, "f"), "grown": (4, "u"), "grids": (2, "i"), "image_labels": (2, "u")}
        super().__init__(path, FORMAT_NAME, FORMAT_VERSION, arrays, "probs")
        self.class_names: list[str] = list(self.attributes.get("class_names", []))
        self.grids: np.ndarray = self._whole("grids")
        self.image_labels: np.ndarray = self._whole("image_labels")
        self._grown = self._group["grown"]
        count, classes = len(self.names), len(self.class_names)
        padded = self._images.shape[2:]
        if self._images.shape[1] != classes or self._grown.shape != self._images.shape:
            raise wrong_layout(self.path, f"probs {self._images.shape} and grown {self._grown.shape} do not hold "
                                          f"{classes} classes of the same images")
        if self.grids.shape != (count, 2) or self.image_labels.shape != (count, classes):
            raise wrong_layout(self.path, f"grids {self.grids.shape} / image_labels {self.image_labels.shape} do not "
                                          f"match {count} images of {classes} classes")
        if count and (self.grids.min() < 1 or (self.grids > np.asarray(padded)).any()):
            raise wrong_layout(self.path, f"grids outside 1..{padded}")
        if count and not self.image_labels.any(axis=1).all():
            raise wrong_layout(self.path, "an image has no class in image_labels")

    def _evidence(self, i: int, probs: np.ndarray, grown: np.ndarray) -> Evidence:
        height, width = (int(v) for v in self.grids[i])
        return Evidence(probs[:, :height, :width], grown[:, :height, :width], self.image_labels[i].astype(bool))

    def __getitem__(self, i: int | str) -> Evidence:
        i = self._position(i)
        return self._evidence(i, self._read(i), self._decode(self._grown, i, i))

    def __iter__(self) -> Iterator[Evidence]:
        for start, probs in self._blocks():
            grown = self._decode(self._grown, slice(start, start + len(probs)), start)
            for offset in range(len(probs)):
                yield self._evidence(start + offset, probs[offset], grown[offset])

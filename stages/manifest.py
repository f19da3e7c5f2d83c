"""The prepare stage's manifest, read back by every later stage: the data root, classes and split contents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import numpy as np

from dgcn.data.coco import CocoDataset
from dgcn.data.files import Reader
from dgcn.data.generic import FolderDataset
from dgcn.data.voc import VOCDataset
from dgcn.errors import InputError
from stages.runtime import read_json

# manifest "format" -> the reader of a split's files, built from the split's "reader" keywords
READERS = {"voc": VOCDataset, "generic": FolderDataset, "coco": CocoDataset}


@dataclass(frozen=True)
class Split:
    """One split as prepared: ids, (height, width) per image, present foreground classes per image, and which images
    have a ground-truth mask."""

    role: str
    dataset: Reader
    names: list[str]
    sizes: list[tuple[int, int]]
    classes: list[list[int]]
    masked: list[bool]

    def scored(self) -> list[int]:
        """Positions of the images with a mask: every mask-based metric is computed on them alone."""
        return [i for i, masked in enumerate(self.masked) if masked]

    def mask_or_none(self, name: str) -> np.ndarray | None:
        return self.dataset.mask(name) if self.dataset.has_mask(name) else None

    def scoring(self, stage: str) -> dict:
        """How many images a stage's mask-based metrics count, and why they are absent when none."""
        count = len(self.scored())
        reason = {} if count else {f"{stage}_not_scored": f"no {self.role} image has a ground-truth mask"}
        return {f"{stage}_scored_images": count} | reason

    def check_store(self, store_names: Sequence[str], path: Path, stage: str) -> None:
        """An upstream store must hold exactly this split's images, in order; else name the stage to rerun."""
        if list(store_names) != self.names:
            raise InputError(f"{path} does not hold the manifest's training images; rerun the {stage} stage")

    def image_labels(self) -> np.ndarray:
        """(N, C) uint8 image-level labels, background (0) always set."""
        labels = np.zeros((len(self.names), self.dataset.num_classes), dtype=np.uint8)
        labels[:, 0] = 1
        for row, present in zip(labels, self.classes, strict=True):
            row[present] = 1
        return labels


@dataclass(frozen=True)
class Manifest:
    classes: str
    root: Path
    class_names: tuple[str, ...]
    train: Split
    val: Split
    path: Path  # the file it was read from

    def check_classes(self, class_names: Sequence[str], path: Path, stage: str) -> None:
        """An upstream store must hold the manifest's classes, in order; else name the first that differs, both files
        and the stage to rerun."""
        if list(class_names) == list(self.class_names):
            return
        at, (theirs, ours) = next((i, pair) for i, pair in enumerate(zip_longest(class_names, self.class_names))
                                  if pair[0] != pair[1])
        theirs, ours = ("none" if name is None else repr(name) for name in (theirs, ours))
        raise InputError(f"{path} holds other classes than {self.path} (class {at}: {theirs} there, {ours} in the "
                         f"manifest); rerun the {stage} stage")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """The manifest at `path` (the prepare stage's manifest.json), with a clear error when it is missing."""
        raw = read_json(path, "the prepare stage's manifest")
        try:
            root, class_names = Path(raw["root"]), tuple(raw["class_names"])
            reader = READERS[raw["format"]]
            splits = {role: Split(role, reader(root, class_names=class_names, **entry["reader"]), entry["names"],
                                  [tuple(size) for size in entry["sizes"]], entry["classes"], entry["masked"])
                      for role, entry in raw["splits"].items()}
            return cls(raw["classes"], root, class_names, splits["train"], splits["val"], path)
        except (KeyError, TypeError, AttributeError) as error:  # JSON of another shape: not written by prepare
            raise InputError(f"{path} is not a manifest of the prepare stage ({type(error).__name__}: {error}); "
                             f"rerun prepare") from error

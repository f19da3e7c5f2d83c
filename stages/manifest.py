"""The prepare stage's manifest, read back by every later stage: the data root, classes and split contents."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dgcn.data.coco import CocoDataset
from dgcn.data.files import DatasetError, Reader, check_file_name
from dgcn.data.generic import FolderDataset
from dgcn.data.voc import VOCDataset
from dgcn.errors import InputError
from stages.params import inside_root, short
from stages.runtime import read_json

# manifest "format" -> the reader of a split's files, built from the split's "reader" keywords
READERS = {"voc": VOCDataset, "generic": FolderDataset, "coco": CocoDataset}


class UpstreamStore(Protocol):
    """What the stages check of a store they read (dgcn.storage's stores and the cue store)."""

    names: tuple[str, ...]
    class_names: list[str]
    provenance: dict[str, str]


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
    sha256: str  # of its bytes: the stores built from it record it (stamp) and their readers compare it

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

    def stamp(self, provenance: Mapping[str, str]) -> dict[str, str]:
        """A store's provenance with this manifest's digest, which check_upstream compares."""
        return {**provenance, "manifest_sha256": self.sha256}

    def check_upstream(self, store: UpstreamStore, path: Path, stage: str) -> None:
        """A store a stage reads must be the `stage` stage's (its recorded provenance), of this manifest's training
        images and classes, built from this very manifest; else one line naming the store and what to rerun."""
        written_by = store.provenance.get("stage")
        if written_by != stage:
            raise InputError(f"{path} was written by the {written_by or 'an unknown'} stage, not the {stage} stage: "
                             f"pass the {stage} stage's store")
        self.train.check_store(store.names, path, stage)
        self.check_classes(store.class_names, path, stage)
        if store.provenance.get("manifest_sha256") != self.sha256:
            raise InputError(f"{path} was built from another manifest than {self.path} (a stale store); rerun the "
                             f"{stage} stage")

    def check_network(self, network: object, path: Path, stage: str) -> None:
        """A saved network must score the manifest's number of classes; else name the file and the stage to rerun."""
        outputs = getattr(network, "num_classes", None)
        if outputs != len(self.class_names):
            raise InputError(f"{path} is a network of {outputs} classes, {self.path} has {len(self.class_names)}; "
                             f"rerun the {stage} stage")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """The manifest at `path` (the prepare stage's manifest.json), checked as it arrives (a manifest comes by
        `dvc pull` like any artifact): a clear error when it is missing or not what prepare writes."""
        raw = read_json(path, "the prepare stage's manifest")
        try:
            root, class_names = Path(raw["root"]), tuple(raw["class_names"])
            reader = READERS[raw["format"]]
            names = raw["class_names"]
            if not (isinstance(names, list) and len(set(names)) == len(names) >= 2
                    and all(isinstance(name, str) and name for name in names)):
                raise DatasetError(f"class_names {short(names)} are not two or more unique names")
            for role, entry in raw["splits"].items():
                _check_split(role, entry, len(class_names))
            splits = {role: Split(role, reader(root, class_names=class_names, **entry["reader"]), entry["names"],
                                  [tuple(size) for size in entry["sizes"]], entry["classes"], entry["masked"])
                      for role, entry in raw["splits"].items()}
            return cls(raw["classes"], root, class_names, splits["train"], splits["val"], path,
                       hashlib.sha256(path.read_bytes()).hexdigest())
        except (KeyError, TypeError, AttributeError, DatasetError) as error:  # not written by prepare, or edited
            reason = str(error) if isinstance(error, DatasetError) else f"{type(error).__name__}: {error}"
            raise InputError(f"{path} is not a manifest of the prepare stage ({reason}); rerun prepare") from error


def _check_split(role: str, entry: Mapping[str, Any], num_classes: int) -> None:
    """One split of a manifest as prepare writes it: ids that are file names, folders inside the data root, and
    per image a positive size, classes in range and a mask flag. DatasetError naming the split otherwise."""
    where = f"split {role!r}"
    for key, value in entry["reader"].items():  # the reader's folders and files, relative to the data root
        if value is not None and not inside_root(value):
            raise DatasetError(f"{where}: reader {key} {value!r} is not a path inside the data root")
    names = entry["names"]
    for name in names:
        if not isinstance(name, str):
            raise DatasetError(f"{where}: image id {short(name)} is not a string")
        check_file_name(name, where)
    columns = {key: entry[key] for key in ("sizes", "classes", "masked")}
    for key, column in columns.items():
        if not isinstance(column, list) or len(column) != len(names):
            raise DatasetError(f"{where}: {key} does not hold one entry per image id")
    for name, size, classes, masked in zip(names, *columns.values(), strict=True):
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v >= 1 for v in size)):
            raise DatasetError(f"{where}: image {name!r} has size {short(size)}, not [height, width] >= 1")
        if not (isinstance(classes, list) and all(_is_int(c) and 1 <= c < num_classes for c in classes)):
            raise DatasetError(f"{where}: image {name!r} has classes {short(classes)} outside 1..{num_classes - 1}")
        if not isinstance(masked, bool):
            raise DatasetError(f"{where}: image {name!r} has mask flag {short(masked)}, not true or false")


def check_utf8_names(folder: Path | None) -> None:
    """Every file name below `folder` (if any) is UTF-8: a stage hashes the folder by file name (the masks, the
    saliency maps), and the digest takes text. DatasetError naming the folder and the bytes otherwise."""
    if folder is None or not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        try:
            path.name.encode("utf-8")
        except UnicodeEncodeError:  # os.listdir decoded the undecodable bytes to lone surrogates
            raise DatasetError(f"{path.parent}: file name {os.fsencode(path.name)!r} is not UTF-8; rename or remove "
                               "it") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

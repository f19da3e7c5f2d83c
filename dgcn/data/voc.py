"""The PASCAL VOC 2012 layout: images, palette masks, split lists, image-level labels, and its validation."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from dgcn.data.files import (
    DatasetError,
    STRICT,
    SampleCheck,
    check_file_name,
    checked_mask,
    image_size,
    listing,
    read_mask,
    read_rgb,
)
from dgcn.data.palette import VOC_CLASSES

__all__ = ["DatasetError", "SampleInfo", "VOCDataset", "check_disjoint"]


@dataclass(frozen=True)
class SampleInfo:
    """What the manifest records per image: id, (height, width), present foreground classes (1..C-1), and whether
    it has a ground-truth mask."""

    name: str
    height: int
    width: int
    classes: tuple[int, ...]
    masked: bool


class VOCDataset:
    """One split of a VOC-layout root.

    `<root>/JPEGImages/<id>.jpg`, `<root>/SegmentationClassAug/<id>.png` (palette masks, 255 = ignore) and
    `<root>/ImageSets/Segmentation/<split>.txt`. Image-level labels come from the mask when there is one, else from
    `<root>/Annotations/<id>.xml`.
    """

    def __init__(self, root: Path, split: str, class_names: tuple[str, ...] = VOC_CLASSES) -> None:
        self.root = Path(root)
        self.split = split
        self.class_names = tuple(class_names)
        if not self.root.is_dir():
            raise DatasetError(f"data root not found: {self.root}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def split_file(self) -> Path:
        """`<root>/ImageSets/Segmentation/<split>.txt`: one image id per line (the first word of the line)."""
        return self.root / "ImageSets" / "Segmentation" / f"{self.split}.txt"

    @cached_property
    def names(self) -> list[str]:
        """Image ids of the split, in file order: unique file names without folders, from UTF-8 text."""
        split_file = self.split_file
        if not split_file.is_file():
            raise DatasetError(f"split list not found: {split_file}")
        try:
            # the byte-order mark some editors write is not part of the first id
            text = split_file.read_bytes().decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as error:
            raise DatasetError(f"split list is not UTF-8 text: {split_file} (byte {error.start}: "
                               f"{error.object[error.start:error.start + 1]!r})") from None
        names = [line.split()[0] for line in text.splitlines() if line.strip()]
        if not names:
            raise DatasetError(f"empty split: {split_file} lists no images")
        for name in names:
            check_file_name(name, str(split_file))
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            raise DatasetError(f"duplicate ids in {split_file}: {listing(duplicates)}")
        return names

    def __len__(self) -> int:
        return len(self.names)

    def image_path(self, name: str) -> Path:
        return self.root / "JPEGImages" / f"{name}.jpg"

    def mask_path(self, name: str) -> Path:
        return self.root / "SegmentationClassAug" / f"{name}.png"

    @property
    def mask_source(self) -> Path:
        """Where the masks come from (a resumable stage hashes it)."""
        return self.root / "SegmentationClassAug"

    def annotation_path(self, name: str) -> Path:
        return self.root / "Annotations" / f"{name}.xml"

    def has_mask(self, name: str) -> bool:
        return self.mask_path(name).is_file()

    def image(self, name: str) -> np.ndarray:
        """(H, W, 3) uint8 RGB, a writable array (torch and pydensecrf refuse read-only buffers)."""
        return read_rgb(self.image_path(name))

    def mask(self, name: str) -> np.ndarray:
        """(H, W) uint8 class indices, 255 = ignore; checked against the class range."""
        return read_mask(self.mask_path(name), self.num_classes)

    def image_labels(self, name: str) -> tuple[int, ...]:
        """Present foreground classes (1..C-1), from the mask or else from the XML annotation."""
        if self.has_mask(name):
            return self._labels_from_mask(self.mask(name))
        return self._labels_from_annotation(name)

    def _labels_from_mask(self, mask: np.ndarray) -> tuple[int, ...]:
        return tuple(int(v) for v in np.unique(mask) if 0 < v < self.num_classes)

    def _labels_from_annotation(self, name: str) -> tuple[int, ...]:
        path = self.annotation_path(name)
        if not path.is_file():
            raise DatasetError(f"no image-level labels for '{name}': neither {self.mask_path(name)} "
                               f"nor {path} exists")
        try:
            tree = ElementTree.parse(path)
        except ElementTree.ParseError as error:
            raise DatasetError(f"unreadable annotation {path}: {error}") from error
        found = set()
        for element in tree.getroot().iter("object"):
            class_name = (element.findtext("name") or "").strip()
            if class_name not in self.class_names[1:]:
                raise DatasetError(f"unknown class '{class_name}' in {path}")
            found.add(self.class_names.index(class_name))
        return tuple(sorted(found))

    def validate(self, check: SampleCheck = STRICT) -> list[SampleInfo]:
        """Check every image (and mask) of the split; return what the manifest records. Raises on the first bad file
        (`check`: or reports each, and headers alone may be read)."""
        infos = [info for name in self.names if (info := check.sample(self._sample, name)) is not None]
        if check.decode and infos and not any(info.classes for info in infos):
            # every score on such a split is 1.0 (background everywhere), and no classifier can learn from it
            raise DatasetError(f"no foreground in {self.split_file}: none of its {len(infos)} images contains an "
                               f"object class")
        return infos

    def _sample(self, name: str, decode: bool) -> SampleInfo:
        """One image's record, its files checked (see SampleCheck for `decode`)."""
        path = self.image_path(name)
        if not path.is_file():
            raise DatasetError(f"image not found: {path}")
        height, width = image_size(path, decode=decode)
        masked = self.has_mask(name)
        if not masked:
            return SampleInfo(name, height, width, self._labels_from_annotation(name), False)
        mask = checked_mask(self.mask_path(name), (height, width), self.num_classes, decode)
        return SampleInfo(name, height, width, () if mask is None else self._labels_from_mask(mask), True)


def check_disjoint(train: VOCDataset, val: VOCDataset) -> None:
    """DatasetError naming the ids that both splits list: a validation image seen in training inflates its scores."""
    shared = sorted(set(train.names) & set(val.names))
    if shared:
        raise DatasetError(f"{len(shared)} ids in both {train.split_file} and {val.split_file}: {listing(shared)}")

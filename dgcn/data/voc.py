"""The PASCAL VOC 2012 layout: images, palette masks, split lists, image-level labels, and its validation."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dgcn.data.palette import IGNORE_INDEX, VOC_CLASSES
from dgcn.errors import InputError


class DatasetError(InputError):
    """The data set on disk is not usable; the message names the first bad file."""


@dataclass(frozen=True)
class SampleInfo:
    """What the manifest records per image: id, (height, width) and present foreground classes (1..C-1)."""

    name: str
    height: int
    width: int
    classes: tuple[int, ...]


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

    @cached_property
    def names(self) -> list[str]:
        """Image ids of the split, in file order."""
        split_file = self.root / "ImageSets" / "Segmentation" / f"{self.split}.txt"
        if not split_file.is_file():
            raise DatasetError(f"split list not found: {split_file}")
        names = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        if not names:
            raise DatasetError(f"empty split: {split_file} lists no images")
        return names

    def __len__(self) -> int:
        return len(self.names)

    def image_path(self, name: str) -> Path:
        return self.root / "JPEGImages" / f"{name}.jpg"

    def mask_path(self, name: str) -> Path:
        return self.root / "SegmentationClassAug" / f"{name}.png"

    def annotation_path(self, name: str) -> Path:
        return self.root / "Annotations" / f"{name}.xml"

    def has_mask(self, name: str) -> bool:
        return self.mask_path(name).is_file()

    def image(self, name: str) -> np.ndarray:
        """(H, W, 3) uint8 RGB, a writable array (torch and pydensecrf refuse read-only buffers)."""
        return np.array(_open_image(self.image_path(name)).convert("RGB"))

    def mask(self, name: str) -> np.ndarray:
        """(H, W) uint8 class indices, 255 = ignore; checked against the class range."""
        path = self.mask_path(name)
        if not path.is_file():
            raise DatasetError(f"mask not found: {path}")
        mask = np.asarray(_open_image(path))
        if mask.ndim != 2:
            raise DatasetError(f"mask is not a single-channel (palette) image: {path} has shape {mask.shape}")
        bad = np.unique(mask[(mask >= self.num_classes) & (mask != IGNORE_INDEX)])
        if bad.size:
            raise DatasetError(f"mask values {bad.tolist()} outside the class range 0..{self.num_classes - 1} "
                               f"(and {IGNORE_INDEX} = ignore): {path}")
        return mask.astype(np.uint8, copy=False)

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

    def validate(self) -> list[SampleInfo]:
        """Check every image (and mask) of the split; return what the manifest records. Raises on the first bad file."""
        infos = []
        for name in self.names:
            path = self.image_path(name)
            if not path.is_file():
                raise DatasetError(f"image not found: {path}")
            with _open_image(path) as image:
                width, height = image.size
            if self.has_mask(name):
                mask = self.mask(name)
                if mask.shape != (height, width):
                    raise DatasetError(f"mask size {mask.shape[1]}x{mask.shape[0]} differs from its image "
                                       f"{width}x{height}: {self.mask_path(name)}")
                classes = self._labels_from_mask(mask)
            else:
                classes = self._labels_from_annotation(name)
            infos.append(SampleInfo(name, height, width, classes))
        return infos


def _open_image(path: Path) -> Image.Image:
    """Open and fully decode an image so corrupt files fail here, naming the file."""
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError as error:
        raise DatasetError(f"image not found: {path}") from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetError(f"unreadable or corrupt image: {path} ({error})") from error
    return image

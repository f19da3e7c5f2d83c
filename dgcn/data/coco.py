"""COCO (2014) instance annotations as a segmentation data set: image-level labels from the instances, masks rendered
from their polygons / RLE with pycocotools.

Classes: background, then the JSON's categories sorted by id (COCO's 80 ids 1..90 with gaps -> 1..80). A mask paints
the instances largest first, so a smaller object on top of a larger one stays visible; crowd regions are painted
with their class too (they are that class's pixels).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from dgcn.data.files import STRICT, DatasetError, SampleCheck, check_file_name, image_size, listing, read_rgb, warn
from dgcn.data.generic import BACKGROUND
from dgcn.data.voc import SampleInfo


@dataclass(frozen=True)
class CocoImage:
    name: str
    height: int
    width: int
    annotations: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class CocoInstances:
    """An instances JSON: class names (background first), category id -> class index, images in file order."""

    path: Path
    class_names: tuple[str, ...]
    category_index: dict[int, int]
    images: dict[str, CocoImage]

    @classmethod
    def load(cls, path: Path) -> CocoInstances:
        """Parse and check an instances JSON; a problem names the file and the entry."""
        if not path.is_file():
            raise DatasetError(f"COCO annotations not found: {path}")
        try:
            raw = json.loads(path.read_bytes())
            categories = sorted((int(entry["id"]), str(entry["name"])) for entry in raw["categories"])
            entries = [(int(entry["id"]), str(entry["file_name"]), int(entry["height"]), int(entry["width"]))
                       for entry in raw["images"]]
            annotations = raw["annotations"]
        except (ValueError, KeyError, TypeError) as error:  # not JSON, or another shape
            raise DatasetError(f"{path} is not a COCO instances file ({type(error).__name__}: {error})") from None
        category_index = {category: i for i, (category, _) in enumerate(categories, start=1)}
        ids = {image_id for image_id, *_ in entries}
        grouped: dict[int, list[dict]] = defaultdict(list)
        for number, annotation in enumerate(annotations):
            where = f"{path}: annotation {number} (id {annotation.get('id') if isinstance(annotation, dict) else '?'})"
            if not isinstance(annotation, dict) or "segmentation" not in annotation:
                raise DatasetError(f"{where}: no segmentation")
            if annotation.get("image_id") not in ids:
                raise DatasetError(f"{where}: unknown image id {annotation.get('image_id')!r}")
            if annotation.get("category_id") not in category_index:
                raise DatasetError(f"{where}: unknown category id {annotation.get('category_id')!r}")
            grouped[annotation["image_id"]].append(annotation)
        images: dict[str, CocoImage] = {}
        for image_id, name, height, width in entries:
            check_file_name(name, str(path))
            if name in images:
                raise DatasetError(f"{path}: duplicate image {name!r}")
            images[name] = CocoImage(name, height, width, tuple(grouped[image_id]))
        return cls(path, (BACKGROUND, *(name for _, name in categories)), category_index, images)

    def classes(self, name: str) -> tuple[int, ...]:
        """The image's classes (1..C-1): those of its instances."""
        return tuple(sorted({self.category_index[a["category_id"]] for a in self.images[name].annotations}))

    def mask(self, name: str) -> np.ndarray:
        """(H, W) uint8 class indices rendered from the image's instances (largest first)."""
        image = self.images[name]
        mask = np.zeros((image.height, image.width), dtype=np.uint8)
        painted = []
        for annotation in image.annotations:
            try:
                pixels = coco_mask.decode(_rle(annotation["segmentation"], image.height, image.width))
            except (ValueError, TypeError, KeyError, IndexError) as error:
                raise DatasetError(f"{self.path}: annotation id {annotation.get('id')} of {name}: unreadable "
                                   f"segmentation ({type(error).__name__}: {error})") from None
            painted.append((-int(pixels.sum()), len(painted), pixels.astype(bool), annotation["category_id"]))
        for _, _, pixels, category in sorted(painted, key=lambda item: item[:2]):
            mask[pixels] = self.category_index[category]
        return mask


def _rle(segmentation: Any, height: int, width: int) -> dict:
    """One RLE of a polygon list, an uncompressed RLE (counts a list) or a compressed one."""
    if isinstance(segmentation, list):
        return coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):
        return coco_mask.frPyObjects(segmentation, height, width)
    return segmentation


class CocoDataset:
    """One COCO split: `<root>/<images>/<file_name>` and `<root>/<annotations>` (an instances JSON)."""

    def __init__(self, root: Path, class_names: tuple[str, ...], images: str, annotations: str,
                 instances: CocoInstances | None = None) -> None:
        """`instances`: the annotations file already loaded (else read on first use)."""
        self.root = Path(root)
        self.class_names = tuple(class_names)
        self.images, self.annotations = images, annotations
        if not self.root.is_dir():
            raise DatasetError(f"data root not found: {self.root}")
        if instances is not None:
            self.__dict__["instances"] = instances  # the cached_property's value

    @cached_property
    def instances(self) -> CocoInstances:
        return CocoInstances.load(self.root / self.annotations)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def image_path(self, name: str) -> Path:
        return self.root / self.images / name

    @property
    def mask_source(self) -> Path:
        """Where the masks come from (a resumable stage hashes it): the instances JSON."""
        return self.root / self.annotations

    def has_mask(self, name: str) -> bool:
        return name in self.instances.images

    def image(self, name: str) -> np.ndarray:
        return read_rgb(self.image_path(name))

    def mask(self, name: str) -> np.ndarray:
        return self.instances.mask(name)

    def validate(self, *, tagged_only: bool, check: SampleCheck = STRICT) -> list[SampleInfo]:
        """Check every image against the JSON; `tagged_only` leaves out images without instances (training); `check`:
        how (see SampleCheck)."""
        if self.instances.class_names != self.class_names:
            raise DatasetError(f"{self.instances.path}: categories differ from the training annotations'")
        infos, untagged = [], []
        for name in self.instances.images:
            if tagged_only and not self.instances.classes(name):
                untagged.append(name)
            elif (info := check.sample(self._sample, name)) is not None:
                infos.append(info)
        if untagged:
            warn(f"{self.instances.path}: {len(untagged)} images without instances (no tags) left out of training: "
                 f"{listing(untagged, 3)}")
        if not infos:
            raise DatasetError(f"{self.instances.path}: no usable image")
        return infos

    def _sample(self, name: str, decode: bool) -> SampleInfo:
        """One image's record, its file checked against its entry in the JSON."""
        entry = self.instances.images[name]
        path = self.image_path(name)
        if not path.is_file():
            raise DatasetError(f"{self.instances.path}: image not found: {path}")
        size = image_size(path, decode=decode)
        if size != (entry.height, entry.width):
            raise DatasetError(f"{path} is {size[1]}x{size[0]}, its annotation in {self.instances.path} says "
                               f"{entry.width}x{entry.height}: the mask size would differ from its image")
        return SampleInfo(name, *size, self.instances.classes(name), True)

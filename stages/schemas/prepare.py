"""The `prepare` section: which data set layout to read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, Strict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from stages.params import Section, Seed, inside_root


def _inside_root(path: Path) -> Path:
    # the manifest records these paths and every later stage refuses one that leaves the data root
    if not inside_root(path):
        raise PydanticCustomError("inside_root", "must be a relative path inside the data root (no leading / or ..)")
    return path


RelativePath = Annotated[Path, Strict(False), AfterValidator(_inside_root), Field(description="relative to the data "
                                                                                              "root")]


class GenericLayout(Section):
    """Your own data set (prepare.format generic): a folder of images and a labels file of tags."""

    images: RelativePath = Field(description="folder of the images (JPEG/PNG); an image id is its file name")
    labels: RelativePath = Field(description="CSV 'image,tags' (tags separated by spaces or ';') or JSON lines")
    class_list: RelativePath | None = Field(
        description="one object class per line (background is class 0, implicit); null: the tags, sorted")
    masks: RelativePath | None = Field(description="folder of <stem>.png masks for any subset of the images (or null)")
    train_list: RelativePath | None = Field(description="image ids of the training split; null: a seeded val_fraction")
    val_list: RelativePath | None = Field(description="image ids of the validation split (with train_list)")
    val_fraction: float = Field(gt=0, lt=1, description="without lists: this fraction of the images, drawn at random")
    seed: Seed

    @field_validator("val_list")
    @classmethod
    def _both_lists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if (value is None) != (info.data.get("train_list") is None):
            raise PydanticCustomError("both_lists", "train_list and val_list are given together, or neither", {})
        return value


class CocoLayout(Section):
    """COCO 2014 (prepare.format coco): image folders and their instances JSON."""

    train_images: RelativePath
    train_annotations: RelativePath
    val_images: RelativePath
    val_annotations: RelativePath


class PrepareParams(Section):
    """Which data set layout to read: VOC (class list by name, ImageSets lists), your own (generic), or COCO."""

    format: Literal["voc", "generic", "coco"] = Field(
        description="voc: the VOC layout (classes, train_split, val_split); generic: a folder of images and tags "
                    "(the generic section); coco: COCO instances (the coco section)")
    classes: Literal["voc", "synthetic"] = Field(description="format voc: the class list by name")
    train_split: str = Field(min_length=1, description="format voc: ImageSets/Segmentation/<split>.txt")
    val_split: str
    generic: GenericLayout
    coco: CocoLayout

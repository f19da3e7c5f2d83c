"""The `synthesize` section: the embedded generator of a synthetic data set."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from dgcn.data.synthetic import MAX_OBJECT_AREA
from stages.params import Section, Seed, check_range


class SynthesizeParams(Section):
    """The embedded generator of a synthetic VOC-layout data set."""

    num_train: int = Field(ge=1)
    num_val: int = Field(ge=1)
    image_size: int = Field(ge=64, le=512)
    object_area: Annotated[list[Annotated[float, Field(gt=0, le=max(MAX_OBJECT_AREA.values()))]],
                           Field(min_length=2, max_length=2)] = Field(
        description="[low, high] fraction of the image one object covers before occlusion (difficulty); at most "
                    "0.5 in the plain style, 0.9 in the parts style (a body may leave the image)")
    clutter: Annotated[list[Annotated[int, Field(ge=0, le=50)]], Field(min_length=2, max_length=2)] = Field(
        description="[low, high] number of clutter items per image (difficulty); style parts: occluders over the "
                    "objects")
    objects: Annotated[list[Annotated[int, Field(ge=1, le=5)]], Field(min_length=2, max_length=2)] = Field(
        description="[low, high] number of objects per image, of distinct classes")
    style: Literal["plain", "parts"] = Field(
        description="plain: each object is its class's shape and texture; parts: a small class part on a large "
                    "body that no class owns, on a background of the bodies' surfaces (docs/ablations.md)")
    part_area: Annotated[list[Annotated[float, Field(gt=0, lt=1)]], Field(min_length=2, max_length=2)] = Field(
        description="style parts: [low, high] fraction of its object that the class part covers")
    seed: Seed

    @field_validator("object_area", "clutter", "objects", "part_area")
    @classmethod
    def _ordered_bounds(cls, values: list[float], info: ValidationInfo) -> list[float]:
        return check_range(values, info.field_name)

    @model_validator(mode="after")
    def _object_area_fits_the_style(self) -> SynthesizeParams:
        if self.object_area[1] > MAX_OBJECT_AREA[self.style]:
            raise ValueError(f"object_area must be at most {MAX_OBJECT_AREA[self.style]} in the {self.style} style, "
                             f"got {self.object_area}")
        return self

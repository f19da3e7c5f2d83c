"""The `synthesize` section: the embedded generator of a synthetic data set."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from stages.params import Section, Seed, check_range


class SynthesizeParams(Section):
    """The embedded generator of a synthetic VOC-layout data set."""

    num_train: int = Field(ge=1)
    num_val: int = Field(ge=1)
    image_size: int = Field(ge=64, le=512)
    object_area: Annotated[list[Annotated[float, Field(gt=0, le=0.5)]], Field(min_length=2, max_length=2)] = Field(
        description="[low, high] fraction of the image one object covers before occlusion (difficulty)")
    clutter: Annotated[list[Annotated[int, Field(ge=0, le=50)]], Field(min_length=2, max_length=2)] = Field(
        description="[low, high] number of clutter items per image (difficulty)")
    seed: Seed

    @field_validator("object_area", "clutter")
    @classmethod
    def _ordered_bounds(cls, values: list[float], info: ValidationInfo) -> list[float]:
        return check_range(values, info.field_name)

"""The `retrain` and `retrain_labels` sections: the network retrained on the pseudo-labels (or, as the upper bound,
on the ground truth) and which pseudo-labels it trains on."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from stages.params import BatchSize, Epochs, Section, Seed, check_range
from stages.schemas.network import CropTrainingParams, OptimizerParams


class RetrainParams(CropTrainingParams):
    """The final segmentation network retrained on the CRF-refined pseudo-labels."""

    scale_range: Annotated[list[Annotated[float, Field(gt=0, le=4)]], Field(min_length=2, max_length=2)] = Field(
        description="image and labels rescaled by a random factor in [low, high] before the crop (published 0.5-1.5)")
    epochs: Epochs
    batch_size: BatchSize
    optimizer: OptimizerParams
    class_weights: Literal["none", "inverse_sqrt_frequency"] = Field(
        description="cross-entropy weight per class: none (the published loss), or 1 / sqrt(the class's share of the "
                    "training labels' pixels), scaled to a mean of 1 per pixel")
    seed: Seed

    @field_validator("scale_range")
    @classmethod
    def _ordered_scales(cls, values: list[float]) -> list[float]:
        return check_range(values, "scale_range")


class RetrainLabelsParams(Section):
    """Which pseudo-labels the retrain stage trains on (its own section, so that the upper bound does not depend on
    it)."""

    source: Literal["crf", "export", "cam"] = Field(
        description="the crf stage's labels (published), the export's (no CRF stage), or the cues stage's plain-CAM "
                    "labels (the CAM baseline)")

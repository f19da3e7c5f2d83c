"""The `retrain` and `retrain_labels` sections: the network retrained on the pseudo-labels (or, as the upper bound,
on the ground truth) and which pseudo-labels it trains on."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from stages.params import BatchSize, Epochs, Section, Seed, check_range
from stages.schemas.network import CropTrainingParams, OptimizerParams


class RetrainOptimizerParams(OptimizerParams):
    """The retraining optimizer: the shared one, plus DeepLab's own group for the head's biases."""

    head_bias_lr_mult: float | None = Field(ge=1, description="learning-rate multiplier of the head's biases "
                                                              "(DeepLab: 20); null = head_lr_mult")
    head_bias_weight_decay: float | None = Field(ge=0, le=1, description="weight decay of the head's biases "
                                                                         "(DeepLab: 0); null = weight_decay")


class RetrainParams(CropTrainingParams):
    """The final segmentation network retrained on the CRF-refined pseudo-labels."""

    scale_range: Annotated[list[Annotated[float, Field(gt=0, le=4)]], Field(min_length=2, max_length=2)] = Field(
        description="image and labels rescaled by a random factor in [low, high] before the crop (published 0.5-1.5)")
    scale_step: float | None = Field(gt=0, description="the factor drawn from low, low + step, ..., high (DeepLab: "
                                                       "0.25, one of 0.5 ... 1.5); null = uniform in scale_range")
    epochs: Epochs | None = Field(description="training length in epochs; null = `iterations`")
    iterations: int | None = Field(ge=1, description="training length in optimiser steps (the last epoch cut "
                                                     "short); null = `epochs`")
    batch_size: BatchSize
    iter_size: int = Field(ge=1, le=64, description="each batch runs in this many parts, gradients accumulated: "
                                                    "less memory, the same step with frozen BatchNorm")
    optimizer: RetrainOptimizerParams
    class_weights: Literal["none", "inverse_sqrt_frequency"] = Field(
        description="cross-entropy weight per class: none (the published loss), or 1 / sqrt(the class's share of the "
                    "training labels' pixels), scaled to a mean of 1 per pixel")
    seed: Seed

    @field_validator("scale_range")
    @classmethod
    def _ordered_scales(cls, values: list[float]) -> list[float]:
        return check_range(values, "scale_range")

    @field_validator("scale_step")
    @classmethod
    def _step_divides_range(cls, step: float | None, info: ValidationInfo) -> float | None:
        scales = info.data.get("scale_range")
        if step is not None and scales is not None:
            count = (scales[1] - scales[0]) / step
            if abs(count - round(count)) > 1e-6:
                raise PydanticCustomError("step_range", f"scale_step must divide scale_range {scales}", {})
        return step

    @field_validator("iterations")
    @classmethod
    def _one_length(cls, iterations: int | None, info: ValidationInfo) -> int | None:
        if "epochs" in info.data and (info.data["epochs"] is None) == (iterations is None):
            raise PydanticCustomError("one_length", "set one of epochs and iterations, the other null", {})
        return iterations


class RetrainLabelsParams(Section):
    """Which pseudo-labels the retrain stage trains on (its own section, so that the upper bound does not depend on
    it)."""

    source: Literal["crf", "export", "cam"] = Field(
        description="the crf stage's labels (published), the export's (no CRF stage), or the cues stage's plain-CAM "
                    "labels (the CAM baseline)")

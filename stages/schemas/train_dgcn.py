"""The `train_dgcn` section: the DGCN network trained on cues grown by graph cut."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from stages.params import BatchSize, Epochs, Seed, Workers, check_range
from stages.schemas.network import CropTrainingParams, OptimizerParams


class TrainDGCNParams(CropTrainingParams):
    """The DGCN segmentation network trained on cues grown by graph cut."""

    resize_long: Annotated[list[Annotated[int, Field(ge=32, le=4096)]], Field(min_length=2, max_length=2)] | None = (
        Field(description="the extended recipe: long side resized to a random [low, high] before the crop; null = off"))
    epochs: Epochs
    batch_size: BatchSize
    optimizer: OptimizerParams
    warmup_iters: int = Field(ge=0, description="linear warm-up, then x decay_gamma every decay_every_epochs")
    decay_every_epochs: int = Field(ge=1)
    decay_gamma: float = Field(gt=0, le=1)
    crf_scale: float = Field(ge=0.001, le=1, description="training-time CRF on the feature grid: dense_crf sxy x "
                                                         "this (each product >= dense_crf's narrowest kernel, 0.1)")
    constrain_weight: float = Field(ge=0, le=100, description="weight of the constrain (CRF) loss beside the seeding "
                                                              "loss; 0 = seeding loss alone")
    graph_features: Literal["network", "rgb"] = Field(
        description="the training-time cut's kNN graph: network (a shallow + a deep layer, published) or rgb (the "
                    "crop's colour on the grid); the export's cut always uses the network's")
    growth_start_epoch: int = Field(ge=0, description="epochs trained on the cues alone before the cut grows them "
                                                      "(a warm-up); 0 = from the first step, as published")
    workers: Workers
    seed: Seed

    @field_validator("resize_long")
    @classmethod
    def _ordered_long(cls, values: list[int] | None) -> list[int] | None:
        return None if values is None else check_range(values, "resize_long")

    @field_validator("optimizer")
    @classmethod
    def _sgd_only(cls, optimizer: OptimizerParams) -> OptimizerParams:
        if optimizer.name != "sgd":
            # ctx "key" makes the error name optimizer.name, so that it blames the file that set the name
            raise PydanticCustomError(
                "sgd_only", "the DGCN schedule is SGD with warm-up and step decay: name must be 'sgd'", {"key": "name"}
            )
        return optimizer

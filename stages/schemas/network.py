"""The sections' parts that the stages training a network (cues, train_dgcn, retrain) share: the network and its
builder's options, the optimizer, crop training."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, TypeAdapter, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from dgcn.models.options import SEGMENTER_OPTIONS, option_names
from stages.params import Amp, Device, Section

CropSize = Annotated[int, Field(ge=32, le=1024, description="side of the square random crop of the native image "
                                                            "(padded where the image is smaller)")]
BatchNorm = Annotated[Literal["train", "frozen", "batch_stats"], Field(
    description="train: BatchNorm as usual; frozen: affine parameters fixed, running statistics, also in training; "
                "batch_stats: affine parameters fixed, batch statistics in training (running statistics updated, "
                "synchronised over torchrun processes on CUDA)")]
DataWorkers = Annotated[int, Field(ge=0, le=64, description="DataLoader processes reading samples (0 = in-process); "
                                                            "results do not depend on it")]


class OptimizerParams(Section):
    """The optimizer of a training stage."""

    name: Literal["sgd", "adamw"]
    lr: float = Field(gt=0, le=1)
    weight_decay: float = Field(ge=0, le=1)
    momentum: float = Field(ge=0, lt=1)
    head_lr_mult: float = Field(ge=1, description="learning-rate multiplier of the classifier head")


Arch = Literal["small", "deeplab_v2", "deeplab_v3", "hrnet"]


class NetworkParams(Section):
    """Which network a training stage builds and where it runs."""

    arch: Arch = Field(description="network by name")
    arch_options: dict[str, Any] = Field(description="keyword arguments of the network builder, per arch (a config's "
                                                     "mapping replaces the defaults' whole)")
    pretrained: str | None = Field(description='backbone weights: a file, or "imagenet" (local cache only)')
    device: Device
    amp: Amp

    # what builds this section's network: a segmentation network, or (cues) a classifier on a segmenter's trunk
    builder_options: ClassVar[dict[str, type]] = SEGMENTER_OPTIONS

    @field_validator("arch_options")
    @classmethod
    def _builder_keywords(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        arch = info.data.get("arch")
        if arch is None:  # the arch itself is wrong: that is the error to report
            return options
        schema = cls.builder_options[arch]
        try:
            return TypeAdapter(schema).validate_python(options)
        except ValidationError as error:
            # ctx "nested" carries the option's own error; _explain appends its location to arch_options
            raise PydanticCustomError("nested", "{arch} option", {"arch": arch, "nested": error.errors()[0],
                                                                  "known": option_names(schema)}) from None


class ColorJitterParams(Section):
    """Random colour changes of a training image; all 0 = off."""

    brightness: float = Field(ge=0, le=1, description="factor drawn from [1 - x, 1 + x]")
    contrast: float = Field(ge=0, le=1, description="factor drawn from [1 - x, 1 + x]")
    saturation: float = Field(ge=0, le=1, description="factor drawn from [1 - x, 1 + x]")
    hue: float = Field(ge=0, le=0.5, description="shift drawn from [-x, x] of the colour circle")


class CropTrainingParams(NetworkParams):
    """A network trained on random crops of the native images, read per sample."""

    crop_size: CropSize
    color_jitter: ColorJitterParams
    batchnorm: BatchNorm
    data_workers: DataWorkers
    init_from_classifier: bool = Field(description="start from the cue classifier's trunk (learned from the image "
                                                   "labels alone) instead of `pretrained`")

"""The keyword options of each network builder, defined once: the builder takes them (`**options: Unpack[...]`), the
params schema validates a config's `arch_options` against them (a misspelt or out-of-range option is then a params
error naming `<section>.arch_options.<key>`, not a TypeError when the stage builds the network). No torch here.

total=False: an option left out takes the builder's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic needs typing_extensions' TypedDict before Python 3.12

_CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
Dilation = Annotated[int, Field(ge=1)]
Dilations = Annotated[list[Dilation], Field(min_length=1)]


@with_config(_CONFIG)
class SmallTrunkOptions(TypedDict, total=False):
    """dgcn.models.small.SmallTrunk."""

    width: Annotated[int, Field(ge=1)]
    context_rates: Dilations


@with_config(_CONFIG)
class SmallSegmenterOptions(SmallTrunkOptions, total=False):
    """dgcn.models.small.small_segmenter."""

    head_dilation: Dilation


@with_config(_CONFIG)
class ResNetTrunkOptions(TypedDict, total=False):
    """dgcn.models.resnet.ResNet101Trunk (the trunk of deeplab_v2 and of the ResNet classifiers)."""

    resnet: Annotated[Literal["torchvision", "msra"], Field(
        description="torchvision's ResNet, or the MSRA (caffe) ResNet of deeplab-pytorch's weights")]


@with_config(_CONFIG)
class DeepLabV2Options(ResNetTrunkOptions, total=False):
    """dgcn.models.deeplab_v2.deeplab_v2."""

    aspp_rates: Dilations
    msc_scales: Annotated[list[Annotated[float, Field(gt=0, le=4)]], Field(
        description="DeepLab's multi-scale inputs: extra input scales whose scores are max-fused with the scale-1 "
                    "scores (published [0.5, 0.75]); [] = single scale")]


@with_config(_CONFIG)
class NoOptions(TypedDict, total=False):
    """A builder without options (deeplab_v3)."""


@with_config(_CONFIG)
class HRNetOptions(TypedDict, total=False):
    """dgcn.models.hrnet.hrnet and its trunk."""

    variant: Annotated[str, Field(pattern=r"^hrnet_", description="a timm HRNet, e.g. hrnet_w48")]


# arch -> options of the segmentation network's builder (dgcn.models.registry.SEGMENTERS) ...
SEGMENTER_OPTIONS: dict[str, type] = {
    "small": SmallSegmenterOptions,
    "deeplab_v2": DeepLabV2Options,
    "deeplab_v3": NoOptions,
    "hrnet": HRNetOptions,
}
# ... and of the CAM classifier's trunk (dgcn.models.classifier.TRUNK_BUILDERS), which the cues stage builds
TRUNK_OPTIONS: dict[str, type] = {
    "small": SmallTrunkOptions,
    "deeplab_v2": ResNetTrunkOptions,
    "deeplab_v3": ResNetTrunkOptions,
    "hrnet": HRNetOptions,
}


def option_names(schema: type) -> list[str]:
    """The options of a builder's TypedDict, in order (a subclass's after its base's)."""
    return list(schema.__annotations__)


def check_options(options: Mapping[str, object], schema: type, builder: str) -> None:
    """A TypeError, as for any unknown keyword argument, when `options` holds a key that `schema` does not name."""
    unknown = [name for name in options if name not in schema.__annotations__]
    if unknown:
        raise TypeError(f"{builder} takes no option {', '.join(map(repr, unknown))}; its options: "
                        f"{', '.join(option_names(schema)) or 'none'}")

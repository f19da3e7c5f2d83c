"""DeepLab-v2: dilated ResNet-101 (output stride 8) with an ASPP classifier of summed dilated 3x3 branches."""

from collections.abc import Sequence

from torch import Tensor, nn
from typing_extensions import Unpack

from dgcn.models.options import DeepLabV2Options, check_options
from dgcn.models.resnet import ResNet101Trunk
from dgcn.models.segmenter import SegmentationNet, check_num_classes

ASPP_RATES = (6, 12, 18, 24)


class SummedAspp(nn.Module):
    """Parallel dilated 3x3 convolutions straight to class scores, summed (DeepLab-v2's ASPP-L)."""

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int] = ASPP_RATES) -> None:
        super().__init__()
        if not rates or min(rates) < 1:
            raise ValueError(f"rates must be a non-empty sequence of dilations >= 1, got {rates}")
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=rate, dilation=rate) for rate in rates
        )
        for branch in self.branches:
            nn.init.normal_(branch.weight, std=0.01)
            nn.init.zeros_(branch.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, h, w) -> (B, num_classes, h, w) scores."""
        return sum(branch(x) for branch in self.branches)


def deeplab_v2(num_classes: int, **options: Unpack[DeepLabV2Options]) -> SegmentationNet:
    """DeepLab-v2 ResNet-101, randomly initialised, ASPP at aspp_rates (ASPP_RATES by default); feature_dim 1280
    (layer1 256 + layer3 1024)."""
    check_num_classes(num_classes)
    check_options(options, DeepLabV2Options, "deeplab_v2()")
    trunk = ResNet101Trunk()
    return SegmentationNet(trunk, SummedAspp(trunk.out_channels, num_classes, options.get("aspp_rates", ASPP_RATES)),
                           num_classes)

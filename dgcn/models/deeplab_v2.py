"""DeepLab-v2: dilated ResNet-101 (output stride 8) with an ASPP classifier of summed dilated 3x3 branches."""

from collections.abc import Sequence

from torch import Tensor, nn

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


def deeplab_v2(num_classes: int, *, aspp_rates: Sequence[int] = ASPP_RATES) -> SegmentationNet:
    """DeepLab-v2 ResNet-101, randomly initialised; feature_dim 1280 (layer1 256 + layer3 1024)."""
    check_num_classes(num_classes)
    trunk = ResNet101Trunk()
    return SegmentationNet(trunk, SummedAspp(trunk.out_channels, num_classes, aspp_rates), num_classes)

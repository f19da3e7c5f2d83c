"""DeepLab-v2: dilated ResNet-101 (output stride 8) with an ASPP classifier of summed dilated 3x3 branches, optionally
on multi-scale inputs (DeepLab's MSC)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import Unpack

from dgcn.models.options import DeepLabV2Options, check_options
from dgcn.models.resnet import ResNet101Trunk
from dgcn.models.segmenter import SegmentationNet, SegmentationOutput, Trunk, check_images, check_num_classes

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


class MultiScaleNet(SegmentationNet):
    """DeepLab's multi-scale inputs (MSC): the network also runs on the input bilinearly rescaled by each of `scales`;
    `scores` is the element-wise max of all scales' scores, bilinearly resized to the scale-1 grid, in training and at
    test time; `scale_scores` holds each scale's own (scale 1 first), which retraining supervises one by one; the
    graph features are scale 1's."""

    def __init__(self, trunk: Trunk, head: nn.Module, num_classes: int, scales: Sequence[float]) -> None:
        super().__init__(trunk, head, num_classes)
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be a non-empty sequence of factors > 0, got {scales}")
        self.scales = tuple(scales)

    def forward(self, x: Tensor) -> SegmentationOutput:
        """x: (B, 3, H, W) -> scores (B, C, h, w) fused, features (B, D, h, w), scale_scores per scale."""
        check_images(x)
        full = super().forward(x)
        scaled = [self.head(self.trunk(F.interpolate(x, scale_factor=scale, mode="bilinear",
                                                     align_corners=False)).deep) for scale in self.scales]
        grid = full.scores.shape[-2:]
        resized = [F.interpolate(scores, size=grid, mode="bilinear", align_corners=False) for scores in scaled]
        fused = torch.stack([full.scores, *resized]).amax(dim=0)
        return SegmentationOutput(scores=fused, features=full.features, scale_scores=(full.scores, *scaled))


def deeplab_v2(num_classes: int, **options: Unpack[DeepLabV2Options]) -> SegmentationNet:
    """DeepLab-v2 ResNet-101, randomly initialised, ASPP at aspp_rates (ASPP_RATES by default); feature_dim 1280
    (layer1 256 + layer3 1024). msc_scales: extra input scales (MultiScaleNet; none by default). resnet: the trunk's
    style, torchvision (default) or msra (ResNet101Trunk)."""
    check_num_classes(num_classes)
    check_options(options, DeepLabV2Options, "deeplab_v2()")
    trunk = ResNet101Trunk(resnet=options.get("resnet", "torchvision"))
    head = SummedAspp(trunk.out_channels, num_classes, options.get("aspp_rates", ASPP_RATES))
    scales = options.get("msc_scales", [])
    return MultiScaleNet(trunk, head, num_classes, scales) if scales else SegmentationNet(trunk, head, num_classes)

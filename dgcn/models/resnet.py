"""Dilated ResNet-101 trunk (output stride 8) shared by DeepLab-v2, DeepLab-v3 and the CAM classifier."""

from typing import ClassVar

from torch import Tensor, nn
from torchvision.models import resnet101

from dgcn.models.segmenter import Trunk, TrunkFeatures

_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class ResNet101Trunk(Trunk):
    """ResNet-101 with dilated layer3/layer4: early = layer1 (256, stride 4), middle = layer3 (1024, stride 8),
    deep = layer4 (2048, stride 8).

    Parameter names equal torchvision's resnet101 minus `fc`, so ImageNet state dicts load as they are.
    """

    early_channels = 256
    middle_channels = 1024
    out_channels = 2048
    output_stride = 8
    imagenet_filenames: ClassVar[tuple[str, ...]] = ("resnet101-63fe2227.pth", "resnet101-cd907fc2.pth")

    def __init__(self, body: nn.Module | None = None) -> None:
        """body: a module with torchvision ResNet's conv1 ... layer4 already dilated (e.g. a torchvision DeepLab
        backbone); None builds a fresh randomly initialised one."""
        super().__init__()
        if body is None:
            body = resnet101(weights=None, replace_stride_with_dilation=[False, True, True])
        for name in _LAYERS:
            self.add_module(name, getattr(body, name))

    def forward(self, x: Tensor) -> TrunkFeatures:
        """x: (B, 3, H, W) -> TrunkFeatures at strides 4, 8, 8."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        early = self.layer1(x)
        middle = self.layer3(self.layer2(early))
        return TrunkFeatures(early=early, middle=middle, deep=self.layer4(middle))

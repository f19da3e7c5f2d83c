"""Dilated ResNet-101 trunk (output stride 8) shared by DeepLab-v2, DeepLab-v3 and the CAM classifier."""

from typing import ClassVar, Literal

from torch import Tensor, nn
from torchvision.models import resnet101

from dgcn.models.deeplab_pytorch import from_deeplab_pytorch, is_deeplab_pytorch
from dgcn.models.segmenter import Trunk, TrunkFeatures

_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
ResNetStyle = Literal["torchvision", "msra"]


def to_msra(body: nn.Module) -> None:
    """Make a dilated torchvision ResNet the MSRA (caffe) ResNet of DeepLab's weights, in place, with the same
    parameters: layer2 strides in its first 1x1 convolution instead of the 3x3, the first blocks of layer3 / layer4
    are dilated as the others (2 / 4) and the max pool rounds up (deeplab-pytorch's resnet.py _Bottleneck, _Stem;
    deeplabv2.py:49-53)."""
    first = body.layer2[0]
    first.conv1.stride, first.conv2.stride = (2, 2), (1, 1)
    for layer, rate in ((body.layer3, 2), (body.layer4, 4)):
        layer[0].conv2.dilation = layer[0].conv2.padding = (rate, rate)
    body.maxpool.ceil_mode = True


class ResNet101Trunk(Trunk):
    """ResNet-101 with dilated layer3/layer4: early = layer1 (256, stride 4), middle = layer3 (1024, stride 8),
    deep = layer4 (2048, stride 8).

    Parameter names equal torchvision's resnet101 minus `fc`, so ImageNet state dicts load as they are; checkpoints in
    deeplab-pytorch's layout (e.g. DeepLab's COCO-pretrained init) are recognised and renamed (deeplab_pytorch.py).
    resnet "msra": the caffe ResNet those checkpoints were trained as (to_msra); its grid is one cell larger than
    ceil(H / 8) at some sizes (the max pool rounds up), e.g. 48 for 381 (as torchvision), 48 x 63 for 375 x 500.
    """

    early_channels = 256
    middle_channels = 1024
    out_channels = 2048
    output_stride = 8
    imagenet_filenames: ClassVar[tuple[str, ...]] = ("resnet101-63fe2227.pth", "resnet101-cd907fc2.pth")

    def __init__(self, body: nn.Module | None = None, resnet: ResNetStyle = "torchvision") -> None:
        """body: a module with torchvision ResNet's conv1 ... layer4 already dilated (e.g. a torchvision DeepLab
        backbone); None builds a fresh randomly initialised one. resnet: its style, torchvision or msra (to_msra)."""
        super().__init__()
        if body is None:
            body = resnet101(weights=None, replace_stride_with_dilation=[False, True, True])
        if resnet == "msra":
            to_msra(body)
        elif resnet != "torchvision":
            raise ValueError(f"resnet must be 'torchvision' or 'msra', got {resnet!r}")
        for name in _LAYERS:
            self.add_module(name, getattr(body, name))

    def pretrained_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """An ImageNet checkpoint without `fc`, or a deeplab-pytorch checkpoint's trunk under our names."""
        return from_deeplab_pytorch(state) if is_deeplab_pytorch(state) else super().pretrained_state(state)

    def forward(self, x: Tensor) -> TrunkFeatures:
        """x: (B, 3, H, W) -> TrunkFeatures at strides 4, 8, 8."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        early = self.layer1(x)
        middle = self.layer3(self.layer2(early))
        return TrunkFeatures(early=early, middle=middle, deep=self.layer4(middle))

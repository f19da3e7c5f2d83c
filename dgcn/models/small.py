"""The embedded default: a narrow dilated CNN (output stride 4) that trains on a 2-core CPU."""

from torch import Tensor, nn
from typing_extensions import Unpack

from dgcn.models.options import SmallSegmenterOptions, SmallTrunkOptions, check_options
from dgcn.models.segmenter import SegmentationNet, Trunk, TrunkFeatures, check_num_classes

# Rates 2 then 4 widen the receptive field to most of a 96-pixel image without losing resolution.
CONTEXT_RATES = (2, 2, 4)


def conv_bn_relu(in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """3x3 convolution (padding keeps the grid at stride 1), BatchNorm, ReLU."""
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _init_relu_convs(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")


class SmallTrunk(Trunk):
    """Widths (w, 2w, 3w): a stride-2 conv, a stride-4 block, then dilated 3x3 blocks at stride 4 for context.

    early = the stride-4 block (2w channels); middle = deep = the last context block (3w channels).
    """

    output_stride = 4

    def __init__(self, **options: Unpack[SmallTrunkOptions]) -> None:
        """width (32): channels of the first conv; context_rates (CONTEXT_RATES): one dilated block per rate (their
        number sets depth)."""
        check_options(options, SmallTrunkOptions, "SmallTrunk()")
        width, context_rates = options.get("width", 32), options.get("context_rates", CONTEXT_RATES)
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if not context_rates or min(context_rates) < 1:
            raise ValueError(f"context_rates must be a non-empty sequence of dilations >= 1, got {context_rates}")
        self.early_channels = 2 * width
        self.middle_channels = self.out_channels = 3 * width
        self.stem = conv_bn_relu(3, width, stride=2)
        self.early = nn.Sequential(conv_bn_relu(width, 2 * width, stride=2), conv_bn_relu(2 * width, 2 * width))
        in_channels = [2 * width] + [3 * width] * (len(context_rates) - 1)
        self.context = nn.Sequential(
            *(conv_bn_relu(c, 3 * width, dilation=rate) for c, rate in zip(in_channels, context_rates, strict=True))
        )
        _init_relu_convs(self)

    def forward(self, x: Tensor) -> TrunkFeatures:
        """x: (B, 3, H, W) -> early (B, 2w, h, w), middle = deep (B, 3w, h, w), h = ceil(H / 4)."""
        early = self.early(self.stem(x))
        deep = self.context(early)
        return TrunkFeatures(early=early, middle=deep, deep=deep)


class LargeFovHead(nn.Sequential):
    """DeepLab-LargeFOV style classifier: a dilated 3x3 block, then a 1x1 convolution to class scores."""

    def __init__(self, in_channels: int, num_classes: int, *, hidden: int, dilation: int) -> None:
        scores = nn.Conv2d(hidden, num_classes, 1)
        super().__init__(conv_bn_relu(in_channels, hidden, dilation=dilation), scores)
        _init_relu_convs(self)
        nn.init.normal_(scores.weight, std=0.01)
        nn.init.zeros_(scores.bias)


def small_segmenter(num_classes: int, **options: Unpack[SmallSegmenterOptions]) -> SegmentationNet:
    """The small network: SmallTrunk (its options) + LargeFovHead (hidden 2w, dilation head_dilation, 6 by default);
    output stride 4, feature_dim 5 * width (160 at 32)."""
    check_num_classes(num_classes)
    check_options(options, SmallSegmenterOptions, "small_segmenter()")
    trunk_options = dict(options)
    head_dilation = trunk_options.pop("head_dilation", 6)
    if head_dilation < 1:
        raise ValueError(f"head_dilation must be >= 1, got {head_dilation}")
    trunk = SmallTrunk(**trunk_options)
    head = LargeFovHead(trunk.out_channels, num_classes, hidden=trunk.early_channels, dilation=head_dilation)  # 2w
    return SegmentationNet(trunk, head, num_classes)

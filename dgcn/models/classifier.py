"""Multi-label CAM classifier for the cue stage: a trunk, a 1x1 convolution to class maps, global average pooling."""

from collections.abc import Callable, Iterator
from typing import Any

from torch import Tensor, nn

from dgcn.models.hrnet import HRNetTrunk
from dgcn.models.resnet import ResNet101Trunk
from dgcn.models.segmenter import Trunk, check_images
from dgcn.models.small import SmallTrunk

# Keyed by segmentation network name: a classifier shares the trunk of the network it will initialise.
TRUNK_BUILDERS: dict[str, Callable[..., Trunk]] = {
    "small": SmallTrunk,
    "deeplab_v2": ResNet101Trunk,
    "deeplab_v3": ResNet101Trunk,
    "hrnet": HRNetTrunk,
}


class CamClassifier(nn.Module):
    """Image-level classifier whose class activation maps are its pre-pooling scores.

    Pooling is linear, so GAP then 1x1 conv equals 1x1 conv then GAP: the maps from `cams` are the CAMs exactly.
    """

    def __init__(self, backbone_name: str, num_foreground: int, **trunk_kwargs: Any) -> None:
        """backbone_name: a key of TRUNK_BUILDERS; num_foreground: C - 1 object classes; trunk_kwargs: e.g. width."""
        super().__init__()
        if backbone_name not in TRUNK_BUILDERS:
            raise ValueError(f"unknown backbone_name {backbone_name!r}; choices: {sorted(TRUNK_BUILDERS)}")
        if num_foreground < 1:
            raise ValueError(f"num_foreground must be >= 1, got {num_foreground}")
        self.trunk = TRUNK_BUILDERS[backbone_name](**trunk_kwargs)
        self.classifier = nn.Conv2d(self.trunk.out_channels, num_foreground, 1)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        self.num_foreground = num_foreground
        self.output_stride = self.trunk.output_stride

    def cams(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) normalised images -> (B, C-1, h, w) float class activation maps (unnormalised logits)."""
        check_images(x)
        return self.classifier(self.trunk(x).deep)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) -> (B, C-1) float multi-label logits, the spatial mean of the CAMs."""
        return self.cams(x).mean(dim=(2, 3))

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the 1x1 classifier."""
        return self.classifier.parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the trunk."""
        return self.trunk.parameters()

"""The interface shared by every network in dgcn: trunks, their feature levels and segmentation outputs."""

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgcn.errors import InputError


class TrunkFeatures(NamedTuple):
    """Three levels of one trunk forward pass, all float.

    early: (B, E, h', w') an early layer (stride 4), resized to h x w for the graph features.
    middle: (B, M, h, w) the deep layer whose output joins the graph features, at the output stride.
    deep: (B, O, h, w) the last layer, input of the classifier head.
    """

    early: Tensor
    middle: Tensor
    deep: Tensor


class Trunk(nn.Module):
    """A backbone mapping (B, 3, H, W) normalised images to TrunkFeatures.

    Subclasses set the channel counts of the three levels, the output stride and the torchvision file names of their
    ImageNet weights (empty when none exist).
    """

    early_channels: int
    middle_channels: int
    out_channels: int
    output_stride: int
    imagenet_filenames: ClassVar[tuple[str, ...]] = ()

    def imagenet_checkpoint(self, cache: Path | None = None) -> Path:
        """The local file of this trunk's ImageNet weights: torchvision's file in the torch hub cache (`cache`
        overrides torch.hub.get_dir()). Never downloads."""
        from dgcn.models.weights import imagenet_weights_path  # weights.py imports this module

        if not self.imagenet_filenames:
            raise InputError(f"no ImageNet weights exist for {type(self).__name__}; pass a state-dict file path")
        return imagenet_weights_path(self.imagenet_filenames, cache)

    def pretrained_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A checkpoint's entries under this trunk's names: an ImageNet classifier's `fc.*` entries dropped."""
        return {key: value for key, value in state.items() if not key.startswith("fc.")}

    def load_from(self, other: "Trunk") -> None:
        """Copy every weight and buffer of `other`, a trunk of the same class and width."""
        if type(other) is not type(self):
            raise InputError(f"cannot load a {type(self).__name__} from a {type(other).__name__}")
        try:
            self.load_state_dict(other.state_dict())
        except RuntimeError as error:
            raise InputError(f"the two {type(self).__name__}s differ in shape (different width?): {error}") from error


class SegmentationOutput(NamedTuple):
    """scores: (B, C, h, w) float class scores (logits); features: (B, D, h, w) float DGCN graph features.

    scale_scores: a multi-scale network's scores of each input scale, each at its own grid (scale 1 first); `scores`
    is then their fusion on the scale-1 grid. Empty for a single-scale network.
    """

    scores: Tensor
    features: Tensor
    scale_scores: tuple[Tensor, ...] = ()


def check_images(x: Tensor) -> None:
    """Raise ValueError unless x is a (B, 3, H, W) floating-point batch."""
    if x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"x must be a (B, 3, H, W) float tensor, got {x.dtype} of shape {tuple(x.shape)}")


def check_num_classes(num_classes: int) -> None:
    """Raise ValueError unless num_classes counts background plus at least one object class."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background plus at least one class), got {num_classes}")


def graph_features(levels: TrunkFeatures) -> Tensor:
    """(B, E + M, h, w): the early level bilinearly resized to the middle level's grid with the corners aligned (as
    published, train.py:370), then concatenated to it."""
    early = F.interpolate(levels.early, size=levels.middle.shape[-2:], mode="bilinear", align_corners=True)
    return torch.cat([early, levels.middle], dim=1)


class SegmentationNet(nn.Module):
    """A trunk plus a classifier head; forward gives scores and graph features at the trunk's output stride.

    Attributes: num_classes (C, background included), output_stride, feature_dim (D).
    """

    def __init__(self, trunk: Trunk, head: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.num_classes = num_classes
        self.output_stride = trunk.output_stride
        self.feature_dim = trunk.early_channels + trunk.middle_channels

    def forward(self, x: Tensor) -> SegmentationOutput:
        """x: (B, 3, H, W) normalised images -> scores (B, C, h, w), features (B, D, h, w), h = ceil(H / stride)."""
        check_images(x)
        levels = self.trunk(x)
        return SegmentationOutput(scores=self.head(levels.deep), features=graph_features(levels))

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the classifier head (the ones trained with the larger learning rate)."""
        return self.head.parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the trunk."""
        return self.trunk.parameters()

    def load_trunk_from(self, source: nn.Module) -> None:
        """Copy the trunk of `source` (e.g. a trained CamClassifier with the same backbone) into this network."""
        trunk = getattr(source, "trunk", None)
        if not isinstance(trunk, Trunk):
            raise TypeError(f"source must have a `trunk` attribute holding a Trunk, got {type(source).__name__}")
        self.trunk.load_from(trunk)

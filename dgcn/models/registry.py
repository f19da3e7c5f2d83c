"""Build networks by name, optionally initialising their trunk from a local pretrained file."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dgcn.models.classifier import CamClassifier
from dgcn.models.deeplab_v2 import deeplab_v2
from dgcn.models.deeplab_v3 import deeplab_v3
from dgcn.models.hrnet import hrnet
from dgcn.models.options import SEGMENTER_OPTIONS, check_options
from dgcn.models.segmenter import SegmentationNet
from dgcn.models.small import small_segmenter
from dgcn.models.weights import load_backbone_weights

SEGMENTERS: dict[str, Callable[..., SegmentationNet]] = {
    "small": small_segmenter,
    "deeplab_v2": deeplab_v2,
    "deeplab_v3": deeplab_v3,
    "hrnet": hrnet,
}


def build_segmenter(
    name: str, num_classes: int, *, pretrained: Path | str | None = None, **kwargs: Any
) -> SegmentationNet:
    """Segmentation network `name` for num_classes classes (background included).

    pretrained: None (random init), a state-dict file for the trunk, or "imagenet" (torch hub cache, see weights.py).
    kwargs go to the builder (its options: dgcn.models.options.SEGMENTER_OPTIONS[name]), e.g. width=8 for "small".
    """
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmentation network {name!r}; choices: {sorted(SEGMENTERS)}")
    check_options(kwargs, SEGMENTER_OPTIONS[name], f"network {name!r}")
    model = SEGMENTERS[name](num_classes, **kwargs)
    if pretrained is not None:
        load_backbone_weights(model.trunk, pretrained)
    return model


def build_classifier(
    name: str, num_foreground: int, *, pretrained: Path | str | None = None, **kwargs: Any
) -> CamClassifier:
    """CAM classifier with the trunk of segmentation network `name`, for num_foreground object classes.

    pretrained and kwargs as in build_segmenter.
    """
    model = CamClassifier(name, num_foreground, **kwargs)
    if pretrained is not None:
        load_backbone_weights(model.trunk, pretrained)
    return model

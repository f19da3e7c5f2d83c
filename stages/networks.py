"""The segmentation network a training stage starts from: built by name, its trunk optionally the cue classifier's."""

from __future__ import annotations

from pathlib import Path

from dgcn.errors import InputError
from dgcn.model_files import load_model
from dgcn.models.registry import build_segmenter
from dgcn.models.segmenter import SegmentationNet
from stages.schemas.network import CropTrainingParams


def starting_segmenter(settings: CropTrainingParams, num_classes: int, classifier: Path | None,
                       section: str) -> SegmentationNet:
    """`settings.arch` for num_classes classes from `settings.pretrained`; with `init_from_classifier`, its trunk
    copied from the cues stage's classifier.pt (weights learned from the image-level labels alone)."""
    model = build_segmenter(settings.arch, num_classes, pretrained=settings.pretrained, **settings.arch_options)
    if settings.init_from_classifier:
        if classifier is None:
            raise InputError(f"{section}.init_from_classifier is true: give --classifier <the cues stage's "
                             "classifier.pt>")
        model.load_trunk_from(load_model(classifier, "classifier"))
    return model

"""Networks: segmentation networks sharing one interface, the CAM classifier, and local pretrained weights."""

from dgcn.models.classifier import CamClassifier
from dgcn.models.registry import SEGMENTERS, build_classifier, build_segmenter
from dgcn.models.segmenter import SegmentationNet, SegmentationOutput, Trunk, TrunkFeatures
from dgcn.models.weights import IMAGENET, load_backbone_weights

__all__ = [
    "IMAGENET",
    "SEGMENTERS",
    "CamClassifier",
    "SegmentationNet",
    "SegmentationOutput",
    "Trunk",
    "TrunkFeatures",
    "build_classifier",
    "build_segmenter",
    "load_backbone_weights",
]

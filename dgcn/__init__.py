"""dgcn: weakly-supervised semantic segmentation with the Deep Graph Cut Network."""

__version__ = "0.1.0"

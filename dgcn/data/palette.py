"""Class names and the PASCAL VOC colour palette, in one place."""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

SYNTHETIC_CLASSES: tuple[str, ...] = ("background", "disc", "square", "triangle", "ellipse", "cross")


def voc_palette() -> np.ndarray:
    """(256, 3) uint8 VOC colour map: class i gets the bit-interleaved colour of the standard masks."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (r, g, b)
    return palette


def colorize(labels: np.ndarray) -> np.ndarray:
    """(H, W) uint8 label map -> (H, W, 3) uint8 RGB in the VOC palette (255 = ignore shows as cream)."""
    return voc_palette()[labels]

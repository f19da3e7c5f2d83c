"""Images and label maps resized, and the one normalisation used at train and test time."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# ImageNet statistics, RGB order everywhere (the published code mixed BGR at training and RGB at test time).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB -> (B, 3, H, W) float32 normalised network input."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8, bilinear."""
    if image.shape[:2] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def long_side_shape(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(height, width) of an image of `size` scaled so that its longer side is `long_side` pixels (aspect kept,
    rounded, >= 1)."""
    if min(size) < 1 or long_side < 1:
        raise ValueError(f"sizes must be positive, got {size[0]}x{size[1]} to long side {long_side}")
    scale = long_side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 label map -> (height, width) uint8, nearest neighbour (labels are not interpolated)."""
    if labels.shape == size:
        return labels
    return np.asarray(Image.fromarray(labels).resize((size[1], size[0]), Image.NEAREST))


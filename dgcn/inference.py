"""Test-time prediction: the class scores of multi-scale and mirrored passes summed, one softmax (as the published
evaluate.py combines its scales), features from scale 1."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dgcn.crf import dense_crf
from dgcn.data.loading import normalize


@dataclass(frozen=True)
class Prediction:
    """probs (B, C, H, W) float32 softmax of the summed scores at the requested size, on the CPU; features (B, D, h, w)
    at scale 1, on the model's device (the kNN graph is built there)."""

    probs: torch.Tensor
    features: torch.Tensor


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, *, scales: Sequence[float], flip: bool,
            size: tuple[int, int] | None = None) -> Prediction:
    """Class probabilities as the published test time combines scales (evaluate.py:115-120): the class scores (logits)
    of each of `scales` (of the input size) and, with `flip`, of their mirror images (mirrored back), resized
    bilinearly to `size` (None: the output grid of the scale-1 pass, where the features are), summed, then one
    softmax."""
    model.eval()
    x = x.to(next(model.parameters()).device)
    height, width = x.shape[-2:]
    outputs = []
    features = None
    for scale in scales:
        scaled = x if scale == 1.0 else F.interpolate(
            x, size=(round(height * scale), round(width * scale)), mode="bilinear", align_corners=False)
        inputs = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        out = model(inputs)
        outputs.append(out.scores)
        if scale == 1.0 or features is None:
            features = out.features[: len(x)]
    size = tuple(features.shape[-2:]) if size is None else size
    total = None
    for raw in outputs:
        scores = F.interpolate(raw, size=size, mode="bilinear", align_corners=False)
        if flip:
            scores = scores[: len(x)] + scores[len(x):].flip(-1)
        total = scores if total is None else total + scores
    return Prediction(probs=total.softmax(dim=1).cpu(), features=features)


def restrict_to_classes(probs: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Zero the probabilities of classes absent from each image and renormalise: probs (B, C, ...), present (B, C)."""
    mask = present.to(probs.dtype).view(*present.shape, *([1] * (probs.dim() - 2)))
    kept = probs * mask
    return kept / kept.sum(dim=1, keepdim=True).clamp_min(1e-12)


def predict_probabilities(model: torch.nn.Module, image: np.ndarray, *, scales: Sequence[float],
                          flip: bool) -> np.ndarray:
    """(C, H, W) float32 class probabilities of one (H, W, 3) uint8 RGB image at its own size: `predict` over scales
    (of the image's own size, so its aspect ratio is kept) and mirror."""
    x = normalize(torch.from_numpy(np.ascontiguousarray(image)[None]))
    return predict(model, x, scales=scales, flip=flip, size=image.shape[:2]).probs[0].numpy()


def predict_labels(model: torch.nn.Module, image: np.ndarray, *, scales: Sequence[float], flip: bool,
                   crf_kernels: Mapping[str, float] | None = None) -> np.ndarray:
    """(H, W) uint8 label map of one (H, W, 3) uint8 RGB image at its own size: `predict_probabilities`, then, with
    `crf_kernels` (keyword arguments of dgcn.crf.dense_crf), refined by a dense CRF on the image."""
    probs = predict_probabilities(model, image, scales=scales, flip=flip)
    if crf_kernels is not None:
        probs = dense_crf(image, probs, **crf_kernels)
    return probs.argmax(axis=0).astype(np.uint8)

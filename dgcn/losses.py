"""DGCN training losses: balanced seeding loss on the grown supervision and the CRF constrain loss (spec 2.5)."""

from __future__ import annotations

import numpy as np
import torch

# Bounds of the Q / P ratio inside the constrain loss's log (published values).
_RATIO_MIN, _RATIO_MAX = 0.05, 20.0


def smoothed_softmax(scores: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """(B, C, h, w) class scores -> softmax over C plus eps, renormalised (spec 2.1); never exactly 0 or 1."""
    if scores.ndim != 4:
        raise ValueError(f"scores must be (B, C, h, w), got {tuple(scores.shape)}")
    probs = torch.softmax(scores, dim=1) + eps
    return probs / probs.sum(dim=1, keepdim=True)


def seeding_loss(probs: torch.Tensor, supervision: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Balanced seeding loss, a scalar tensor.

    probs: (B, C, h, w) smoothed probabilities; supervision: (B, C, h, w) {0,1} multi-hot (uint8/bool, tensor or array).
    Per image: mean of -log P_0 over background-supervised pixels + mean of -log P_c over foreground-supervised (pixel,
    class c >= 1) pairs, a term with no supervised pixel counting 0; then the mean over the batch.
    """
    mask = _as_mask(supervision, probs, "supervision")
    nll = -torch.log(probs)
    background, foreground = mask[:, :1], mask[:, 1:]
    bg_term = (nll[:, :1] * background).sum(dim=(1, 2, 3)) / background.sum(dim=(1, 2, 3)).clamp(min=1)
    fg_term = (nll[:, 1:] * foreground).sum(dim=(1, 2, 3)) / foreground.sum(dim=(1, 2, 3)).clamp(min=1)
    return (bg_term + fg_term).mean()


def constrain_loss(probs: torch.Tensor, crf_probs: torch.Tensor | np.ndarray,
                   valid: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """KL(Q || P) with the ratio clipped, a scalar tensor; gradient flows through probs only.

    probs: (B, C, h, w) smoothed probabilities P; crf_probs: (B, C, h, w) dense-CRF probabilities Q (a constant);
    valid: optional (B, h, w) bool, False at padded pixels, which then count nowhere (at least one must be True).
    Returns the mean over the (valid) pixels of the batch of sum_c Q_c log(clip(Q_c / P_c, 0.05, 20)).
    """
    target = torch.as_tensor(crf_probs, device=probs.device).to(probs.dtype).detach()
    if target.shape != probs.shape:
        raise ValueError(f"crf_probs shape {tuple(target.shape)} does not match probs {tuple(probs.shape)}")
    ratio = torch.clamp(target / probs, _RATIO_MIN, _RATIO_MAX)
    divergence = (target * torch.log(ratio)).sum(dim=1)
    if valid is None:
        return divergence.mean()
    mask = torch.as_tensor(valid, device=probs.device)
    if mask.shape != divergence.shape:
        raise ValueError(f"valid shape {tuple(mask.shape)} is not (B, h, w) = {tuple(divergence.shape)}")
    return divergence[mask.bool()].mean()


def _as_mask(values: torch.Tensor | np.ndarray, like: torch.Tensor, name: str) -> torch.Tensor:
    """{0,1} tensor or array -> float tensor on like's device and dtype, shape-checked."""
    mask = torch.as_tensor(values, device=like.device)
    if mask.shape != like.shape:
        raise ValueError(f"{name} shape {tuple(mask.shape)} does not match probs {tuple(like.shape)}")
    return (mask != 0).to(like.dtype)

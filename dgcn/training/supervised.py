"""Plainly supervised training: the cue classifier (image labels, BCE) and retraining (dense labels, CE)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dgcn.data.loading import normalize
from dgcn.data.palette import IGNORE_INDEX
from dgcn.training.loop import TrainingLog, fit, mirror
from dgcn.training.optim import sgd_with_head_lr
from dgcn.training.schedule import poly

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def train_classifier(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, **settings) -> TrainingLog:
    """Multi-label classifier on (N, S, S, 3) uint8 images and (N, C-1) {0,1} foreground labels (BCE)."""

    def loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model(x), target)

    return _train(model, images, torch.from_numpy(labels).float(), loss, mirror_targets=False, desc="classifier",
                  **settings)


def train_segmenter(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, **settings) -> TrainingLog:
    """Segmentation network on (N, S, S, 3) uint8 images and (N, S, S) uint8 label maps (CE, 255 ignored)."""

    def loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        scores = F.interpolate(model(x).scores, size=target.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(scores, target, ignore_index=IGNORE_INDEX)

    return _train(model, images, torch.from_numpy(labels).long(), loss, mirror_targets=True, desc="retrain",
                  **settings)


def _train(model: torch.nn.Module, images: np.ndarray, targets: torch.Tensor, loss: Loss, *, mirror_targets: bool,
           desc: str, epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int,
           checkpoint: Path | None = None, optimizer: str = "adamw", momentum: float = 0.9,
           head_lr_mult: float = 10.0) -> TrainingLog:
    """Train on the model's device; mirrored samples mirror their dense targets too.

    optimizer "adamw": AdamW with a one-cycle schedule peaking at lr (fast from scratch on a CPU). "sgd": the published
    DeepLab recipe, SGD with `momentum`, the head at `head_lr_mult` x lr, poly decay (power 0.9) per iteration.
    """
    images_t = torch.from_numpy(images)
    device = next(model.parameters()).device
    steps = epochs * max(1, len(images) // min(batch_size, len(images)))
    if optimizer == "adamw":
        optim: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.OneCycleLR(
            optim, max_lr=lr, total_steps=steps)
    elif optimizer == "sgd":
        optim = sgd_with_head_lr(model, lr=lr, momentum=momentum, weight_decay=weight_decay, head_lr_mult=head_lr_mult)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optim, partial(poly, total_iters=steps))
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")

    def step(indices: np.ndarray, flips: np.ndarray) -> dict[str, float]:
        target = targets[indices].to(device)
        target = mirror(target, flips) if mirror_targets else target
        value = loss(mirror(normalize(images_t[indices].to(device)), flips), target)
        optim.zero_grad(set_to_none=True)
        value.backward()
        optim.step()
        return {"loss": value.item()}

    return fit(model=model, optimizer=optim, scheduler=scheduler, step=step, num_samples=len(images),
               batch_size=batch_size, epochs=epochs, seed=seed, checkpoint=checkpoint, desc=desc)

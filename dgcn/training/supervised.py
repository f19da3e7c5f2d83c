"""Plainly supervised training: the cue classifier (image labels, BCE) and retraining (dense labels, CE)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dgcn.data.loading import normalize
from dgcn.data.palette import IGNORE_INDEX
from dgcn.training.loop import TrainingLog, fit, mirror

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
           checkpoint: Path | None = None) -> TrainingLog:
    """AdamW, one-cycle schedule, on the model's device; mirrored samples mirror their dense targets too."""
    images_t = torch.from_numpy(images)
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * max(1, len(images) // min(batch_size, len(images)))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)

    def step(indices: np.ndarray, flips: np.ndarray) -> dict[str, float]:
        target = targets[indices].to(device)
        target = mirror(target, flips) if mirror_targets else target
        value = loss(mirror(normalize(images_t[indices].to(device)), flips), target)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        return {"loss": value.item()}

    return fit(model=model, optimizer=optimizer, scheduler=scheduler, step=step, num_samples=len(images),
               batch_size=batch_size, epochs=epochs, seed=seed, checkpoint=checkpoint, desc=desc)

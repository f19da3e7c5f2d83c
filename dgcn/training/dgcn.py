"""DGCN training (spec section 2): graph-cut supervision grown from the cues, seeding + constrain loss, SGD."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from dgcn.data.loading import normalize
from dgcn.losses import constrain_loss, seeding_loss, smoothed_softmax
from dgcn.supervision import SupervisionPool
from dgcn.training.loop import TrainingLog, fit, mirror
from dgcn.training.optim import sgd_with_head_lr
from dgcn.training.schedule import warmup_step_decay


@dataclass(frozen=True)
class SGDSchedule:
    """The published optimiser: SGD with momentum, head at `head_lr_mult` x lr, warm-up then step decay."""

    lr: float
    momentum: float
    weight_decay: float
    head_lr_mult: float
    warmup_iters: int
    decay_every_epochs: int
    decay_gamma: float


def train_dgcn(model: torch.nn.Module, images: np.ndarray, grid_images: np.ndarray, cues: np.ndarray,
               image_labels: np.ndarray, pool: SupervisionPool, schedule: SGDSchedule, *, epochs: int,
               batch_size: int, seed: int, checkpoint: Path | None = None) -> TrainingLog:
    """Train the segmentation network from cues.

    images (N, S, S, 3) uint8 network inputs; grid_images (N, h, w, 3) uint8 the same images at the output grid (for
    the CRF); cues (N, C, h, w) uint8; image_labels (N, C) uint8 with background set. Each step cuts, per image and
    present class, a graph on the detached features, and fits the network to the grown supervision. Runs on the
    model's device; the cuts and CRFs run on the CPU workers of `pool`.
    """
    optimizer = sgd_with_head_lr(model, lr=schedule.lr, momentum=schedule.momentum,
                                 weight_decay=schedule.weight_decay, head_lr_mult=schedule.head_lr_mult)
    iters_per_epoch = max(1, len(images) // min(batch_size, len(images)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
        warmup_step_decay, warmup_iters=schedule.warmup_iters, iters_per_epoch=iters_per_epoch,
        decay_every_epochs=schedule.decay_every_epochs, gamma=schedule.decay_gamma))
    images_t, grid_t, cues_t = torch.from_numpy(images), torch.from_numpy(grid_images), torch.from_numpy(cues)
    classes = [np.flatnonzero(row) for row in image_labels]
    device = next(model.parameters()).device

    def step(indices: np.ndarray, flips: np.ndarray) -> dict[str, float]:
        out = model(mirror(normalize(images_t[indices].to(device)), flips))
        probs = smoothed_softmax(out.scores)
        pending = pool.submit(out.features.detach(), probs.detach(), mirror(cues_t[indices], flips).numpy(),
                              [classes[i] for i in indices], mirror(grid_t[indices], flips, dim=2).numpy())
        supervision, crf_probs = pending.result()
        seeding = seeding_loss(probs, torch.from_numpy(supervision))
        constrain = constrain_loss(probs, torch.from_numpy(crf_probs))
        optimizer.zero_grad(set_to_none=True)
        (seeding + constrain).backward()
        optimizer.step()
        return {"loss": seeding.item() + constrain.item(), "seeding": seeding.item(), "constrain": constrain.item()}

    return fit(model=model, optimizer=optimizer, scheduler=scheduler, step=step, num_samples=len(images),
               batch_size=batch_size, epochs=epochs, seed=seed, checkpoint=checkpoint, desc="dgcn")

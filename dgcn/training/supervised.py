"""Plainly supervised training: the cue classifier (image labels, BCE) here, and the optimiser and step that it shares
with retraining (dgcn.training.retrain)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from dgcn import distributed
from dgcn.data.loading import normalize
from dgcn.precision import FLOAT32, Precision
from dgcn.training.loop import Batch, EpochData, TrainingLog, epoch_batches, fit, mirror
from dgcn.training.optim import sgd_with_head_lr, trainable
from dgcn.training.schedule import poly

B = TypeVar("B")
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def train_classifier(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, *, batch_size: int, seed: int,
                     precision: Precision = FLOAT32, **settings) -> TrainingLog:
    """Multi-label classifier on (N, S, S, 3) uint8 images and (N, C-1) {0,1} foreground labels (BCE), in memory.

    precision: the network's (mixed precision on CUDA). settings: the keyword arguments of train_supervised
    (epochs, lr, weight_decay, optimizer, ...).
    """
    images_t, targets = torch.from_numpy(images), torch.from_numpy(labels).float()
    device = next(model.parameters()).device
    network = distributed.replicate(precision.wrap(model))

    def inputs(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x = mirror(normalize(images_t[batch.indices].to(device)), batch.flips)
        return x, targets[batch.indices].to(device)

    def loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(network(x), target)

    def plan(epoch: int) -> list[Batch]:
        """The epoch's batches, this rank's rows of each under torchrun."""
        return [Batch(distributed.local_rows(b.indices, len(b.indices)), distributed.local_rows(b.flips, len(b.flips)))
                for b in epoch_batches(len(images), batch_size, seed, epoch)]

    return train_supervised(model, plan, inputs, loss, iters_per_epoch=len(plan(0)), desc="classifier",
                            precision=precision, **settings)


def train_supervised(model: torch.nn.Module, batches: Callable[[int], EpochData[B]],
                     inputs: Callable[[B], tuple[torch.Tensor, torch.Tensor]], loss: Loss, *, iters_per_epoch: int,
                     desc: str, epochs: int, lr: float, weight_decay: float, checkpoint: Path | None = None,
                     optimizer: str = "adamw", momentum: float = 0.9, head_lr_mult: float = 10.0,
                     precision: Precision = FLOAT32) -> TrainingLog:
    """Minimise `loss(*inputs(batch))` over `batches(epoch)` on the model's device (inputs puts them there).

    optimizer "adamw": AdamW with a one-cycle schedule peaking at lr (fast from scratch on a CPU). "sgd": the published
    DeepLab recipe, SGD with `momentum`, the head at `head_lr_mult` x lr, poly decay (power 0.9) per iteration. Only
    trainable parameters join (frozen BatchNorm layers stay out). precision: how backward and the step run (default
    float32).
    """
    steps = epochs * iters_per_epoch
    if optimizer == "adamw":
        optim: torch.optim.Optimizer = torch.optim.AdamW(trainable(model.parameters()), lr=lr,
                                                         weight_decay=weight_decay)
        scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.OneCycleLR(
            optim, max_lr=lr, total_steps=steps)
    elif optimizer == "sgd":
        optim = sgd_with_head_lr(model, lr=lr, momentum=momentum, weight_decay=weight_decay, head_lr_mult=head_lr_mult)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optim, partial(poly, total_iters=steps))
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")

    def step(batch: B) -> dict[str, float]:
        value = loss(*inputs(batch))
        optim.zero_grad(set_to_none=True)
        precision.step(value, optim)
        return {"loss": value.item()}

    return fit(model=model, optimizer=optim, scheduler=scheduler, step=step, batches=batches, epochs=epochs,
               checkpoint=checkpoint, desc=desc)

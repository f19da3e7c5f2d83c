"""Plainly supervised training: the cue classifier (image labels, BCE, images read per sample) here, and the
optimiser and step that it shares with retraining (dgcn.training.retrain)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from dgcn import distributed
from dgcn.data.crops import Indexed, SquareImages
from dgcn.data.loading import normalize
from dgcn.precision import FLOAT32, Precision
from dgcn.training.loader import EpochLoader
from dgcn.training.loop import EpochData, TrainingLog, fit
from dgcn.training.optim import sgd_with_head_lr, trainable
from dgcn.training.schedule import poly

B = TypeVar("B")
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def train_classifier(model: torch.nn.Module, images: Indexed, labels: np.ndarray, *, input_size: int,
                     batch_size: int, seed: int, data_workers: int = 0, precision: Precision = FLOAT32,
                     **settings) -> TrainingLog:
    """Multi-label classifier (BCE) on (N, C-1) {0,1} foreground labels, its images read per sample (SquareImages).

    images: (H_i, W_i, 3) uint8 per sample, each resized to input_size x input_size and mirrored as the epoch plan
    says. data_workers: DataLoader processes (the result does not depend on it). precision: the network's (mixed
    precision on CUDA). settings: the keyword arguments of train_supervised (epochs, lr, weight_decay, optimizer, ...).
    """
    device = next(model.parameters()).device
    loader = EpochLoader(SquareImages(images, labels, input_size), batch_size=batch_size, seed=seed,
                         workers=data_workers, pin_memory=device.type == "cuda")
    network = distributed.replicate(precision.wrap(model))

    def inputs(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return normalize(batch[0].to(device)), batch[1].to(device)

    def loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(network(x), target)

    return train_supervised(model, loader, inputs, loss, iters_per_epoch=len(loader), desc="classifier",
                            precision=precision, **settings)


def train_supervised(model: torch.nn.Module, batches: Callable[[int], EpochData[B]],
                     inputs: Callable[[B], tuple[torch.Tensor, torch.Tensor]], loss: Loss, *, iters_per_epoch: int,
                     desc: str, lr: float, weight_decay: float, epochs: int | None = None,
                     iterations: int | None = None, iter_size: int = 1, checkpoint: Path | None = None,
                     optimizer: str = "adamw", momentum: float = 0.9, head_lr_mult: float = 10.0,
                     head_bias_lr_mult: float | None = None, head_bias_weight_decay: float | None = None,
                     precision: Precision = FLOAT32) -> TrainingLog:
    """Minimise `loss(*inputs(batch))` over `batches(epoch)` on the model's device (inputs puts them there).

    Length: `epochs` epochs, or `iterations` optimiser steps (the last epoch cut short); give one. iter_size: each
    batch runs in that many parts (rows split evenly), their gradients accumulated before the step, each part's loss
    weighted by its share of the rows (deeplab-pytorch's ITER_SIZE; less memory, the same step with frozen
    BatchNorm). optimizer "adamw": AdamW with a one-cycle schedule peaking at lr (fast from scratch on a CPU). "sgd":
    the published DeepLab recipe, SGD with `momentum`, the head at `head_lr_mult` x lr (its biases at
    `head_bias_lr_mult` x lr with `head_bias_weight_decay` where given: optim.sgd_with_head_lr), poly decay (power
    0.9) per iteration. Only trainable parameters join (frozen BatchNorm layers stay out). precision: how backward and
    the step run (default float32).
    """
    if (epochs is None) == (iterations is None):
        raise ValueError(f"give either epochs or iterations, got epochs={epochs}, iterations={iterations}")
    if iter_size < 1:
        raise ValueError(f"iter_size must be >= 1, got {iter_size}")
    steps = epochs * iters_per_epoch if iterations is None else iterations
    if optimizer == "adamw":
        optim: torch.optim.Optimizer = torch.optim.AdamW(trainable(model.parameters()), lr=lr,
                                                         weight_decay=weight_decay)
        scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.OneCycleLR(
            optim, max_lr=lr, total_steps=steps)
    elif optimizer == "sgd":
        optim = sgd_with_head_lr(model, lr=lr, momentum=momentum, weight_decay=weight_decay, head_lr_mult=head_lr_mult,
                                 head_bias_lr_mult=head_bias_lr_mult, head_bias_weight_decay=head_bias_weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optim, partial(poly, total_iters=steps))
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")

    def step(batch: B) -> dict[str, float]:
        x, target = inputs(batch)
        optim.zero_grad(set_to_none=True)
        total = 0.0
        for part, part_target in zip(x.tensor_split(iter_size), target.tensor_split(iter_size), strict=True):
            if len(part):  # fewer rows than parts: some are empty
                value = loss(part, part_target) * (len(part) / len(x))
                precision.backward(value)
                total += value.item()
        precision.update(optim)
        return {"loss": total}

    return fit(model=model, optimizer=optim, scheduler=scheduler, step=step, batches=batches,
               epochs=epochs if iterations is None else math.ceil(iterations / iters_per_epoch),
               checkpoint=checkpoint, desc=desc, max_steps=iterations)

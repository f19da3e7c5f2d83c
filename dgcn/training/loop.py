"""The epoch loop every trainer uses: seeded batches, resumable checkpoints, a progress bar, a loss log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

Step = Callable[[np.ndarray, np.ndarray], dict[str, float]]


@dataclass
class TrainingLog:
    """Mean losses per epoch (`epoch` column) and the losses of every step (`step` column)."""

    epochs: list[dict[str, float]]
    steps: list[dict[str, float]]


@dataclass(frozen=True)
class Batch:
    """Sample indices of one batch and, per sample, whether to mirror it."""

    indices: np.ndarray
    flips: np.ndarray


def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int) -> list[Batch]:
    """Shuffled batches of one epoch; randomness depends on (seed, epoch) only, so a resumed run matches a fresh one."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(num_samples)
    flips = rng.random(num_samples) < 0.5
    size = min(batch_size, num_samples)
    count = num_samples // size
    return [Batch(order[i * size:(i + 1) * size], flips[i * size:(i + 1) * size]) for i in range(count)]


def fit(*, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler, step: Step, num_samples: int, batch_size: int,
        epochs: int, seed: int, checkpoint: Path | None = None, desc: str = "training") -> TrainingLog:
    """Run `epochs` epochs of `step(indices, flips) -> losses`, stepping the scheduler per iteration.

    Returns the loss log (per epoch and per step). With `checkpoint`, the state after every epoch is saved
    there and an interrupted run resumes from the last completed epoch.
    """
    log = TrainingLog(epochs=[], steps=[])
    start = 0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        log, start = TrainingLog(**state["log"]), state["epoch"] + 1
    for epoch in range(start, epochs):
        model.train()
        totals: dict[str, float] = {}
        batches = epoch_batches(num_samples, batch_size, seed, epoch)
        bar = tqdm(batches, desc=f"{desc} epoch {epoch + 1}/{epochs}", leave=False)
        for batch in bar:
            losses = step(batch.indices, batch.flips)
            scheduler.step()
            log.steps.append({"step": len(log.steps) + 1, **{key: round(value, 6) for key, value in losses.items()}})
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + value
            bar.set_postfix({key: f"{value:.3f}" for key, value in losses.items()})
        means = {key: round(value / len(batches), 6) for key, value in totals.items()}
        log.epochs.append({"epoch": epoch + 1, **means})
        if checkpoint is not None:
            _save_checkpoint(checkpoint, model, optimizer, scheduler, epoch, log)
    return log


def _save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: torch.optim.lr_scheduler.LRScheduler, epoch: int, log: TrainingLog) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch, "log": {"epochs": log.epochs, "steps": log.steps}}, tmp)
    tmp.replace(path)


def mirror(x: torch.Tensor, flips: np.ndarray, dim: int = -1) -> torch.Tensor:
    """Flip along `dim` (the width axis) the samples of the batch `x` whose entry in `flips` is True."""
    if not flips.any():
        return x
    out = x.clone()
    selected = torch.from_numpy(np.flatnonzero(flips)).to(x.device)
    out[selected] = torch.flip(x[selected], dims=[dim])
    return out

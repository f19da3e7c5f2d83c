"""The epoch loop every trainer uses: seeded batches, resumable checkpoints, progress, a line per epoch, a loss log."""

from __future__ import annotations

import contextlib
import copy
import io
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import torch

from dgcn import distributed
from dgcn.errors import InputError
from dgcn.progress import log_line, progress
from dgcn.storage.atomic import atomic_output

B = TypeVar("B")
B_co = TypeVar("B_co", covariant=True)


class EpochData(Sized, Protocol[B_co]):
    """The batches of one epoch: sized and iterable (a list, a DataLoader)."""

    def __iter__(self) -> Iterator[B_co]: ...


@dataclass
class TrainingLog:
    """Mean losses per epoch (`epoch` column) and the losses of every step (`step` column)."""

    epochs: list[dict[str, float]]
    steps: list[dict[str, float]]


class Diverged(InputError):
    """Training produced a NaN or an infinity (a loss, the network's output): it stops, and nothing is saved."""


def check_finite(what: str, *tensors: torch.Tensor) -> None:
    """Raise Diverged naming `what` when `tensors` hold a NaN or an infinity: a step checks what it hands on (the
    network's output to a graph cut) before using it, and fit names the epoch and step."""
    bad = sum(int((~torch.isfinite(tensor)).sum()) for tensor in tensors)
    if bad:
        raise Diverged(f"{what} holds {bad} non-finite values")


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
        scheduler: torch.optim.lr_scheduler.LRScheduler, step: Callable[[B], dict[str, float]],
        batches: Callable[[int], EpochData[B]], epochs: int, checkpoint: Path | None = None,
        desc: str = "training", max_steps: int | None = None) -> TrainingLog:
    """Run `epochs` epochs of `step(batch) -> losses` over `batches(epoch)`, stepping the scheduler per iteration;
    with `max_steps`, stop after that many steps in all (the last epoch cut short).

    Returns the loss log (per epoch and per step). With `checkpoint`, the state after every epoch is saved there and
    an interrupted run resumes from the last completed epoch, saying so; a damaged checkpoint is set aside with a
    warning (see _resume) and the run starts afresh. The caller deletes the checkpoint once its outputs are safe.
    Prints one line per epoch on stderr (`<desc> epoch 3/10: loss=0.1234 ... (12.3 s)`, mean losses and wall time,
    checkpoint included), always, so a log keeps the training curve; on a terminal a bar shows the epoch's steps
    meanwhile. Under torchrun (dgcn.distributed) the logged losses are the ranks' mean, the replicas are checked equal
    after every epoch and rank 0 alone saves. The first step whose losses are not finite, or whose `step` raises
    Diverged, ends training with Diverged naming the epoch and step: no step runs on a diverged network.
    """
    log, start = _resume(checkpoint, model, optimizer, scheduler, desc)
    for epoch in range(start, epochs):
        began = time.perf_counter()
        model.train()
        totals: dict[str, float] = {}
        data = batches(epoch)
        title = f"{desc} epoch {epoch + 1}/{epochs}"
        # No end-of-loop line from the bar: the epoch line below says more.
        bar = progress(data, title, summary=False)
        count = 0
        for number, batch in enumerate(bar, 1):
            if max_steps is not None and len(log.steps) >= max_steps:
                break
            count += 1
            try:
                losses = distributed.mean_losses(step(batch))
                bad = {key: value for key, value in losses.items() if not math.isfinite(value)}
                if bad:
                    raise Diverged(format_losses(bad))
            except Diverged as error:
                raise Diverged(f"{desc}: training diverged in epoch {epoch + 1}/{epochs}, step {number}/{len(data)}: "
                               f"{error}; stopped, nothing saved (lower the learning rate)") from None
            scheduler.step()
            log.steps.append({"step": len(log.steps) + 1, **{key: round(value, 6) for key, value in losses.items()}})
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + value
            bar.set_postfix({key: f"{value:.3f}" for key, value in losses.items()})
        means = {key: round(value / count, 6) for key, value in totals.items()}
        log.epochs.append({"epoch": epoch + 1, **means})
        distributed.check_replicas(model)
        if checkpoint is not None and distributed.is_main():
            _save_checkpoint(checkpoint, model, optimizer, scheduler, epoch, log)
        log_line(f"{title}: {format_losses(means)} ({time.perf_counter() - began:.1f} s)")
    return log


def format_losses(losses: Mapping[str, float]) -> str:
    """`loss=0.1234 seeding=0.0567`: each loss to 4 decimals, in the mapping's order."""
    return " ".join(f"{key}={value:.4f}" for key, value in losses.items())


def _resume(checkpoint: Path | None, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler, desc: str) -> tuple[TrainingLog, int]:
    """The loss log so far and the first epoch to run: from `checkpoint` when it holds a run's state (then loaded into
    model, optimizer and scheduler), else an empty log and epoch 0.

    A checkpoint that does not load (truncated, garbage, crafted, of other code) changes nothing: it is renamed to
    `<name>.damaged` beside itself, with a warning naming both paths on stderr, and training starts from the start.
    """
    if checkpoint is None or not checkpoint.is_file():
        return TrainingLog(epochs=[], steps=[]), 0
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    fresh = {key: copy.deepcopy(part.state_dict()) for key, part in parts.items()}
    try:
        state = torch.load(checkpoint, weights_only=True)  # tensors and plain containers only: never run code
        log, start = TrainingLog(**state["log"]), state["epoch"] + 1
        for key, part in parts.items():
            part.load_state_dict(state[key])
    except Exception as error:  # torch raises several unrelated types for a damaged (e.g. truncated) file
        for key, part in parts.items():  # a load that failed half-way leaves no trace
            part.load_state_dict(fresh[key])
        aside = checkpoint.with_name(checkpoint.name + ".damaged")
        checkpoint.replace(aside)
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        log_line(f"warning: damaged checkpoint {checkpoint} ({reason}); moved to {aside}, training from the start")
        return TrainingLog(epochs=[], steps=[]), 0
    log_line(f"{desc}: resuming after epoch {start} from checkpoint {checkpoint}")
    return log, start


def discard_checkpoint(checkpoint: Path) -> None:
    """Delete a checkpoint once the run's outputs are safe, and its folder if that is now empty, so that the next run
    trains from the start instead of returning the finished state."""
    checkpoint.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        checkpoint.parent.rmdir()  # not empty: something else (a set-aside damaged checkpoint) is kept there


def _save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: torch.optim.lr_scheduler.LRScheduler, epoch: int, log: TrainingLog) -> None:
    # serialised in memory, then written by a plain file write: a full disk is then an OSError naming the file, and
    # atomic_output removes the partial file (torch.save to a file raises a RuntimeError and leaves it)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch, "log": {"epochs": log.epochs, "steps": log.steps}}, buffer)
    with atomic_output(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


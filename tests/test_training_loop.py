"""The shared epoch loop: seeded batches, the schedule, and a killed run that resumes to the same weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import dgcn.training.loop as loop
from dgcn.models.registry import build_segmenter
from dgcn.training.loop import TrainingLog, epoch_batches, mirror
from dgcn.training.schedule import warmup_step_decay
from dgcn.training.supervised import train_segmenter


class Killed(Exception):
    """Stands in for the process being killed after a checkpoint was written."""


def train(checkpoint: Path | None) -> tuple[dict[str, torch.Tensor], TrainingLog]:
    torch.manual_seed(0)
    model = build_segmenter("small", 2, width=4)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    labels = (images[..., 0] > 128).astype(np.uint8)
    history = train_segmenter(model, images, labels, epochs=3, batch_size=4, lr=0.01, weight_decay=0.0, seed=3,
                              checkpoint=checkpoint)
    return model.state_dict(), history


def test_killed_run_resumes_to_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uninterrupted, history = train(None)
    checkpoint = tmp_path / "last.pt"
    save = loop._save_checkpoint

    def save_then_die(path, model, optimizer, scheduler, epoch, rows) -> None:
        save(path, model, optimizer, scheduler, epoch, rows)
        if epoch == 1:
            raise Killed

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(checkpoint)
    monkeypatch.setattr(loop, "_save_checkpoint", save)
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 1
    resumed, resumed_history = train(checkpoint)
    assert resumed_history == history and [row["epoch"] for row in history.epochs] == [1, 2, 3]
    assert [row["step"] for row in history.steps] == list(range(1, 10))
    for name, tensor in uninterrupted.items():
        assert torch.equal(tensor, resumed[name]), name


def test_epoch_batches_depend_on_seed_and_epoch_only() -> None:
    first = epoch_batches(10, 4, seed=1, epoch=2)
    again = epoch_batches(10, 4, seed=1, epoch=2)
    assert len(first) == 2 and all(len(b.indices) == 4 for b in first)
    assert all(np.array_equal(a.indices, b.indices) and np.array_equal(a.flips, b.flips)
               for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0].indices, epoch_batches(10, 4, seed=1, epoch=3)[0].indices)


def test_mirror_flips_only_selected_samples() -> None:
    x = torch.arange(12.0).view(2, 1, 2, 3)
    out = mirror(x, np.array([False, True]))
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], x[1].flip(-1))


def test_warmup_then_step_decay() -> None:
    rate = [warmup_step_decay(i, warmup_iters=4, iters_per_epoch=10, decay_every_epochs=2, gamma=0.3)
            for i in range(45)]
    assert rate[0] == pytest.approx(0.25) and rate[3] == 1.0 and rate[19] == 1.0
    assert rate[20] == pytest.approx(0.3) and rate[40] == pytest.approx(0.09)

"""The shared epoch loop: seeded batches, the schedule, and a killed run that resumes to the same weights."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import dgcn.training.loop as loop
import dgcn.training.retrain as retrain
import dgcn.training.supervised as supervised
from dgcn.data.augment import CropGeometry
from dgcn.models.registry import build_classifier, build_segmenter
from dgcn.supervision import SupervisionPool
from dgcn.training.dgcn import SGDSchedule, train_dgcn
from dgcn.training.loop import TrainingLog, epoch_batches
from dgcn.training.optim import sgd_with_head_lr
from dgcn.training.retrain import train_segmenter
from dgcn.training.schedule import poly, warmup_step_decay


class Killed(Exception):
    """Stands in for the process being killed after a checkpoint was written."""


def retrain_on_crops(checkpoint: Path | None, class_weights: list[float] | None = None
                     ) -> tuple[dict[str, torch.Tensor], TrainingLog]:
    torch.manual_seed(0)
    model = build_segmenter("small", 2, width=4)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    labels = (images[..., 0] > 128).astype(np.uint8)
    # Random scale and crop: the per-sample randomness must resume too.
    history = train_segmenter(model, images, labels, geometry=CropGeometry(24, scale_range=(0.75, 1.25)), epochs=3,
                              batch_size=4, lr=0.01, weight_decay=0.0, seed=3, checkpoint=checkpoint,
                              class_weights=class_weights)
    return model.state_dict(), history


def test_class_weights_reach_the_retraining_loss() -> None:
    """Weights of 1 are the plain loss, bit for bit; other weights change what the network learns."""
    plain, _ = retrain_on_crops(None)
    ones, _ = retrain_on_crops(None, [1.0, 1.0])
    weighted, _ = retrain_on_crops(None, [0.5, 2.0])
    assert all(torch.equal(plain[name], ones[name]) for name in plain)
    assert not all(torch.equal(plain[name], weighted[name]) for name in plain)


def train_dgcn_on_crops(checkpoint: Path | None) -> tuple[dict[str, torch.Tensor], TrainingLog]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 40, 28, 3), dtype=np.uint8)  # 32-pixel crops: random rows, padded columns
    cues = np.zeros((8, 3, 8, 8), np.uint8)
    cues[:, 0, :3], cues[:, 1, 5:] = 1, 1
    torch.manual_seed(0)
    model = build_segmenter("small", 3, width=4)
    schedule = SGDSchedule(lr=0.01, momentum=0.9, weight_decay=5e-4, head_lr_mult=10.0, warmup_iters=2,
                           decay_every_epochs=1, decay_gamma=0.5)
    with SupervisionPool(workers=0) as pool:
        history = train_dgcn(model, images, cues, np.array([[1, 1, 0]] * 8, np.uint8), pool, schedule,
                             geometry=CropGeometry(32), epochs=3, batch_size=4, seed=1, checkpoint=checkpoint)
    return model.state_dict(), history


@pytest.mark.parametrize("train", [retrain_on_crops, train_dgcn_on_crops])
def test_killed_run_resumes_to_the_same_weights(train: Callable[[Path | None], tuple[dict, TrainingLog]],
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
    assert [row["step"] for row in history.steps] == list(range(1, len(history.steps) + 1))
    for name, tensor in uninterrupted.items():
        assert torch.equal(tensor, resumed[name]), name


def _truncated(state: dict, path: Path) -> None:
    torch.save(state, path)
    path.write_bytes(path.read_bytes()[:1000])


def _garbage(state: dict, path: Path) -> None:
    path.write_bytes(b"not a checkpoint at all")


def _half_loadable(state: dict, path: Path) -> None:
    # trained weights that load, then an optimizer state that does not: the weights must not stay
    torch.save({**state, "optimizer": {"state": {}, "param_groups": []}}, path)


@pytest.mark.parametrize("damage", [_truncated, _garbage, _half_loadable])
def test_damaged_checkpoint_is_set_aside_and_training_starts_afresh(
        damage: Callable[[dict, Path], None], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "last.pt"
    fresh, history = retrain_on_crops(checkpoint)  # leaves the finished run's checkpoint: fit never deletes it
    damage(torch.load(checkpoint, weights_only=True), checkpoint)
    capsys.readouterr()
    again, again_history = retrain_on_crops(checkpoint)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "checkpoint" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: damaged checkpoint {checkpoint} (")
    assert warnings[0].endswith(f"moved to {checkpoint}.damaged, training from the start")
    assert (tmp_path / "last.pt.damaged").is_file()
    assert again_history == history
    for name, tensor in fresh.items():
        assert torch.equal(tensor, again[name]), name


def test_epoch_batches_depend_on_seed_and_epoch_only() -> None:
    first = epoch_batches(10, 4, seed=1, epoch=2)
    again = epoch_batches(10, 4, seed=1, epoch=2)
    assert len(first) == 2 and all(len(b.indices) == 4 for b in first)
    assert all(np.array_equal(a.indices, b.indices) and np.array_equal(a.flips, b.flips)
               for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0].indices, epoch_batches(10, 4, seed=1, epoch=3)[0].indices)
    other_seed = epoch_batches(10, 4, seed=2, epoch=2)
    assert not all(np.array_equal(a.indices, b.indices) for a, b in zip(first, other_seed, strict=True))
    flips = [np.concatenate([b.flips for b in epoch_batches(40, 40, seed=seed, epoch=2)]) for seed in (1, 2)]
    assert not np.array_equal(*flips)


def test_warmup_then_step_decay() -> None:
    rate = [warmup_step_decay(i, warmup_iters=4, iters_per_epoch=10, decay_every_epochs=2, gamma=0.3)
            for i in range(45)]
    assert rate[0] == pytest.approx(0.25) and rate[3] == 1.0 and rate[19] == 1.0
    assert rate[20] == pytest.approx(0.3) and rate[40] == pytest.approx(0.09)


def test_poly_decays_to_zero() -> None:
    assert poly(0, total_iters=10) == 1.0
    assert poly(5, total_iters=10) == pytest.approx(0.5 ** 0.9)
    assert poly(10, total_iters=10) == 0.0 and poly(12, total_iters=10) == 0.0


def test_sgd_puts_the_head_at_a_larger_rate_and_keeps_momentum() -> None:
    model = build_segmenter("small", 3, width=4)
    optimizer = sgd_with_head_lr(model, lr=0.01, momentum=0.9, weight_decay=5e-4, head_lr_mult=10.0)
    trunk, head = optimizer.param_groups
    assert trunk["lr"] == 0.01 and head["lr"] == pytest.approx(0.1)
    assert all(group["momentum"] == 0.9 and group["weight_decay"] == 5e-4 for group in optimizer.param_groups)
    assert {id(p) for p in head["params"]} == {id(p) for p in model.head.parameters()}
    assert len(trunk["params"]) + len(head["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize(("optimizer", "lr"), [("adamw", 0.03), ("sgd", 0.05)])
def test_retraining_fits_with_either_optimizer(optimizer: str, lr: float) -> None:
    # Bright right part (class 1) and dark left part (class 0), split at a random column, with noise.
    torch.manual_seed(0)
    model = build_segmenter("small", 2, width=4)
    rng = np.random.default_rng(0)
    labels = (np.arange(32) >= rng.integers(4, 28, (16, 1, 1))).repeat(32, axis=1).astype(np.uint8)
    images = (np.where(labels[..., None] == 1, 200, 40) + rng.integers(0, 30, (16, 32, 32, 3))).astype(np.uint8)
    history = train_segmenter(model, images, labels, geometry=CropGeometry(32), epochs=6, batch_size=4, lr=lr,
                              weight_decay=0.0, seed=0, optimizer=optimizer, momentum=0.9, head_lr_mult=10.0)
    losses = [row["loss"] for row in history.epochs]
    assert losses[-1] < 0.6 * losses[0]


def test_sgd_retraining_uses_the_head_scaled_groups_and_poly(monkeypatch: pytest.MonkeyPatch) -> None:
    built = []

    def spy(model, **settings):
        built.append(sgd_with_head_lr(model, **settings))
        return built[-1]

    monkeypatch.setattr(supervised, "sgd_with_head_lr", spy)
    images = np.zeros((8, 16, 16, 3), np.uint8)
    train_segmenter(build_segmenter("small", 2, width=4), images, np.zeros((8, 16, 16), np.uint8),
                    geometry=CropGeometry(16), epochs=2, batch_size=4, lr=0.01, weight_decay=0.0, seed=0,
                    optimizer="sgd", head_lr_mult=10.0)
    assert len(built) == 1
    # 4 iterations of poly(power 0.9): after the last step the rate is 0 in both groups.
    assert [group["lr"] for group in built[0].param_groups] == [0.0, 0.0]


def test_unknown_optimizer_is_named() -> None:
    images = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="optimizer must be 'adamw' or 'sgd', got 'adam'"):
        train_segmenter(build_segmenter("small", 2, width=4), images, np.zeros((4, 16, 16), np.uint8),
                        geometry=CropGeometry(16), epochs=1, batch_size=4, lr=0.01, weight_decay=0.0, seed=0,
                        optimizer="adam")


# The diverging optimiser: every step multiplies the head's update by 1e30.
DIVERGING = {"optimizer": "sgd", "lr": 1.0, "momentum": 0.99, "head_lr_mult": 1e30}


def diverging_classifier() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 24, 20, 3), dtype=np.uint8)
    supervised.train_classifier(build_classifier("small", 2, width=4), images,
                                rng.integers(0, 2, (8, 2)).astype(np.float32), input_size=32, batch_size=2, seed=0,
                                epochs=3, weight_decay=0.0, **DIVERGING)


def diverging_retraining() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    train_segmenter(build_segmenter("small", 2, width=4), images, (images[..., 0] > 128).astype(np.uint8),
                    geometry=CropGeometry(24), epochs=3, batch_size=2, seed=0, weight_decay=0.0, **DIVERGING)


def diverging_dgcn(lr: float = DIVERGING["lr"], head_lr_mult: float = DIVERGING["head_lr_mult"]) -> None:
    rng = np.random.default_rng(0)
    cues = np.zeros((8, 3, 8, 8), np.uint8)
    cues[:, 0, :3], cues[:, 1, 5:] = 1, 1
    schedule = SGDSchedule(lr=lr, momentum=DIVERGING["momentum"], weight_decay=0.0, head_lr_mult=head_lr_mult,
                           warmup_iters=0, decay_every_epochs=1, decay_gamma=0.5)
    with SupervisionPool(workers=0) as pool:
        train_dgcn(build_segmenter("small", 3, width=4), rng.integers(0, 255, (8, 40, 28, 3), dtype=np.uint8), cues,
                   np.array([[1, 1, 0]] * 8, np.uint8), pool, schedule, geometry=CropGeometry(32), epochs=3,
                   batch_size=4, seed=1)


def diverging_dgcn_trunk() -> None:
    """The whole network diverges in one step whose loss is finite: the next step's features are NaN, which the kNN
    graph of the cut cannot take (`kthvalue(): Expected reduction dim 1 to have non-zero size` before the check)."""
    diverging_dgcn(lr=1e30, head_lr_mult=1.0)


@pytest.mark.parametrize("train", [diverging_classifier, diverging_retraining, diverging_dgcn,
                                   diverging_dgcn_trunk])
def test_diverging_training_stops_at_the_first_non_finite_step(train: Callable[[], None],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The step named is the first whose losses are not finite, or (DGCN, whose cut cannot run on NaN features) the
    first whose network output is not: every step before it had finite losses, and no step ran after it."""
    torch.manual_seed(0)
    seen: list[dict[str, float]] = []
    mean_losses = loop.distributed.mean_losses
    monkeypatch.setattr(loop.distributed, "mean_losses", lambda losses: seen.append(losses) or mean_losses(losses))
    with pytest.raises(loop.Diverged) as caught:
        train()
    found = re.fullmatch(r"(classifier|retrain|dgcn): training diverged in epoch (\d)/3, step (\d)/(\d): (.+); "
                         r"stopped, nothing saved \(lower the learning rate\)", str(caught.value))
    assert found, caught.value
    epoch, step, steps = map(int, found.group(2, 3, 4))
    before = (epoch - 1) * steps + step - 1  # the steps that ran before the one named
    assert all(math.isfinite(value) for losses in seen[:before] for value in losses.values())
    if found[5].startswith("the network's output holds"):
        assert len(seen) == before
    else:
        assert len(seen) == before + 1 and not all(map(math.isfinite, seen[-1].values()))


def test_head_biases_get_their_own_rate_and_no_weight_decay() -> None:
    """DeepLab's groups (main.py get_params): trunk 1x, head weights 10x, head biases 20x without weight decay."""
    model = build_segmenter("deeplab_v2", 3, aspp_rates=[6, 12])
    optimizer = sgd_with_head_lr(model, lr=0.01, momentum=0.9, weight_decay=5e-4, head_lr_mult=10.0,
                                 head_bias_lr_mult=20.0, head_bias_weight_decay=0.0)
    trunk, weights, biases = optimizer.param_groups
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.01, 0.1, 0.2])
    assert [group["weight_decay"] for group in optimizer.param_groups] == [5e-4, 5e-4, 0.0]
    branches = model.head.branches
    assert {id(p) for p in weights["params"]} == {id(branch.weight) for branch in branches}
    assert {id(p) for p in biases["params"]} == {id(branch.bias) for branch in branches}
    assert len(trunk["params"]) + 4 == len(list(model.parameters()))


def _frozen_retrain(**settings) -> tuple[dict[str, torch.Tensor], TrainingLog, list[float], list[int]]:
    """A small net retrained with frozen BatchNorm and SGD; its weights, log, the last learning rates and the rows of
    each loss evaluated."""
    rates, rows = [], []

    def spy(model, **kwargs):
        rates.append(sgd_with_head_lr(model, **kwargs))
        return rates[-1]

    loss = retrain.segmentation_loss
    torch.manual_seed(0)
    model = build_segmenter("small", 2, width=4)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (12, 24, 24, 3), dtype=np.uint8)
    labels = (images[..., 0] > 128).astype(np.uint8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(supervised, "sgd_with_head_lr", spy)
        patch.setattr(retrain, "segmentation_loss", lambda out, *args: rows.append(len(out.scores)) or loss(out, *args))
        log = train_segmenter(model, images, labels, geometry=CropGeometry(24), batch_size=4, lr=0.01,
                              weight_decay=5e-4, seed=0, batchnorm="frozen", optimizer="sgd", **settings)
    return model.state_dict(), log, [group["lr"] for group in rates[0].param_groups], rows


def test_iterations_count_optimiser_steps_across_epochs() -> None:
    """10000 iterations as DeepLab counts them: 5 steps of 3-batch epochs are 2 epochs, the second cut short, and
    poly reaches 0 at the last step."""
    _, log, rates, _ = _frozen_retrain(iterations=5)
    assert len(log.steps) == 5 and [row["epoch"] for row in log.epochs] == [1, 2]
    assert log.epochs[1]["loss"] == pytest.approx((log.steps[3]["loss"] + log.steps[4]["loss"]) / 2, abs=1e-6)
    assert rates == [0.0, 0.0]
    with pytest.raises(ValueError, match="give either epochs or iterations"):
        _frozen_retrain(iterations=5, epochs=2)


def test_a_batch_in_parts_takes_the_same_step() -> None:
    """iter_size (DeepLab's ITER_SIZE): with frozen BatchNorm, 2 parts of 2 accumulate the gradient of the batch of 4;
    3 parts of 4 rows (2 + 1 + 1) too, each part weighted by its rows."""
    whole, whole_log, _, rows = _frozen_retrain(epochs=2)
    assert rows == [4] * 6
    for parts, split in ((2, [2, 2]), (3, [2, 1, 1])):
        state, log, _, rows = _frozen_retrain(epochs=2, iter_size=parts)
        assert rows == split * 6
        assert [row["loss"] for row in log.steps] == pytest.approx([row["loss"] for row in whole_log.steps], rel=1e-5)
        for name, value in whole.items():
            torch.testing.assert_close(state[name], value, rtol=1e-4, atol=1e-6)

"""BatchNorm policy: `frozen` keeps every BatchNorm layer's affine parameters and running statistics through training,
and normalises with the running statistics even in train mode; `batch_stats` (the published DGCN) keeps the affine
parameters but normalises with the batch's statistics in training and updates the running ones, synchronised over
processes on CUDA under torchrun only; `train` is PyTorch's default."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dgcn import distributed
from dgcn.data.augment import CropGeometry
from dgcn.models.registry import build_segmenter
from dgcn.supervision import SupervisionPool
from dgcn.training.batchnorm import apply_batchnorm_policy, normalises_with_batch_statistics
from dgcn.training.dgcn import SGDSchedule, train_dgcn
from dgcn.training.retrain import train_segmenter


def _batchnorm_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value.clone() for name, module in model.named_modules()
            if isinstance(module, torch.nn.BatchNorm2d) for key, value in module.state_dict().items()}


def _other_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    batchnorm = _batchnorm_state(model)
    return {key: value.clone() for key, value in model.state_dict().items() if key not in batchnorm}


def _data(count: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, 24, 24, 3), dtype=np.uint8)
    return images, (images[..., 0] > 128).astype(np.uint8)


def _retrain(policy: str) -> tuple[torch.nn.Module, dict, dict]:
    torch.manual_seed(0)
    model = build_segmenter("small", 2, width=4)
    before, others = _batchnorm_state(model), _other_state(model)
    images, labels = _data()
    train_segmenter(model, images, labels, geometry=CropGeometry(24), epochs=1, batch_size=4, lr=0.01,
                    weight_decay=5e-4, seed=0, optimizer="sgd", batchnorm=policy)
    return model, before, others


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {key for key, value in before.items() if not torch.equal(value, after[key])}


def test_frozen_batchnorm_is_unchanged_by_retraining_steps() -> None:
    model, before, others = _retrain("frozen")
    assert len(before) == 7 * 5  # 7 layers: weight, bias, running mean and variance, batch count
    assert _changed(before, _batchnorm_state(model)) == set()
    assert _changed(others, _other_state(model)) == set(others)  # every convolution trained
    # train() leaves the layers in eval mode: they normalise with the running statistics.
    model.train()
    layers = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert model.training and not any(layer.training for layer in layers)
    assert not any(p.requires_grad for layer in layers for p in layer.parameters())


def test_batchnorm_trains_by_default() -> None:
    model, before, _ = _retrain("train")
    assert _changed(before, _batchnorm_state(model)) == set(before)


def test_frozen_batchnorm_uses_running_statistics_in_train_mode() -> None:
    torch.manual_seed(0)
    model = build_segmenter("small", 3, width=4)
    x = torch.randn(2, 3, 32, 32) * 5 + 3
    unfrozen = copy.deepcopy(model)
    with torch.no_grad():
        reference = model.eval()(x).scores
        assert not torch.allclose(unfrozen.train()(x).scores, reference)  # batch statistics
    assert apply_batchnorm_policy(model, "frozen") == 7
    before = _batchnorm_state(model)
    with torch.no_grad():
        assert torch.equal(model.train()(x).scores, reference)
    assert _changed(before, _batchnorm_state(model)) == set()


def _dgcn_steps(policy: str) -> tuple[torch.nn.Module, dict, dict]:
    """A small net after two DGCN steps (8 images, batch 4) under `policy`; its BatchNorm and other state before."""
    torch.manual_seed(0)
    model = build_segmenter("small", 3, width=4)
    before, others = _batchnorm_state(model), _other_state(model)
    images, _ = _data()
    cues = np.zeros((8, 3, 6, 6), np.uint8)
    cues[:, 0, :2], cues[:, 1, 4:] = 1, 1
    labels = np.array([[1, 1, 0]] * 8, np.uint8)
    schedule = SGDSchedule(lr=0.01, momentum=0.9, weight_decay=5e-4, head_lr_mult=10.0, warmup_iters=1,
                           decay_every_epochs=1, decay_gamma=1.0)
    with SupervisionPool(workers=0) as pool:
        train_dgcn(model, images, cues, labels, pool, schedule, geometry=CropGeometry(24), epochs=1, batch_size=4,
                   seed=0, batchnorm=policy)
    return model, before, others


def test_frozen_batchnorm_is_unchanged_by_dgcn_steps() -> None:
    model, before, others = _dgcn_steps("frozen")
    assert _changed(before, _batchnorm_state(model)) == set()
    assert _changed(others, _other_state(model))


def test_batch_stats_keeps_the_affine_parameters_and_updates_the_running_statistics() -> None:
    """Two optimiser steps of DGCN training: weight and bias as they were (weight decay and momentum included), the
    running mean, variance and batch count of every layer moved, every convolution trained."""
    model, before, others = _dgcn_steps("batch_stats")
    layers = [name for name, module in model.named_modules() if isinstance(module, torch.nn.BatchNorm2d)]
    assert len(layers) == 7
    statistics = {f"{layer}.{key}" for layer in layers for key in ("running_mean", "running_var",
                                                                     "num_batches_tracked")}
    assert _changed(before, _batchnorm_state(model)) == statistics
    assert all(int(model.get_submodule(layer).num_batches_tracked) == 2 for layer in layers)
    assert _changed(others, _other_state(model)) == set(others)
    model.train()
    assert all(model.get_submodule(layer).training for layer in layers)  # train() reaches them, unlike frozen
    assert not any(p.requires_grad for layer in layers for p in model.get_submodule(layer).parameters())


def test_batch_stats_forward_in_training_normalises_with_the_batch_statistics() -> None:
    """Every layer's output in a training forward equals batch_norm with the batch's mean and variance and differs
    from the one with the running statistics; the running statistics then take the momentum step towards the batch's
    (unbiased) variance."""
    torch.manual_seed(0)
    model = build_segmenter("small", 3, width=4)
    with torch.no_grad():  # running statistics that differ from any batch's, as ImageNet's would
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    assert apply_batchnorm_policy(model, "batch_stats") == 7
    seen: list[tuple[torch.nn.BatchNorm2d, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def record(module: torch.nn.Module, args: tuple[torch.Tensor], output: torch.Tensor) -> None:
        seen.append((module, args[0].detach().clone(), output.detach().clone(), *running[module]))

    running = {m: (m.running_mean.clone(), m.running_var.clone()) for m in model.modules()
               if isinstance(m, torch.nn.BatchNorm2d)}
    for module in running:
        module.register_forward_hook(record)
    model.train()(torch.randn(4, 3, 32, 32) * 5 + 3)
    assert len(seen) == 7
    for module, x, out, mean, var in seen:
        batch = F.batch_norm(x, None, None, module.weight, module.bias, training=True, eps=module.eps)
        stored = F.batch_norm(x, mean, var, module.weight, module.bias, training=False, eps=module.eps)
        torch.testing.assert_close(out, batch, rtol=1e-5, atol=1e-5)
        assert (out - stored).abs().max() > 0.1
        unbiased = x.transpose(0, 1).flatten(1).var(dim=1, unbiased=True)
        torch.testing.assert_close(module.running_var, (1 - module.momentum) * var + module.momentum * unbiased)
        torch.testing.assert_close(module.running_mean,
                                   (1 - module.momentum) * mean + module.momentum * x.mean(dim=(0, 2, 3)))


def test_only_a_distributed_cuda_run_synchronises_the_batch_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    """SyncBatchNorm needs torchrun (several processes) and CUDA (its training forward refuses CPU tensors): the
    decision, for each policy; one process, on the CPU, replicate leaves the model as it is."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    models = {}
    for policy in ("train", "frozen", "batch_stats"):
        models[policy] = build_segmenter("small", 2, width=4)
        apply_batchnorm_policy(models[policy], policy)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not any(distributed.synchronises_batchnorm(model, cuda) for model in models.values())
    assert distributed.replicate(models["batch_stats"]) is models["batch_stats"]
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in models["batch_stats"].modules())
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert {policy: distributed.synchronises_batchnorm(model, cuda) for policy, model in models.items()} == {
        "train": True, "frozen": False, "batch_stats": True}
    assert not any(distributed.synchronises_batchnorm(model, cpu) for model in models.values())
    layers = [m for m in models["frozen"].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not any(map(normalises_with_batch_statistics, layers))
    assert not normalises_with_batch_statistics(models["frozen"])  # not a BatchNorm layer at all


def test_sync_conversion_keeps_the_batch_stats_layers_frozen_and_training() -> None:
    """What replicate does to a batch_stats model under torchrun on CUDA (the conversion itself runs on the CPU):
    SyncBatchNorm layers sharing the affine parameters, still without gradients, still following train()."""
    model = build_segmenter("small", 2, width=4)
    apply_batchnorm_policy(model, "batch_stats")
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    distributed._convert_batchnorm(model)
    synced = [m for m in model.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert len(synced) == 7 and [m.weight for m in synced] == weights
    assert not any(p.requires_grad for m in synced for p in m.parameters())
    model.train()
    assert all(m.training and normalises_with_batch_statistics(m) for m in synced)


def test_unknown_policy_is_named() -> None:
    with pytest.raises(ValueError, match=r"batchnorm policy must be one of \('train', 'frozen', 'batch_stats'\), "
                                         r"got 'fixed'"):
        apply_batchnorm_policy(build_segmenter("small", 2, width=4), "fixed")

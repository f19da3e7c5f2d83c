"""BatchNorm policy: `frozen` keeps every BatchNorm layer's affine parameters and running statistics through training,
and normalises with the running statistics even in train mode; `train` is PyTorch's default."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dgcn.data.augment import CropGeometry
from dgcn.models.registry import build_segmenter
from dgcn.supervision import SupervisionPool
from dgcn.training.batchnorm import apply_batchnorm_policy
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


def test_frozen_batchnorm_is_unchanged_by_dgcn_steps() -> None:
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
                   seed=0, batchnorm="frozen")
    assert _changed(before, _batchnorm_state(model)) == set()
    assert _changed(others, _other_state(model))


def test_unknown_policy_is_named() -> None:
    with pytest.raises(ValueError, match=r"batchnorm policy must be one of \('train', 'frozen'\), got 'fixed'"):
        apply_batchnorm_policy(build_segmenter("small", 2, width=4), "fixed")

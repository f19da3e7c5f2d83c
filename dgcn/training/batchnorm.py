"""BatchNorm policy of a training stage: `train` (PyTorch's default), `frozen` (DeepLab-v2's retraining) or
`batch_stats` (the published DGCN training)."""

from __future__ import annotations

from types import MethodType

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

POLICIES = ("train", "frozen", "batch_stats")


def _stay_in_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    """train() of a frozen BatchNorm layer: whatever the mode, it keeps normalising with running statistics."""
    return nn.Module.train(module, False)


def apply_batchnorm_policy(model: nn.Module, policy: str) -> int:
    """Apply `policy` to every BatchNorm layer of `model`; returns how many layers it changed.

    "train": nothing changes (batch statistics in train mode, affine parameters trained).
    "frozen": each layer's affine parameters stop requiring gradients and the layer normalises with its running
    statistics, which it never updates, also after model.train() (DeepLab-v2 training with small batches).
    "batch_stats": each layer's affine parameters stop requiring gradients; the layer follows model.train() and
    model.eval() as usual, so in training it normalises with the batch's statistics and updates its running
    statistics, which test time uses (the published DGCN). Under torchrun on CUDA, dgcn.distributed.replicate
    synchronises those statistics over the processes (SyncBatchNorm), as the published code does.
    """
    if policy not in POLICIES:
        raise ValueError(f"batchnorm policy must be one of {POLICIES}, got {policy!r}")
    if policy == "train":
        return 0
    layers = [module for module in model.modules() if isinstance(module, _BatchNorm)]
    for layer in layers:
        for parameter in layer.parameters(recurse=False):
            parameter.requires_grad_(False)
        if policy == "frozen":
            # An instance attribute shadows nn.Module.train, so the parent's train() recursion keeps it in eval mode.
            layer.train = MethodType(_stay_in_eval, layer)
            layer.eval()
    return len(layers)


def normalises_with_batch_statistics(module: nn.Module) -> bool:
    """Whether `module` is a BatchNorm layer that normalises with its batch's statistics in training: under the
    policies train and batch_stats, not frozen."""
    return isinstance(module, _BatchNorm) and getattr(module.train, "__func__", None) is not _stay_in_eval

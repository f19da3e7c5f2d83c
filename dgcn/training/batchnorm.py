"""BatchNorm policy of a training stage: `train` (PyTorch's default) or `frozen` (the published DGCN and DeepLab-v2)."""

from __future__ import annotations

from types import MethodType

from torch import nn

POLICIES = ("train", "frozen")


def _stay_in_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    """train() of a frozen BatchNorm layer: whatever the mode, it keeps normalising with running statistics."""
    return nn.Module.train(module, False)


def apply_batchnorm_policy(model: nn.Module, policy: str) -> int:
    """Apply `policy` to every BatchNorm layer of `model`; returns how many layers it froze.

    "train": nothing changes (batch statistics in train mode, affine parameters trained). "frozen": each layer's affine
    parameters stop requiring gradients and the layer normalises with its running statistics, which it never updates,
    also after model.train() (published DGCN and DeepLab-v2 training with small batches).
    """
    if policy not in POLICIES:
        raise ValueError(f"batchnorm policy must be one of {POLICIES}, got {policy!r}")
    if policy == "train":
        return 0
    frozen = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(False)
            # An instance attribute shadows nn.Module.train, so the parent's train() recursion keeps it in eval mode.
            module.train = MethodType(_stay_in_eval, module)
            module.eval()
            frozen += 1
    return frozen

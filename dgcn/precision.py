"""Mixed precision on CUDA (`amp: bf16 | fp16 | off`): the network's forward under autocast, its outputs handed on in
float32, and for fp16 a GradScaler around backward and the optimiser step.

Only the network runs in half precision: the losses, the kNN distances and the graph-cut capacities see float32
outputs (half precision creates distance ties). On the CPU mixed precision is refused: CPU artifacts are float32 and
byte-identical.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dgcn.errors import InputError

AMP_MODES = ("bf16", "fp16", "off")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """The precision of one stage's network on `device`: wrap(model) for the forward, step(loss, optimizer) for the
    update. "off" changes nothing (the float32 code path, same bytes)."""

    def __init__(self, mode: str, device: torch.device, where: str = "amp") -> None:
        if mode not in AMP_MODES:
            raise InputError(f"{where} must be one of {AMP_MODES}, got {mode!r}")
        if mode != "off" and device.type != "cuda":
            raise InputError(f"{where}: {mode} mixed precision runs on CUDA only, the device is {device} (set it to "
                             f"off: CPU artifacts are float32)")
        self.mode = mode
        self.scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None

    def wrap(self, model: nn.Module) -> nn.Module:
        """`model` itself for "off"; else a module sharing its parameters whose forward runs under autocast."""
        return model if self.mode == "off" else Autocast(model, _DTYPES[self.mode])

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward of `loss` and one optimiser step (gradients zeroed by the caller); scaled for fp16, where a step
        with overflowing gradients is skipped and the scale lowered."""
        self.backward(loss)
        self.update(optimizer)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of `loss`, its gradients added to the parameters' (scaled for fp16): call it once per part of an
        accumulated step, then update()."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def update(self, optimizer: torch.optim.Optimizer) -> None:
        """One optimiser step on the accumulated gradients (for fp16 skipped on overflow, and the scale adapted)."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()


FLOAT32 = Precision("off", torch.device("cpu"))


class Autocast(nn.Module):
    """`model`'s forward under CUDA autocast to `dtype`; every floating-point tensor of its output back in float32."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, *args: Any) -> Any:
        with torch.autocast("cuda", dtype=self.dtype):
            out = self.model(*args)
        return _float32(out)

    def __getattr__(self, name: str) -> Any:
        """Attributes of the wrapped network (output_stride, ...) read through the wrapper."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("model"), name)


def _float32(out: Any) -> Any:
    """A tensor, or a (named) tuple of them, with floating-point tensors cast to float32."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, tuple):
        values = [_float32(value) for value in out]
        return type(out)(*values) if hasattr(out, "_fields") else tuple(values)
    return out

"""Trained networks on disk: one file holding the builder's name and arguments beside the weights."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dgcn.errors import ModelFileError
from dgcn.models.registry import build_classifier, build_segmenter
from dgcn.storage import atomic_output

BUILDERS = {"segmenter": build_segmenter, "classifier": build_classifier}


def _non_finite(state: Mapping[str, Any]) -> str | None:
    """What is not finite in a state dict (`12 of 3456 weights are not finite (NaN or infinite), the first in
    head.weight`); None when all are."""
    counts = {name: int((~torch.isfinite(value)).sum()) for name, value in state.items()
              if isinstance(value, torch.Tensor) and value.is_floating_point()}
    bad = [name for name, count in counts.items() if count]
    if not bad:
        return None
    total = sum(state[name].numel() for name in counts)
    return f"{sum(counts.values())} of {total} weights are not finite (NaN or infinite), the first in {bad[0]}"


def save_model(path: Path, model: torch.nn.Module, *, kind: str, arch: str, num_outputs: int,
               options: dict[str, Any] | None = None) -> None:
    """Write `model` with what rebuilds it; bytes depend only on the content (serialised in memory, then renamed).
    A network with a NaN or an infinite weight (training diverged) is refused: ModelFileError, nothing written."""
    state = model.state_dict()
    bad = _non_finite(state)
    if bad is not None:
        raise ModelFileError(f"{path}: not saved, the {kind} diverged: {bad}")
    _write(path, {"kind": kind, "arch": arch, "num_outputs": num_outputs, "options": options or {},
                  "state_dict": state})


def save_absent_model(path: Path, *, kind: str, reason: str) -> None:
    """Write a file that stands where a stage trained no network (its output must exist): loading it raises
    ModelFileError with `reason`, one line that says why and what to do."""
    _write(path, {"kind": kind, "absent": reason})


def _write(path: Path, content: dict[str, Any]) -> None:
    """torch.save `content` in memory, then write it atomically."""
    buffer = io.BytesIO()
    torch.save(content, buffer)
    with atomic_output(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_model(path: Path, kind: str) -> torch.nn.Module:
    """Rebuild and load a network saved by `save_model`; names the file when it is missing, of another kind, or holds
    a weight that is not finite (a diverged network, saved by older code or edited)."""
    if not path.is_file():
        raise FileNotFoundError(f"missing model file {path}; run the stage that trains it first (dvc repro)")
    try:
        # weights_only: a model file may come from a shared DVC remote; unpickling anything else could run code
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a damaged or crafted file
        raise ModelFileError(f"unreadable model file {path}: {error}") from error
    if not isinstance(saved, dict) or saved.get("kind") != kind:
        raise ModelFileError(f"{path} is not a saved {kind}")
    if "absent" in saved:
        raise ModelFileError(f"{path} holds no trained {kind}: {saved['absent']}")
    bad = _non_finite(saved["state_dict"]) if isinstance(saved.get("state_dict"), dict) else None
    if bad is not None:
        raise ModelFileError(f"{path} holds a diverged {kind}: {bad}; retrain it")
    try:
        model = BUILDERS[kind](saved["arch"], saved["num_outputs"], **saved["options"])
        model.load_state_dict(saved["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # a file of another version, or damaged
        raise ModelFileError(f"{path} does not rebuild a {kind}: {type(error).__name__}: {error}") from error
    return model.eval()

"""What every stage does the same way: its process (one writer per output, ending with dvc), seeding, thread count,
atomic JSON, the closing summary line."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer
from pydantic import BaseModel

import dgcn
import stages
from dgcn import distributed
from dgcn.errors import InputError
from dgcn.storage import atomic_output
from dgcn.storage.atomic import output_lock
from dgcn.workers import end_with, parent_of

# Deeper than any chain of shells, launchers and torchrun between dvc and a stage.
_MOST_ANCESTORS = 16


@contextmanager
def stage_process(out: Path) -> Iterator[None]:
    """Around every stage command (stages/app.py): end the stage with SIGTERM (it unwinds and publishes nothing) when
    the `dvc` process that runs it ends, and hold the lock of its output `out` for the whole run, so that a second run
    on the same `out` fails at once naming this one (dgcn.storage.atomic.output_lock). Under torchrun only rank 0,
    the rank that publishes, takes the lock."""
    lineage = dvc_lineage()
    if lineage:
        end_with(lineage, signal.SIGTERM)
    with output_lock(out) if distributed.is_main() else nullcontext():
        yield


def dvc_lineage() -> list[int]:
    """The pids from this stage's parent up to the `dvc` process that runs it; [] when no dvc runs it.

    DVC runs a command through `$SHELL -c` (bash execs it, dash stays in between), perhaps under torchrun: every
    process between inherits the DVC_STAGE variable that DVC sets for the command, and dvc itself is the first one
    without it. Where /proc is missing, only the parent.
    """
    if "DVC_STAGE" not in os.environ:
        return []
    lineage = [os.getppid()]
    while len(lineage) < _MOST_ANCESTORS and _runs_for_dvc(lineage[-1]):
        parent = parent_of(lineage[-1])
        if parent is None or parent <= 1:
            break
        lineage.append(parent)
    return lineage


def _runs_for_dvc(pid: int) -> bool:
    """Whether process `pid` was started by DVC for a stage's command (DVC_STAGE in its environment)."""
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return any(entry.startswith(b"DVC_STAGE=") for entry in environment.split(b"\0"))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; ask torch for deterministic kernels (byte-identical artifacts on CPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def set_threads() -> None:
    """Use every core for torch's intra-op pool, unless the user pinned OMP_NUM_THREADS."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(os.cpu_count() or 1)


def resolve_device(name: str, where: str) -> torch.device:
    """The torch device a stage's `device` param names; a clear error naming the param when CUDA is missing."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InputError(f"{where}: unknown device {name!r} (cpu, cuda, cuda:N or auto)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{where}: {name!r} requested but no CUDA device is available (use cpu or auto)")
    return device


def write_json(path: Path, payload: Any) -> None:
    """Write `payload` as stable, sorted JSON through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: Path, what: str) -> Any:
    """Read an upstream JSON artifact, saying which stage to run when it is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"missing upstream artifact {path} ({what}); run its stage first (dvc repro)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path} is not a JSON file ({what}): {error}; rerun its stage") from error


def summary(stage: str, **figures: Any) -> None:
    """Print the one line every stage ends with."""
    parts = [f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}" for key, value in figures.items()]
    typer.secho(f"[{stage}] done: " + " ".join(parts), fg=typer.colors.GREEN)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """A DVC plots file: one row per epoch (or per class), columns from the first row."""
    columns = list(rows[0]) if rows else []
    lines = [",".join(columns)] + [",".join(str(row[column]) for column in columns) for row in rows]
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _params_json(settings: list[BaseModel]) -> bytes:
    """A stage's params sections as stable JSON."""
    return json.dumps([part.model_dump(mode="json") for part in settings], sort_keys=True).encode()


def _hash_files(digest: Any, roots: list[Path]) -> None:
    """Feed `digest` the bytes of each file in `roots`: a file, or every file below a folder with its relative name
    (no absolute path: the same content gives the same digest anywhere)."""
    for root in roots:
        files = [root] if root.is_file() else root.rglob("*")
        for file in sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(file.relative_to(root)).encode() if file != root else b"")
            digest.update(file.read_bytes())


def provenance(stage: str, settings: list[BaseModel], inputs: list[Path]) -> dict[str, str]:
    """What a stage records in the stores it writes: its name and SHA-256 digests of its params sections and of its
    input files' bytes; no time or path, so the same params and inputs give the same bytes."""
    files = hashlib.sha256()
    _hash_files(files, inputs)
    return {"stage": stage, "params_sha256": hashlib.sha256(_params_json(settings)).hexdigest(),
            "inputs_sha256": files.hexdigest()}


def checkpoint_path(stage: str, settings: list[BaseModel], inputs: list[Path],
                    scratch: Path = Path(".scratch")) -> Path:
    """Where a resumable stage keeps its last checkpoint: keyed by a hash of its params, its input files' bytes and
    the code (so a checkpoint of older code is never resumed)."""
    digest = hashlib.sha256(_params_json(settings))
    _hash_files(digest, [*inputs, *(Path(module.__file__).parent for module in (dgcn, stages))])
    return scratch / "checkpoints" / stage / digest.hexdigest()[:16] / "last.pt"

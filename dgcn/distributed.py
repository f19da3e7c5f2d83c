"""Several processes, one per device, launched by torchrun: the process group, the model replicas and the split of the
work between ranks.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them (a plain `python -m stages ...`) everything here is a no-op
and a stage runs exactly as one process. Backends: gloo on the CPU, nccl on CUDA.
"""

from __future__ import annotations

import atexit
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from dgcn.errors import InputError
from dgcn.training.batchnorm import normalises_with_batch_statistics

_T = TypeVar("_T")


def world_size() -> int:
    """Processes of this run: torchrun's WORLD_SIZE, 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank, 0 without torchrun."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes checkpoints and artifacts (rank 0)."""
    return rank() == 0


def active() -> bool:
    """Whether this run has several processes (and a process group once `join` ran)."""
    return world_size() > 1


def join(device: torch.device) -> torch.device:
    """This process's device, torchrun's process group joined (once): a bare `cuda` becomes `cuda:LOCAL_RANK` (one
    GPU per process), backend nccl there and gloo on the CPU. `device` itself, no group, for one process."""
    if not active():
        return device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)
    return device


def replicate(model: nn.Module) -> nn.Module:
    """The module a training step calls: `model` itself for one process, else a DistributedDataParallel replica
    (gradients averaged over ranks) whose BatchNorm layers synchronise their batch statistics where
    `synchronises_batchnorm` says so.

    `model` stays the module whose state is checkpointed and saved (the replica shares its parameters). Call before
    building the optimizer, after the BatchNorm policy: SyncBatchNorm replaces the layers (parameters kept)."""
    if not active():
        return model
    device = next(model.parameters()).device
    if synchronises_batchnorm(model, device):
        _convert_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=None if device.type == "cpu" else [device])


def synchronises_batchnorm(model: nn.Module, device: torch.device) -> bool:
    """Whether `replicate` turns `model`'s BatchNorm layers into SyncBatchNorm (statistics of the whole batch over the
    processes, as the published DGCN): under torchrun, on CUDA, and where a layer normalises with batch statistics
    (policy train or batch_stats, not frozen). Never on the CPU: SyncBatchNorm's training forward refuses CPU tensors
    (torch 2.x), so there each rank normalises with its own rows' statistics."""
    return active() and device.type == "cuda" and any(normalises_with_batch_statistics(m) for m in model.modules())


def _convert_batchnorm(model: nn.Module) -> None:
    """Swap, in place, each child of `model` for its SyncBatchNorm conversion (the root keeps its identity)."""
    for name, child in model.named_children():
        setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))


def local_rows(rows: Sequence[_T] | np.ndarray, batch_size: int) -> Any:
    """This rank's rows of one batch of the epoch plan: every world_size-th, from its rank (all of them for one
    process), so the ranks together train on the recipe's batch."""
    size = world_size()
    if size == 1:
        return rows
    if batch_size % size:
        raise InputError(f"batch_size {batch_size} must be a multiple of the {size} torchrun processes: set the "
                         f"stage's batch_size param, or launch another --nproc_per_node")
    return rows[rank()::size]


def mean_losses(losses: Mapping[str, float]) -> dict[str, float]:
    """Each loss averaged over the ranks (as is for one process), so every rank logs the same figures."""
    if not active():
        return dict(losses)
    values = _all_reduce(torch.tensor(list(losses.values()), dtype=torch.float64))
    return {key: float(value) / world_size() for key, value in zip(losses, values.tolist(), strict=True)}


def check_replicas(model: nn.Module) -> None:
    """RuntimeError unless every rank holds the same parameters, byte for byte (compared by digest). Buffers are left
    out: a BatchNorm layer in train mode on the CPU updates its running statistics from its own rank's samples."""
    if not active():
        return
    digest = hashlib.sha256()
    for name, parameter in model.named_parameters():
        digest.update(name.encode())
        digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    digests: list[str | None] = [None] * world_size()
    dist.all_gather_object(digests, digest.hexdigest())
    if len(set(digests)) != 1:
        raise RuntimeError(f"the model replicas differ between ranks (weight digests {digests})")


def my_shards(count: int, shard_images: int) -> list[range]:
    """The image ranges of the Zarr shards this rank computes: shard s goes to rank s % world_size."""
    starts = range(0, count, shard_images)
    return [range(start, min(start + shard_images, count)) for start in starts[rank()::world_size()]]


def my_block(count: int) -> range:
    """This rank's contiguous share of `count` items (rank 0 the first): all of them for one process."""
    return range(rank() * count // world_size(), (rank() + 1) * count // world_size())


def gather_to_main(item: _T) -> list[_T]:
    """Every rank's `item`, in rank order, on rank 0 (an empty list elsewhere); [item] for one process."""
    if not active():
        return [item]
    gathered: list[Any] = [None] * world_size() if is_main() else []
    dist.gather_object(item, gathered if is_main() else None, dst=0)
    return gathered


def gather_shards(items: Iterable[_T], mine: list[range], count: int,
                  shard_images: int) -> Iterator[tuple[int, list[_T]]]:
    """(start, items) of every shard of `count` images in order on rank 0, nothing on the other ranks: this rank's
    shards `mine` (my_shards) read from `items` in their order, the other ranks' gathered, one shard per rank at a
    time (rank 0 holds at most world_size shards). Every rank must consume the whole iterator."""
    items = iter(items)
    shards = len(range(0, count, shard_images))
    for turn in range(-(-shards // world_size())):
        shard = (mine[turn].start, [next(items) for _ in mine[turn]]) if turn < len(mine) else None
        for gathered in gather_to_main(shard):
            if gathered is not None:
                yield gathered


def sum_counts(counts: np.ndarray) -> np.ndarray:
    """An integer array summed over the ranks (as is for one process): e.g. confusion matrices."""
    if not active():
        return counts
    return _all_reduce(torch.from_numpy(np.ascontiguousarray(counts, dtype=np.int64))).numpy()


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of a CPU `tensor` over the ranks, on the CPU (through this process's GPU for nccl)."""
    moved = tensor.cuda() if dist.get_backend() == "nccl" else tensor.clone()
    dist.all_reduce(moved)
    return moved.cpu()

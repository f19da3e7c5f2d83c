"""Batches of per-sample Datasets for the epoch loop: the epoch plan of loop.epoch_batches as SampleKeys, read by a
DataLoader in-process or in worker processes with the same bytes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dgcn.data.crops import SampleKey
from dgcn.distributed import local_rows
from dgcn.training.loop import epoch_batches
from dgcn.workers import die_with_parent


class EpochSampler(Sampler[list[SampleKey]]):
    """The batches of epoch_batches(num_samples, batch_size, seed, epoch) as lists of SampleKeys, for a DataLoader's
    batch_sampler; set_epoch chooses the epoch (the sampler runs in the main process, so workers may persist). Under
    torchrun each rank reads its share of every batch (distributed.local_rows)."""

    def __init__(self, num_samples: int, batch_size: int, seed: int) -> None:
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for batch in epoch_batches(self.num_samples, self.batch_size, self.seed, self.epoch):
            yield local_rows([SampleKey(self.seed, self.epoch, int(i), bool(f))
                              for i, f in zip(batch.indices, batch.flips, strict=True)], len(batch.indices))

    def __len__(self) -> int:
        return self.num_samples // min(self.batch_size, self.num_samples)


class EpochLoader:
    """`loader(epoch)`: a DataLoader of `dataset` (indexed by SampleKey) over that epoch's batches.

    workers > 0 reads samples in that many persistent spawned processes, which die with this one (dgcn.workers:
    iterate from the main thread); the batches are the same bytes either way (each sample seeds its own randomness).
    The loader has its own generator, so it draws nothing from torch's global one.
    """

    def __init__(self, dataset: Dataset, *, batch_size: int, seed: int, workers: int = 0,
                 pin_memory: bool = False) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.sampler = EpochSampler(len(dataset), batch_size, seed)
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, num_workers=workers, pin_memory=pin_memory,
                                 persistent_workers=workers > 0, multiprocessing_context="spawn" if workers else None,
                                 worker_init_fn=partial(_worker_started, os.getpid()) if workers else None,
                                 generator=torch.Generator().manual_seed(seed))

    def __call__(self, epoch: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        return self.loader

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.sampler)


def _worker_started(parent: int, worker_id: int) -> None:
    """DataLoader worker_init_fn: the worker dies with process `parent`, which reads its batches."""
    die_with_parent(parent)


def network_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, 3, S, S) float batch -> on `device`, channels-last in memory: the layout of normalize() of (B, H, W, 3)
    images, in which the networks have always been fed, so convolutions run the same kernels (same bytes)."""
    return images.to(device, memory_format=torch.channels_last)

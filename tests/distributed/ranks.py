"""What each rank of tests/test_distributed.py's torchrun launch (CPU, gloo) does: one DGCN training step with
BatchNorm trained, its parameters before and after saved to <out>/rank<R>.pt, and one with `batchnorm: batch_stats`
(the published DGCN), saved to <out>/batch_stats<R>.pt with its BatchNorm buffers; then the stage commands that
follow, separated by `--` (e.g. `export ... -- crf ...`), in the same process group.

Usage: torchrun --nproc_per_node=2 tests/distributed/ranks.py <out folder> [<stage> <arguments>... [-- <stage> ...]]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from dgcn import distributed
from dgcn.data.augment import CropGeometry
from dgcn.models.registry import build_segmenter
from dgcn.supervision import SupervisionPool
from dgcn.training.dgcn import SGDSchedule, train_dgcn
from stages.app import app


def dgcn_step(path: Path, batchnorm: str) -> None:
    """One step of a tiny network on 4 random images, batch 4: 2 per rank; saved to `path`."""
    distributed.join(torch.device("cpu"))
    rng = np.random.default_rng(0)  # the same data on every rank; each trains on its rows of the batch
    images = [rng.integers(0, 256, (40, 36, 3), dtype=np.uint8) for _ in range(4)]
    cues = np.zeros((4, 3, 8, 8), np.uint8)
    cues[:, 0, :3], cues[:, 1, 5:], cues[2:, 2, 3:5] = 1, 1, 1
    labels = np.array([[1, 1, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1]], np.uint8)
    torch.manual_seed(distributed.rank())  # different initial weights: the replica must take rank 0's
    model = build_segmenter("small", 3, width=4)
    before = {name: value.detach().clone() for name, value in model.named_parameters()}
    buffers_before = {name: value.clone() for name, value in model.named_buffers()}
    schedule = SGDSchedule(lr=0.05, momentum=0.9, weight_decay=0.0, head_lr_mult=10.0, warmup_iters=1,
                           decay_every_epochs=1, decay_gamma=1.0)
    with SupervisionPool(workers=0) as pool:
        train_dgcn(model, images, cues, labels, pool, schedule, geometry=CropGeometry(32), epochs=1, batch_size=4,
                   seed=0, batchnorm=batchnorm)
    after = {name: value.detach().clone() for name, value in model.named_parameters()}
    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, _BatchNorm)]
    torch.save({"before": before, "after": after, "buffers_before": buffers_before,
                "buffers_after": dict(model.named_buffers()),
                "batchnorm": [f"{name}.{key}" for name, layer in layers for key, _ in layer.named_parameters()],
                "synced": any(isinstance(layer, torch.nn.SyncBatchNorm) for _, layer in layers)}, path)


def run_stages(args: list[str]) -> None:
    """Run each `--`-separated stage command of `args` in turn; exit with the status of the first that fails."""
    while args:
        command, args = (args[:args.index("--")], args[args.index("--") + 1:]) if "--" in args else (args, [])
        status = app(command, standalone_mode=False)
        if status:
            sys.exit(status)


if __name__ == "__main__":
    dgcn_step(Path(sys.argv[1]) / f"rank{distributed.rank()}.pt", "train")
    dgcn_step(Path(sys.argv[1]) / f"batch_stats{distributed.rank()}.pt", "batch_stats")
    run_stages(sys.argv[2:])

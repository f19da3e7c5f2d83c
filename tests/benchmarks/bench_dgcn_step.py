"""DGCN training step vs a plain cross-entropy step of the same model, batch and input.

The DGCN step adds the kNN graph, the per-class graph cuts and the training-time dense CRF (in worker processes) and
the seeding + constrain losses. Target: <= 1.3x the plain step. Two configurations: the embedded default (small net,
96x96, batch 16) and the published network (DeepLab-v2 ResNet-101, 321x321, 21 classes; batch 4 to keep it short on a
CPU). Both steps timed alike: one warm-up step each, then medians of repetitions taking turns.
Run: python tests/benchmarks/bench_dgcn_step.py
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from dgcn.losses import constrain_loss, seeding_loss, smoothed_softmax
from dgcn.models.registry import build_segmenter
from dgcn.supervision import SupervisionPool
from tools.dgcn_step import CRF, batch_inputs, supervision_work
from tools.timing import median_times, verdict


def measure(arch: str, num_classes: int, batch: int, size: int, repeats: int) -> bool:
    """Time both steps on the same model, batch and input; print the figures and the verdict."""
    torch.manual_seed(0)
    model = build_segmenter(arch, num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    grid = -(-size // model.output_stride)
    x, labels, cues, classes, small = batch_inputs(np.random.default_rng(0), batch, size, grid, num_classes)

    def plain_step() -> None:
        loss = F.cross_entropy(model(x).scores, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with SupervisionPool(workers=2, crf_params=CRF) as pool:

        def dgcn_step() -> None:
            out = model(x)
            probs = smoothed_softmax(out.scores)
            pending = pool.submit(out.features.detach(), probs.detach(), cues, classes, small)
            supervision, crf_probs = pending.result()
            loss = seeding_loss(probs, supervision) + constrain_loss(probs, crf_probs)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        # The warm-up step also makes the workers import their libraries.
        times = median_times({"plain": plain_step, "dgcn": dgcn_step}, repeats)
        plain, dgcn = times["plain"], times["dgcn"]
    work = supervision_work(model, x, cues, classes, small, repeats)
    cores = len(os.sched_getaffinity(0))
    print(f"{arch}: batch {batch}, {size}x{size} input, {grid}x{grid} grid, {num_classes} classes, "
          f"torch threads {torch.get_num_threads()}, {cores} cores")
    print(f"  medians of {repeats} steps each after one warm-up step, taking turns")
    print(f"  plain cross-entropy step: {1000 * plain:.1f} ms; DGCN step (kNN + graph cuts + CRF + losses): "
          f"{1000 * dgcn:.1f} ms")
    total = sum(work.values())
    print(f"  supervision work per batch, in this process: kNN {1000 * work['knn']:.1f} ms, graph cuts "
          f"{1000 * work['cuts']:.1f} ms, CRFs {1000 * work['crf']:.1f} ms; at least {1000 * total:.1f} core-ms "
          f"that the network must wait for, so no schedule on {cores} cores beats {1 + total / cores / plain:.2f}x")
    return verdict(f"  {arch} DGCN step / plain step", dgcn / plain, 1.3, at_least=False)


def main() -> None:
    measure("small", 6, batch=16, size=96, repeats=15)
    measure("deeplab_v2", 21, batch=4, size=321, repeats=3)


if __name__ == "__main__":
    main()

"""Learning-rate schedules as multipliers of the base rate, per iteration."""

from __future__ import annotations


def warmup_step_decay(iteration: int, *, warmup_iters: int, iters_per_epoch: int, decay_every_epochs: int,
                      gamma: float) -> float:
    """Linear warm-up over `warmup_iters`, then x`gamma` every `decay_every_epochs` epochs (the DGCN schedule)."""
    warm = min(1.0, (iteration + 1) / warmup_iters) if warmup_iters > 0 else 1.0
    epoch = iteration // max(1, iters_per_epoch)
    return warm * gamma ** (epoch // decay_every_epochs)


def poly(iteration: int, *, total_iters: int, power: float = 0.9) -> float:
    """DeepLab's poly schedule: (1 - iteration / total_iters) ** power, 0 from total_iters on."""
    return (1.0 - min(iteration, total_iters) / total_iters) ** power

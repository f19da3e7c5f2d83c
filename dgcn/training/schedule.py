"""Learning-rate schedules as multipliers of the base rate, per iteration."""

from __future__ import annotations


def warmup_step_decay(iteration: int, *, warmup_iters: int, iters_per_epoch: int, decay_every_epochs: int,
                      gamma: float) -> float:
    """Linear warm-up over `warmup_iters`, then x`gamma` every `decay_every_epochs` epochs (the DGCN schedule)."""
    warm = min(1.0, (iteration + 1) / warmup_iters) if warmup_iters > 0 else 1.0
    epoch = iteration // max(1, iters_per_epoch)
    return warm * gamma ** (epoch // decay_every_epochs)

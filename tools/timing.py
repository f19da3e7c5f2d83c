"""Timing and PASS/FAIL printing shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

_Name = TypeVar("_Name", bound=Hashable)


def median_times(runs: Mapping[_Name, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[_Name, float]:
    """Median wall seconds per call of each of `runs`: `warmup` untimed calls of each, then `repeats` timed calls of
    each, taking turns (a, b, a, b, ...) so that a change of load on the machine hits every side alike."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[_Name, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def verdict(name: str, ratio: float, target: float, at_least: bool = True) -> bool:
    """Print `name: ratio (target)` with PASS/FAIL and return whether it passed."""
    passed = ratio >= target if at_least else ratio <= target
    sign = ">=" if at_least else "<="
    print(f"{name}: {ratio:.2f}x (target {sign} {target}x) {'PASS' if passed else 'FAIL'}")
    return passed

"""Timing and PASS/FAIL printing shared by the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time(run: Callable[[], object], repeats: int = 5) -> float:
    """Fastest wall time in seconds of `repeats` calls (the least disturbed by other load on the machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def verdict(name: str, ratio: float, target: float, at_least: bool = True) -> bool:
    """Print `name: ratio (target)` with PASS/FAIL and return whether it passed."""
    passed = ratio >= target if at_least else ratio <= target
    sign = ">=" if at_least else "<="
    print(f"{name}: {ratio:.2f}x (target {sign} {target}x) {'PASS' if passed else 'FAIL'}")
    return passed

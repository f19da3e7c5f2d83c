"""kNN graph of a half-constant map: the published rule with every tie kept vs ties capped at max_neighbours.

41x41 grid, 1280-d features, k = 10; the bottom 21 rows are zero, as zero padding of a crop leaves them, so every
node's k-th distance ties with all 861 zero nodes. max_neighbours = n - 1 lifts the cap (every tie kept, as before the
cap existed); the default caps each node at MAX_NEIGHBOURS_PER_K * k. Both timed alike: one warm-up call each, then
medians of 3 calls taking turns (every tie kept: ~20 s a call). Run: python tests/benchmarks/bench_knn_ties.py
"""

from __future__ import annotations

import torch

from dgcn.graphcut import MAX_NEIGHBOURS_PER_K, knn_edges
from tools.timing import median_times, verdict

GRID, DIM, K = 41, 1280, 10
REPEATS, WARMUP = 3, 1


def main() -> None:
    torch.set_num_threads(1)
    features = torch.randn(DIM, GRID, GRID, generator=torch.Generator().manual_seed(0))
    features[:, GRID // 2 :] = 0.0
    n = GRID * GRID
    times = median_times({"every": lambda: knn_edges(features, K, max_neighbours=n - 1),
                          "capped": lambda: knn_edges(features, K)}, REPEATS, WARMUP)
    every_tie, capped = times["every"], times["capped"]
    pairs_every = len(knn_edges(features, K, max_neighbours=n - 1)[0])
    pairs_capped = len(knn_edges(features, K)[0])
    print(f"half-constant {GRID}x{GRID}, {DIM}-d, k={K} (CPU, 1 thread; medians of {REPEATS} calls after {WARMUP} "
          f"warm-up): every tie kept {pairs_every} pairs in {every_tie:.2f} s; capped at {MAX_NEIGHBOURS_PER_K}k: "
          f"{pairs_capped} pairs in {capped:.2f} s")
    passed = pairs_capped <= MAX_NEIGHBOURS_PER_K * K * n
    print(f"pairs <= {MAX_NEIGHBOURS_PER_K}k n: {'PASS' if passed else 'FAIL'}")
    passed &= verdict("speed-up from the cap", every_tie / capped, 5.0)
    if not passed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

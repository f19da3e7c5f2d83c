"""A killed stage leaves no worker process behind: SIGKILL (workers die with their parent), SIGTERM (clean exit)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A stand-in for a stage at work: the three kinds of pools a stage runs (graph cut, CRF, data loading), each busy.
STAGE = '''
import itertools, sys, time
import numpy as np, torch
from dgcn.crf import iter_dense_crf
from dgcn.supervision import SupervisionPool
from dgcn.training.loader import EpochLoader
from stages.app import sigterm_exits


class Samples(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, key):
        return torch.zeros(3)


def main():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    probs = np.full((2, 20, 20), 0.5, np.float32)
    features = torch.from_numpy(rng.normal(size=(2, 4, 6, 6)).astype(np.float32))
    cue = np.zeros((2, 2, 6, 6), np.uint8)
    cue[:, 0, 0, 0] = cue[:, 1, 5, 5] = 1
    with sigterm_exits(), SupervisionPool(workers=1) as pool:
        crf = iter_dense_crf(itertools.repeat(image), itertools.repeat(probs), workers=1)
        loader = iter(EpochLoader(Samples(), batch_size=2, seed=0, workers=1)(0))
        next(crf), next(loader), pool.grow(features, np.full((2, 2, 6, 6), 0.5), cue, [[0, 1]] * 2).result()
        print("ready", flush=True)
        while True:
            next(crf)
            pool.grow(features, np.full((2, 2, 6, 6), 0.5), cue, [[0, 1]] * 2).result()


if __name__ == "__main__":
    main()
'''


def descendants(pid: int) -> set[int]:
    """The live processes below `pid`, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {p for p in found if alive(p)}


def alive(pid: int) -> bool:
    """Whether `pid` runs: a zombie (ended, not yet reaped by whoever adopted it) does not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in "ZXx"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 143)])
def test_killed_stage_leaves_no_worker(tmp_path: Path, signum: int, status: int) -> None:
    script = tmp_path / "stage.py"
    script.write_text(STAGE)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    stage = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert stage.stdout.readline() == "ready\n"
        workers = descendants(stage.pid)
        assert len(workers) >= 3  # graph cut, CRF, loader (and multiprocessing's resource tracker)
        stage.send_signal(signum)
        assert stage.wait(timeout=30) == status  # SIGTERM: SystemExit, so the pools were shut down
        deadline = time.monotonic() + 5
        while any(map(alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not {pid for pid in workers if alive(pid)}
    finally:
        if stage.poll() is None:
            stage.kill()

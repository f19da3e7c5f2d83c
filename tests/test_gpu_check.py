"""The GPU check's CPU mode: the same code as on CUDA (every stage on the vendored photos, the DGCN and plain steps, kNN
edges on the device against the CPU, the projection) at small sizes, ending with its one-line summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # every stage in a subprocess


def test_the_cpu_mode_runs_every_stage_and_ends_with_its_summary() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    result = subprocess.run([sys.executable, "-m", "tools.gpu_check", "--cpu"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("gpu-check CPU: 8/8 stages ok, kNN cpu==cpu True, DGCN/plain "), last
    assert "img/s" in last and "recipe" in last and last.endswith(": PASS"), last

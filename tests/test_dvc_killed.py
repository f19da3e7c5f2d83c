"""A stage ends with the `dvc repro` that runs it: killed (SIGKILL) or stopped (SIGTERM), dvc leaves no stage behind
to publish an output that dvc.lock does not record, whichever shell DVC runs the command through."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dvc_project import make_project
from test_workers import alive, descendants

# A data set big enough that its generation runs for minutes: the stage is still at work when dvc is killed.
CONFIGS = {"synthetic": {"synthesize": {"num_train": 100000}}}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("killed"), ["synthetic"], CONFIGS)


def started(root: Path, dvc: subprocess.Popen, timeout: float = 120) -> int:
    """The pid of the synthesize stage that `dvc` runs, once it has begun writing its output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert dvc.poll() is None, dvc.communicate()
        if list((root / "data").glob("synthetic.tmp-*")):
            stages = [pid for pid in descendants(dvc.pid)
                      if b"stages\0synthesize" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            if stages:
                return stages[0]
        time.sleep(0.1)
    raise AssertionError("the synthesize stage did not start")


@pytest.fixture
def leftovers() -> Iterator[set[int]]:
    """Processes a test watches: killed at its end if they still run."""
    pids: set[int] = set()
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.alone
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
@pytest.mark.parametrize("shell", ["/bin/bash", "/bin/sh"])  # bash execs the command; dash stays between
def test_stage_ends_with_its_dvc_repro(project: Path, signum: int, shell: str, leftovers: set[int]) -> None:
    if not Path(shell).exists():
        pytest.skip(f"no {shell}")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "SHELL": shell,
           "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    dvc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "synthesize@synthetic"], cwd=project, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    leftovers.add(dvc.pid)
    stage = started(project, dvc)
    leftovers.update(descendants(dvc.pid))
    dvc.send_signal(signum)
    dvc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while any(map(alive, leftovers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(stage), "the stage outlived its dvc"
    assert not {pid for pid in leftovers if alive(pid)}
    # it unwound (SIGTERM): nothing published, its temporary output, its lock and the folder made for them gone
    assert not (project / "data").exists()
    assert not (project / "dvc.lock").exists()

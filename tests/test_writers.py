"""One writer per output folder: a second run on the same `--out` stops at once with one line naming the first, which
publishes intact; what killed runs leave beside or inside an output (staging folders, temporaries, the lock file) is
cleared by the next run."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from stage_chain import invoke, write_config, write_generic
from typer.testing import CliRunner

from dgcn.storage import atomic_output, staged_directory
from dgcn.storage.atomic import output_lock
from stages.app import app

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}

# A stage run that stops itself (SIGSTOP) just before it swaps its full staging folder in for its output folder.
PAUSED_BEFORE_PUBLISHING = """
import os, signal, sys
from pathlib import Path
import dgcn.storage.atomic as atomic
from stages.app import app

replace = atomic._replace


def paused(source, target):
    if Path(source).name.startswith("."):  # the staging folder, not a file inside it
        print("publishing", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
    replace(source, target)


atomic._replace = paused
app(sys.argv[1:], prog_name="stages")
"""

# A writer killed inside its staged output: it has written part of its files, holds the lock, and waits.
KILLED_WHILE_STAGING = """
import sys, time
from dgcn.storage import atomic_output, staged_directory

with staged_directory(sys.argv[1]) as folder:
    with atomic_output(folder / "labels.zarr") as temporary:
        temporary.mkdir()
        (temporary / "half").write_text("half")
        print("writing", flush=True)
        time.sleep(600)
"""


def prepare_args(out: str) -> list[str]:
    """prepare's arguments for the small data set of `own_data` (in the current folder), into `out`."""
    return ["prepare", "--config", "own.yaml", "--defaults", str(REPO / "params.yaml"), "--root", "data", "--out", out]


def prepare(out: str, launcher: str) -> subprocess.Popen:
    """prepare into `out` through the script `launcher`, in its own process."""
    return subprocess.Popen([sys.executable, launcher, *prepare_args(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts: killed at its end if they still run (a stopped one too)."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_second_writer_stops_with_one_line_and_the_first_publishes_intact(
        tmp_path: Path, stopped: list[subprocess.Popen], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes on one --out (a stage in a process of its own, and one in this process), the second started
    while the first is about to publish."""
    monkeypatch.chdir(tmp_path)
    write_generic(tmp_path / "data", 6)
    write_config(tmp_path / "own.yaml", {"prepare": {"format": "generic"}})
    (tmp_path / "first.py").write_text(PAUSED_BEFORE_PUBLISHING)
    first = prepare("a/prepare", str(tmp_path / "first.py"))
    stopped.append(first)
    assert first.stdout.readline() == "publishing\n", first.stderr.read()
    staging = {path.name: files(path) for path in Path("a").glob(".prepare.staging-*")}
    second = CliRunner().invoke(app, prepare_args("a/prepare"))  # this process: a second writer
    assert second.exit_code == 1 and second.output.startswith(
        f"error: a/prepare: another run is writing this output (pid {first.pid} on {socket.gethostname()}, started 20")
    assert second.output.endswith("); wait for it to end or stop it\n") and len(second.output.splitlines()) == 1
    # the first run's staged outputs are untouched and nothing was published by the second
    assert {path.name: files(path) for path in Path("a").glob(".prepare.staging-*")} == staging != {}
    assert not Path("a/prepare").exists()
    first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=120) == 0, first.stderr.read()
    invoke(*prepare_args("b/prepare"))  # a run alone
    assert files(Path("a/prepare")) == files(Path("b/prepare"))
    assert sorted(os.listdir("a")) == ["prepare"]  # no staging folder, no lock file


def test_a_killed_writer_leaves_nothing_that_blocks_or_stays(tmp_path: Path, stopped: list[subprocess.Popen]) -> None:
    target = tmp_path / "export"
    target.mkdir()
    (target / "old.txt").write_text("old")
    (tmp_path / "writer.py").write_text(KILLED_WHILE_STAGING)
    writer = subprocess.Popen([sys.executable, str(tmp_path / "writer.py"), str(target)], stdout=subprocess.PIPE,
                              text=True, env=ENV)
    stopped.append(writer)
    assert writer.stdout.readline() == "writing\n"
    with pytest.raises(BlockingIOError, match=rf"another run is writing this output \(pid {writer.pid} on "), \
            staged_directory(target):
        pass
    writer.kill()
    writer.wait()
    left = sorted(path.name for path in tmp_path.iterdir())
    assert ".export.lock" in left and any(name.startswith(".export.staging-") for name in left)
    with staged_directory(target) as folder:  # the kernel released the dead writer's lock
        (folder / "new.txt").write_text("new")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["export", "writer.py"]
    assert sorted(path.name for path in target.iterdir()) == ["new.txt", "old.txt"]


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def test_temporaries_of_dead_runs_are_cleared_and_live_ones_kept(tmp_path: Path) -> None:
    host = socket.gethostname().replace(".", "_")[:40]
    dead, live = dead_pid(), os.getppid()
    for name in (f"labels.tmp-{dead}-{host}.zarr", f"labels.old-{dead}-{host}.zarr", f"labels.tmp-{live}-{host}.zarr",
                 f"labels.tmp-{dead}-otherhost.zarr", f"other.tmp-{dead}-{host}.zarr"):
        (tmp_path / name).mkdir()
    with atomic_output(tmp_path / "labels.zarr") as temporary:
        temporary.mkdir()
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([
        "labels.zarr", f"labels.tmp-{live}-{host}.zarr",  # a live run's
        f"labels.tmp-{dead}-otherhost.zarr",  # another host's: its pid says nothing here
        f"other.tmp-{dead}-{host}.zarr"])  # another output's, cleared when that one is written


def test_a_swap_killed_half_way_is_undone(tmp_path: Path) -> None:
    """A run killed between parking the old output and moving the new one in: the next run puts the old one back
    before it writes (and keeps it if it fails)."""
    parked = tmp_path / f"labels.old-{dead_pid()}-{socket.gethostname().replace('.', '_')[:40]}.zarr"
    parked.mkdir()
    (parked / "old").write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_output(tmp_path / "labels.zarr") as temporary:
        temporary.mkdir()
        raise RuntimeError("boom")
    assert [path.name for path in tmp_path.iterdir()] == ["labels.zarr"]
    assert (tmp_path / "labels.zarr/old").read_text() == "old"


def test_temporaries_left_inside_an_output_are_not_carried_over(tmp_path: Path) -> None:
    """What the unlocked code of before left inside a published folder (a concurrent run's temporary store, its
    staging folder) is dropped at the next publishing; what DVC put there is kept."""
    target = tmp_path / "export"
    for name in ("evidence.tmp-4242.zarr", ".evidence.zarr.staging", "labels.old-17-host.zarr"):
        (target / name).mkdir(parents=True)
    (target / ".gitignore").write_text("/evidence.zarr\n")
    with staged_directory(target) as folder:
        (folder / "evidence.zarr").mkdir()
    assert sorted(path.name for path in target.iterdir()) == [".gitignore", "evidence.zarr"]


def test_the_lock_is_reentrant_and_leaves_no_trace(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "stage"
    with output_lock(target):
        assert (tmp_path / "new/deeper/.stage.lock").is_file()
        with staged_directory(target) as folder:  # the stage publishing under the lock its command holds
            (folder / "metrics.json").write_text("{}")
        assert (target / "metrics.json").is_file()
    assert sorted(path.name for path in target.parent.iterdir()) == ["stage"]
    shutil.rmtree(tmp_path / "new")
    with output_lock(target):  # a run that fails before writing: the folders it made for its lock go again
        pass
    assert list(tmp_path.iterdir()) == []

"""Worker processes that never outlive the process that started them.

A stage killed with SIGKILL cannot stop its pool, and one ended by SIGTERM's default action does not either: without
help, its workers are reparented to PID 1 and keep computing (and holding memory) for nobody. Each worker therefore
asks the kernel for SIGKILL when its parent dies (Linux prctl PR_SET_PDEATHSIG); where that is not available, a
daemon thread polls the parent pid instead (slower: it runs only between the GIL-holding maxflow and CRF calls).
A stage itself asks the same for SIGTERM when the `dvc` process that runs it dies (end_with, from stages.runtime).
"""

from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCH_INTERVAL_S = 0.2


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` spawned processes that die with this one.

    The kernel ties the death signal to the thread that starts a worker, and the pool starts them on submit: submit
    from a thread that outlives the pool (the main thread does).
    """
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=die_with_parent, initargs=(os.getpid(),))


def die_with_parent(parent: int) -> None:
    """Make this process end when process `parent` (its parent) ends, however that one ends."""
    end_with([parent], signal.SIGKILL)


def end_with(lineage: Sequence[int], signum: int) -> None:
    """Send this process `signum` as soon as a process of `lineage` ends: lineage[0] is its parent, each next pid the
    parent of the one before. (A process whose parent ends is handed to another one: a changed parent is an ended one.)

    The kernel watches the parent where it can (Linux prctl); a daemon thread polls the rest of the lineage (from
    /proc), and the parent too elsewhere. A process of `lineage` that ended before the watch began counts at once.
    """
    armed = _parent_death_signal(signum)
    if not armed or len(lineage) > 1:
        threading.Thread(target=_watch, args=(list(lineage), signum), name="watch-lineage", daemon=True).start()
    if not _intact(lineage):
        os.kill(os.getpid(), signum)


def parent_of(pid: int) -> int | None:
    """The parent pid of process `pid` (Linux /proc); None where it cannot be read (ended, or no /proc)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _intact(lineage: Sequence[int]) -> bool:
    """Whether every process of `lineage` still has the parent it had (the first being this process's parent)."""
    return os.getppid() == lineage[0] and all(parent_of(child) == parent
                                              for child, parent in itertools.pairwise(lineage))


def _parent_death_signal(signum: int) -> bool:
    """Ask Linux to send this process `signum` when its parent dies; False where that cannot be asked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(lineage: list[int], signum: int) -> None:
    """Poll `lineage`; once a process of it has ended, send `signum` to this process (SIGKILL for a worker: nobody
    awaits its work; SIGTERM for a stage, which then unwinds)."""
    while _intact(lineage):
        time.sleep(WATCH_INTERVAL_S)
    os.kill(os.getpid(), signum)

"""Worker processes that never outlive the process that started them.

A stage killed with SIGKILL cannot stop its pool, and one ended by SIGTERM's default action does not either: without
help, its workers are reparented to PID 1 and keep computing (and holding memory) for nobody. Each worker therefore
asks the kernel for SIGKILL when its parent dies (Linux prctl PR_SET_PDEATHSIG); where that is not available, a
daemon thread polls the parent pid instead (slower: it runs only between the GIL-holding maxflow and CRF calls).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

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
    if not _parent_death_signal():
        threading.Thread(target=_watch_parent, args=(parent,), name="watch-parent", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where that cannot be asked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    """Poll the parent pid; once the process is reparented, end it at once (no cleanup: nobody awaits its work)."""
    while os.getppid() == parent:
        time.sleep(WATCH_INTERVAL_S)
    os._exit(1)

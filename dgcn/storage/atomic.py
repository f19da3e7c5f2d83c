"""Publish a file or directory atomically: write to a sibling temporary path, then rename over the target; one
writer per output folder (a lock file beside it)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from dgcn.errors import InputError

# This host in temporary names, so that a run never takes a live run of another host (same NFS folder) for dead.
_HOST = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname())[:40] or "host"
# The output locks this process holds (absolute lock-file path -> descriptor): a stage that holds the lock of its
# output folder publishes into it through staged_directory, which takes the same lock again.
_HELD: dict[str, int] = {}


def _remove(path: Path) -> None:
    """Delete a file, symlink or directory tree if it exists."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _name_the_file(error: BaseException, written: Path, shown: Path) -> None:
    """Make an OSError or InputError of a write under `written` name its file as under `shown` (the path the user
    knows).

    A write that fails part-way (ENOSPC, EIO) raises an OSError that names no file; one inside a staging path names
    that hidden path, and so does an InputError of a writer that refuses its content (a diverged network). Changed in
    place, so the type (PermissionError, ...) and the traceback stay.
    """
    if isinstance(error, InputError) and len(error.args) == 1 and isinstance(error.args[0], str):
        error.args = (error.args[0].replace(str(written), str(shown)),)
    if not isinstance(error, OSError) or not error.strerror:
        return
    if error.filename is None:
        error.filename = str(shown)
    elif str(error.filename).startswith(str(written)):
        error.filename = str(shown) + str(error.filename)[len(str(written)):]


def _replace(source: Path, target: Path) -> None:
    """Move `source` onto `target`, replacing whatever `target` is (file, directory or symlink)."""
    if not os.path.lexists(target) or not (target.is_dir() or source.is_dir()):
        os.replace(source, target)
        return
    # os.replace cannot overwrite a non-empty directory: park the old one, swap, then delete it.
    backup = _own_temporary(target, "old")
    _remove(backup)
    os.replace(target, backup)
    try:
        os.replace(source, target)
    except BaseException:
        os.replace(backup, target)
        raise
    _remove(backup)


def _own_temporary(target: Path, kind: str) -> Path:
    """This process's `kind` ("tmp": being written, "old": parked) sibling of `target`, with `target`'s suffix."""
    return target.with_name(f"{target.stem}.{kind}-{os.getpid()}-{_HOST}{target.suffix}")


def _alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (a pid of another user's process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _clear_dead_temporaries(target: Path) -> None:
    """Delete the "tmp" and "old" siblings of `target` that runs of this host left when killed (their pid is gone);
    an "old" one where `target` is missing (a run killed between the two renames of _replace) is put back first."""
    pattern = re.compile(rf"{re.escape(target.stem)}\.(tmp|old)-(\d+)-{_HOST}{re.escape(target.suffix)}")
    for entry in sorted(target.parent.iterdir()):
        match = pattern.fullmatch(entry.name)
        if not match or _alive(int(match[2])):
            continue
        if match[1] == "old" and not os.path.lexists(target):
            os.replace(entry, target)
        else:
            _remove(entry)


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move what was written there onto `path`.

    The caller creates a file or a directory at the yielded path. The temporary name keeps `path`'s suffix
    (`labels.zarr` -> `labels.tmp-<pid>-<host>.zarr`) because some writers choose the format from it. An existing
    `path` is replaced; if the block raises, the temporary path is deleted and `path` is left as it was. Missing
    parent directories are created. Temporaries of `path` left by killed runs of this host are deleted first.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clear_dead_temporaries(target)
    temporary = _own_temporary(target, "tmp")
    _remove(temporary)
    try:
        yield temporary
        if not os.path.lexists(temporary):
            raise FileNotFoundError(f"atomic_output({target}): nothing was written to the temporary path {temporary}")
        _replace(temporary, target)
    except BaseException as error:
        _remove(temporary)
        _name_the_file(error, temporary, target)
        raise


def _link(source: str | os.PathLike[str], destination: str | os.PathLike[str]) -> None:
    """Hard-link `source` (a symlink stays a symlink) at `destination`; a copy where the file system links nothing."""
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, destination, follow_symlinks=False)


# The temporaries of atomic_output and staged_directory (this code's names and those before hosts were named).
_LEFTOVER = re.compile(r"\..+\.staging(?:-.+)?|.+\.(?:tmp|old)-\d+(?:-[A-Za-z0-9_-]+)?(?:\.[^.]+)?")


def _keep_others(target: Path, staging: Path) -> None:
    """Link each entry of the folder `target` that `staging` lacks into `staging`, so the swap keeps it; temporaries
    that a killed or concurrent run left inside `target` are dropped."""
    for entry in sorted(target.iterdir()):
        kept = staging / entry.name
        if os.path.lexists(kept) or _LEFTOVER.fullmatch(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, kept, symlinks=True, copy_function=_link)
        else:
            _link(entry, kept)


def _lock_file(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def _holder(descriptor: int) -> str:
    """Who holds a lock, from what it wrote into the lock file: `pid 12 on host, started 2025-01-02 03:04:05`."""
    try:
        held = json.loads(os.pread(descriptor, 4096, 0))
        return f"pid {held['pid']} on {held['host']}, started {held['started']}"
    except (OSError, ValueError, KeyError, TypeError):  # written a moment later, or not by this code
        return "a process that has not said who it is yet"


def _acquire(lock: Path, shown: Path) -> int:
    """Lock the file `lock` (created if missing) and write who holds it; its descriptor. BlockingIOError naming
    `shown` and the holder when another process holds it."""
    while True:
        try:
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:  # a read-only folder: say which output cannot be written
            _name_the_file(error, lock, shown)
            raise
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(descriptor)
            os.close(descriptor)
            raise BlockingIOError(errno.EWOULDBLOCK, f"another run is writing this output ({holder}); wait for it to "
                                  "end or stop it", str(shown)) from None
        # The holder before us deletes the file before unlocking: lock the file that is there now, not its ghost.
        with suppress(FileNotFoundError):
            if os.stat(lock).st_ino == os.fstat(descriptor).st_ino:
                break
        os.close(descriptor)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}).encode(),
              0)
    return descriptor


def _missing_parents(folder: Path) -> list[Path]:
    """`folder` and its ancestors that do not exist, deepest first."""
    return [path for path in (folder, *folder.parents) if not path.exists()]


@contextmanager
def output_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the one-writer lock of the output `path` (a file or folder) for the block: a file `.<name>.lock` beside
    it, locked with flock and naming its holder (pid, host, start time).

    Another process that asks for the lock meanwhile gets a BlockingIOError at once, naming `path` and the holder (it
    does not wait: a second run of the same stage would redo the same work). The kernel releases the lock of a killed
    process, so a lock file left behind holds nothing. Re-entering a lock this process holds changes nothing. Parent
    folders that the lock had to create are removed again if they are still empty at the end.
    """
    target = Path(path)
    lock = _lock_file(target)
    key = os.path.abspath(lock)
    if key in _HELD:
        yield
        return
    created = _missing_parents(lock.parent)
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        _HELD[key] = _acquire(lock, target)
        try:
            yield
        finally:
            # Delete before unlocking, so that whoever opened this file meanwhile sees it gone and opens the new one.
            lock.unlink(missing_ok=True)
            os.close(_HELD.pop(key))
    finally:
        for folder in created:
            with suppress(OSError):  # not empty: the stage wrote into it
                folder.rmdir()


@contextmanager
def staged_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging folder beside the folder `path` for everything a stage writes; on success publish it
    as `path` in one swap of folders, keeping the entries of the old `path` that the stage did not write (DVC's
    .gitignore, say; hard-linked, not copied).

    So a stage's outputs appear together or not at all: one that fails part-way, or whose publishing fails, leaves
    `path` as it was. The whole block holds the lock of `path` (output_lock: a second writer fails at once), so the
    staging folder (`.<name>.staging-<pid>-<host>`) is the only live one: any other, and temporaries of `path` whose
    run is dead, are leftovers of killed runs and are deleted first. The staging folder is removed either way.
    """
    target = Path(path)
    with output_lock(target):
        _clear_dead_temporaries(target)
        for entry in target.parent.iterdir():
            if entry.name == f".{target.name}.staging" or entry.name.startswith(f".{target.name}.staging-"):
                _remove(entry)
        staging = target.with_name(f".{target.name}.staging-{os.getpid()}-{_HOST}")
        try:
            staging.mkdir()
            yield staging
            if target.is_dir():
                _keep_others(target, staging)
            _replace(staging, target)
        except BaseException as error:
            _name_the_file(error, staging, target)
            raise
        finally:
            _remove(staging)

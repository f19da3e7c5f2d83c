"""Publish a file or directory atomically: write to a sibling temporary path, then rename over the target."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _remove(path: Path) -> None:
    """Delete a file, symlink or directory tree if it exists."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _name_the_file(error: BaseException, written: Path, shown: Path) -> None:
    """Make an OSError of a write under `written` name its file as under `shown` (the path the user knows).

    A write that fails part-way (ENOSPC, EIO) raises an OSError that names no file; one inside a staging path names
    that hidden path. Changed in place, so the type (PermissionError, ...) and the traceback stay.
    """
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
    backup = target.with_name(f"{target.stem}.old-{os.getpid()}{target.suffix}")
    _remove(backup)
    os.replace(target, backup)
    try:
        os.replace(source, target)
    except BaseException:
        os.replace(backup, target)
        raise
    _remove(backup)


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move what was written there onto `path`.

    The caller creates a file or a directory at the yielded path. The temporary name keeps `path`'s suffix
    (`labels.zarr` -> `labels.tmp-<pid>.zarr`) because some writers choose the format from it. An existing `path`
    is replaced; if the block raises, the temporary path is deleted and `path` is left as it was. Missing parent
    directories are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f"{target.stem}.tmp-{os.getpid()}{target.suffix}")
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


def _keep_others(target: Path, staging: Path) -> None:
    """Link each entry of the folder `target` that `staging` lacks into `staging`, so the swap keeps it."""
    for entry in sorted(target.iterdir()):
        kept = staging / entry.name
        if os.path.lexists(kept):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, kept, symlinks=True, copy_function=_link)
        else:
            _link(entry, kept)


@contextmanager
def staged_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging folder beside the folder `path` for everything a stage writes; on success publish it
    as `path` in one swap of folders, keeping the entries of the old `path` that the stage did not write (DVC's
    .gitignore, say; hard-linked, not copied).

    So a stage's outputs appear together or not at all: one that fails part-way, or whose publishing fails, leaves
    `path` as it was. The staging folder (`.<name>.staging`) is removed either way; one left by a killed run is
    cleared on the next start.
    """
    target = Path(path)
    staging = target.with_name(f".{target.name}.staging")
    try:
        _remove(staging)
        staging.mkdir(parents=True)
        yield staging
        if target.is_dir():
            _keep_others(target, staging)
        _replace(staging, target)
    except BaseException as error:
        _name_the_file(error, staging, target)
        raise
    finally:
        _remove(staging)

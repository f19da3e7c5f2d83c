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


@contextmanager
def staged_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging folder beside the folder `path` for everything a stage writes; on success move each
    entry of it into `path` (replacing entries of the same name, keeping the others).

    So a stage that fails part-way publishes none of its outputs, not just no half-written file. The staging folder
    (`.<name>.staging`) is removed either way; one left by a killed run is cleared on the next start.
    """
    target = Path(path)
    staging = target.with_name(f".{target.name}.staging")
    try:
        _remove(staging)
        staging.mkdir(parents=True)
        yield staging
        target.mkdir(parents=True, exist_ok=True)
        for entry in sorted(staging.iterdir()):
            _replace(entry, target / entry.name)
    except BaseException as error:
        _name_the_file(error, staging, target)
        raise
    finally:
        _remove(staging)

"""Progress of long loops that reads well both live and in a log file.

On a terminal a loop shows a tqdm bar that clears itself when done. Anywhere else (a `make demo` log, CI, DVC's
captured output) a bar would be written as carriage-return updates, hundreds of KB of them with no line surviving, so
a loop prints one line when it ends instead. TQDM_DISABLE, read as tqdm reads it (any non-empty value), silences both.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeVar

from tqdm import tqdm

_T = TypeVar("_T")


def _on_terminal() -> bool:
    """Whether stderr (looked up now: pytest and callers may swap it) is an interactive terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty())


def _disabled() -> bool:
    """Whether TQDM_DISABLE asks for silence; tqdm casts the variable with bool(), so "0" disables too."""
    return bool(os.environ.get("TQDM_DISABLE", ""))


def log_line(text: str) -> None:
    """Write `text` as one line on stderr now; on a terminal through tqdm.write, so a live bar is redrawn below the
    line instead of being broken by it."""
    if _on_terminal():
        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)


class Progress(Generic[_T]):
    """An iterable over `iterable` that reports its progress (see `progress`); iterate it once."""

    def __init__(self, iterable: Iterable[_T], desc: str, total: int | None = None, *, summary: bool = True) -> None:
        self._iterable = iterable
        self.desc = desc
        self.total = total
        self.summary = summary
        self._bar: tqdm | None = None

    def __iter__(self) -> Iterator[_T]:
        if _disabled():
            yield from self._iterable
        elif _on_terminal():
            with tqdm(self._iterable, desc=self.desc, total=self.total, leave=False, file=sys.stderr) as bar:
                self._bar = bar
                yield from bar
            self._bar = None
        else:
            start = time.perf_counter()
            count = 0
            for item in self._iterable:
                yield item
                count += 1
            # Only a loop that ran to its end reports: a generator abandoned part-way cannot tell a break from an error.
            if self.summary:
                log_line(f"{self.desc}: {count} done in {time.perf_counter() - start:.1f} s")

    def set_postfix(self, values: Mapping[str, object]) -> None:
        """Show `values` after the live bar (e.g. the last step's losses); does nothing without a bar."""
        if self._bar is not None:
            self._bar.set_postfix(values)


def progress(iterable: Iterable[_T], desc: str, total: int | None = None, *, summary: bool = True) -> Progress[_T]:
    """Iterate `iterable` with progress: a tqdm bar (leave=False) on a terminal; otherwise no bar and, when the loop
    has run to its end, one line `<desc>: <n> done in <s> s` on stderr (summary=False drops that line, for callers
    that log a line of their own). total: the length shown by the bar when the iterable has no len().
    """
    return Progress(iterable, desc, total, summary=summary)

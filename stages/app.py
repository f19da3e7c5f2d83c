"""The Typer root: `python -m stages --help` lists every pipeline stage."""

from __future__ import annotations

import functools
from collections.abc import Callable

import typer

from stages import crf, cues, evaluate, export, prepare, report, retrain, train_dgcn

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="dgcn pipeline stages (run them through `dvc repro`, or one by one).")


def _clean_errors(command: Callable[..., None]) -> Callable[..., None]:
    """Bad input ends the stage with one clear line on stderr and exit status 1, not a traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs) -> None:
        try:
            command(*args, **kwargs)
        except (ValueError, FileNotFoundError, KeyError) as error:
            typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from error

    return run


for name, module in (("prepare", prepare), ("cues", cues), ("train-dgcn", train_dgcn), ("export", export),
                     ("crf", crf), ("retrain", retrain), ("evaluate", evaluate), ("report", report)):
    app.command(name)(_clean_errors(module.main))

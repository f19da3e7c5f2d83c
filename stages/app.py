"""The Typer root: `python -m stages --help` lists every pipeline stage.

Commands load lazily: the root knows each command's module and one-line help from a static table, so `--help`
imports no stage (and no torch), and `python -m stages <command>` imports only that command's module.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from typing import TYPE_CHECKING

import typer
import typer.core
import typer.main

if TYPE_CHECKING:  # typer vendors click; these are only annotations
    from typer._click import Command, Context, HelpFormatter

# command name -> (module whose `main` is the command, one-line help: the first line of its docstring). The pipeline's
# stages are modules of `stages`; the tools around them (ablation runs, reports) modules of `tools`.
# tests/test_cli.py keeps the help texts equal to the docstrings.
COMMANDS: dict[str, tuple[str, str]] = {
    "synthesize": ("stages.synthesize", "Generate a synthetic data set (VOC layout) from a seed."),
    "prepare": ("stages.prepare", "Validate a data set and write the manifest every later stage reads."),
    "cues": ("stages.cues", "Cues from image-level labels: classifier -> CAMs -> foreground/background seeds on the "
                            "network grid."),
    "train-dgcn": ("stages.train_dgcn", "DGCN training: kNN feature graph + per-class graph cut grow the cues; "
                                        "seeding + constrain loss; SGD."),
    "export": ("stages.export", "Pseudo-labels at each image's aspect ratio (multi-scale, mirrored), cues grown by "
                                "graph cut; the CRF's evidence."),
    "crf": ("stages.crf", "Refine the export's evidence with a dense CRF on each full-resolution image (published "
                          "kernels)."),
    "retrain": ("stages.retrain", "Retrain DeepLab (by name in params) with cross-entropy on dense labels, 255 "
                                  "ignored."),
    "evaluate": ("stages.evaluate", "Score the DGCN, retrained and upper-bound networks on val; gather every stage's "
                                    "figure into summary.json."),
    "ablate": ("tools.ablate", "Run the ablation plan (one dvc experiment per variant and seed); summarise each figure "
                               "over the seeds."),
    "report": ("tools.report", "Print the stage-by-stage mIoU table and the retrained/upper-bound ratio, then what "
                               "needs no mask."),
    "compare": ("tools.compare", "Compare DVC experiments: the params that differ and each stage's mIoU, in one narrow "
                                 "table."),
    "export-labels": ("tools.export_labels", "Write a label store as palette PNGs in the VOC layout, with its split "
                                             "list and class names."),
    "add-dataset": ("tools.add_dataset", "Register your own data set: check it, write pipelines/<name>.yaml, add it "
                                         "to params.yaml."),
    "check": ("tools.check", "Check a data set before a long run: lists, images, masks, cues, weights, devices and "
                             "disk; a line per problem."),
}


# Library errors that only a bad or damaged file raises, by module: looked up only when the module is loaded (an
# error of a module nobody imported cannot have happened), so that `--help` imports none of them.
LIBRARY_ERRORS: dict[str, tuple[str, ...]] = {
    "zarr.errors": ("BaseZarrError",),  # metadata of a store on disk: invalid, missing node, array vs group
    "json": ("JSONDecodeError",),
    "yaml": ("YAMLError",),
    "pickle": ("UnpicklingError",),
    "PIL.Image": ("DecompressionBombError",),
}


def anticipated(error: BaseException) -> bool:
    """Whether `error` is bad input or a failing file system (one line, exit 1) rather than a bug (traceback)."""
    from dgcn.errors import InputError  # here, not at the top: `--help` imports no dgcn module

    known: list[type[BaseException]] = [InputError, OSError]
    for module, names in LIBRARY_ERRORS.items():
        if module in sys.modules:
            known += [getattr(sys.modules[module], name) for name in names if hasattr(sys.modules[module], name)]
    return isinstance(error, tuple(known))


def one_line(error: BaseException) -> str:
    """The message of an anticipated error as one line; an OSError as `<file>: <reason>`."""
    from dgcn.errors import InputError

    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        where = _file_name(error.filename) + (f" -> {_file_name(error.filename2)}" if error.filename2 else "")
        return f"{where}: {error.strerror}"
    message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    # a library's message rarely says what kind of problem it is: its class name does (JSONDecodeError: ...)
    return message if isinstance(error, (InputError, OSError)) else f"{type(error).__name__}: {message}"


def _file_name(name: object) -> str:
    """An OSError's file: a str, bytes (undecodable names) or a descriptor number."""
    return os.fsdecode(name) if isinstance(name, (str, bytes)) else str(name)


def _clean_errors(command: Callable[..., None]) -> Callable[..., None]:
    """Bad input ends the stage with one clear line on stderr and exit status 1; a bug keeps its traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs) -> None:
        try:
            with sigterm_exits(), _stage_process(kwargs.get("out")):
                command(*args, **kwargs)
        except Exception as error:
            settle_zarr_io()
            if not anticipated(error):
                raise
            typer.secho(f"error: {one_line(error)}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from error

    return run


def _stage_process(out: object) -> AbstractContextManager[None]:
    """A stage (a command with an `--out`): one writer per output, ended with its dvc (stages.runtime.stage_process).
    Imported here, not at the top: `--help` imports no stage."""
    if out is None:
        return nullcontext()
    from stages.runtime import stage_process

    return stage_process(out)


def settle_zarr_io(timeout: float = 10.0) -> None:
    """Let the reads that a failed Zarr call left running finish (for `timeout` seconds at most, then cancel them).

    Zarr reads a shard's chunks as concurrent tasks on its own event loop, and the first failing chunk (a damaged
    one) fails the call while its siblings still run; at exit Zarr closes the loop under them, which prints "Task was
    destroyed but it is pending!" and "Event loop is closed" after the error line.
    """
    sync = sys.modules.get("zarr.core.sync")  # not loaded: no Zarr call was made
    if sync is None or sync.loop[0] is None or sync.loop[0].is_closed():
        return
    import asyncio  # here: Zarr loaded it already, `--help` does not

    async def others() -> None:
        running = asyncio.all_tasks() - {asyncio.current_task()}
        with suppress(TimeoutError):  # wait_for then cancelled them: none is left pending
            await asyncio.wait_for(asyncio.gather(*running, return_exceptions=True), timeout)

    sync.sync(others())


def _terminated(signum: int, frame: object) -> None:
    """The SIGTERM handler of sigterm_exits: exit as a shell reports a signal's death (128 + signal number)."""
    raise SystemExit(128 + signum)


@contextmanager
def sigterm_exits() -> Iterator[None]:
    """Within the block, SIGTERM raises SystemExit(143) in the main thread, so that context managers run: worker
    pools stop their workers, staged outputs are removed. (SIGTERM's default action ends the process on the spot.)
    Elsewhere than in the main thread, where Python cannot set handlers, the block changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)  # None: not set from Python


class LazyStages(typer.core.TyperGroup):
    """A root group that imports a command's module only when that command is resolved."""

    def list_commands(self, ctx: Context) -> list[str]:
        """The table's commands, in pipeline order."""
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """Import the command's module and build the command from its `main`; None for an unknown name."""
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[cmd_name][0])
        # A one-command Typer turns `main` into a command exactly as `app.command(name)` on the root would.
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                             rich_markup_mode=self.rich_markup_mode)
        single.command(cmd_name)(_clean_errors(module.main))
        return typer.main.get_command(single)

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        """As Typer's, with its "Did you mean" hint, which it draws from registered commands (here none)."""
        if args and args[0] not in COMMANDS and not args[0].startswith("-") and not ctx.resilient_parsing:
            matches = difflib.get_close_matches(args[0], COMMANDS)
            if matches:
                ctx.fail(f"No such command {args[0]!r}. Did you mean {', '.join(map(repr, matches))}?")
        return super().resolve_command(ctx, args)

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        """No arguments: print the help and exit 2, as before.

        Typer's error handler prints nothing for "no args is help", relying on the rich renderer having printed
        the help already; the plain help below only returns its text.
        """
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            typer.echo(ctx.get_help())
            ctx.exit(2)
        return super().parse_args(ctx, args)

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        """Plain help: Typer's rich renderer would resolve (import) every command just to list it."""
        super(typer.core.TyperGroup, self).format_help(ctx, formatter)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """List the commands with the table's one-line help, importing nothing."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in COMMANDS.items()])


app = typer.Typer(cls=LazyStages, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="dgcn pipeline stages (run them through `dvc repro`, or one by one).")


@app.callback()
def root() -> None:
    # A callback makes Typer build a group though no command is registered on `app`: they come from COMMANDS.
    pass

"""`compare`: DVC's experiments side by side, in a plain table that fits 160 columns.

One row per baseline commit (and the workspace, where it differs from its commit) and per experiment; as columns, only
the params whose values differ between the rows (params.yaml merged with pipelines/<dataset>.yaml, dotted keys), then
the headline figures of the evaluate stage's summary.json. `dvc exp show` prints every param, metric and dependency
hash instead (10,000 columns here).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import typer

from dgcn.errors import InputError
from stages.params import merge

WIDTH = 160
NAME_WIDTH = 24  # experiment names longer than this lose their middle
CELL_WIDTH = 20  # so do param values
GAP = "  "
# Short header -> key of the evaluate stage's summary.json; the ratio is computed.
FIGURES = {"CAM": "cam_baseline_miou", "cues": "cues_miou", "pseudo": "pseudo_miou", "CRF": "crf_miou",
           "DGCN": "dgcn_val_miou", "retrain": "val_miou", "upper": "upper_bound_val_miou"}
RATIO = "ratio"
NOTE = ("mIoU on train: CAM baseline, cues, pseudo-labels, CRF labels; on val: DGCN network, retrained, upper bound; "
        "ratio = retrain / upper.")
MISSING = "-"


class CompareError(InputError):
    """Nothing to compare: not a DVC repository, no experiments, or none for the data set."""


@dataclass(frozen=True)
class Run:
    """One row: the workspace, a baseline commit or an experiment."""

    name: str
    params: dict[str, Any]  # dotted key -> value, params.yaml merged with pipelines/<dataset>.yaml
    figures: dict[str, float | None]  # header of FIGURES (and RATIO) -> value
    experiment: bool = False
    state: str | None = None  # an experiment not (yet) done: queued, running, failed

    @property
    def label(self) -> str:
        """The name as the table shows it: experiments indented under their commit, long names cut."""
        return ("  " if self.experiment else "") + _short(self.name, NAME_WIDTH) + (
            f" ({self.state})" if self.state else "")


@dataclass(frozen=True)
class Column:
    header: str
    cells: list[str]
    left: bool = True  # text is left-aligned, numbers right-aligned

    @property
    def width(self) -> int:
        return max(len(self.header), *(len(cell) for cell in self.cells))

    def cell(self, text: str) -> str:
        return text.ljust(self.width) if self.left else text.rjust(self.width)


def experiments(every_commit: bool) -> list[dict[str, Any]]:
    """What `dvc exp show --json` prints for the repository around the current folder: the workspace, then each
    baseline commit with its experiments (the current commit only, unless `every_commit`)."""
    from dvc.exceptions import DvcException, NotDvcRepoError
    from dvc.repo import Repo
    from dvc.scm import Git

    try:
        with Repo() as repo:
            if not isinstance(repo.scm, Git):
                raise CompareError(f"{repo.root_dir} is not a git repository: DVC experiments need one")
            revs = None
            if every_commit:  # the commits that have experiments, the current one first (the workspace's neighbour)
                head = repo.scm.get_rev()
                revs = sorted(repo.experiments.ls(all_commits=True), key=lambda rev: rev != head)
            states = repo.experiments.show(revs=revs) if revs or not every_commit else []
    except NotDvcRepoError:
        raise CompareError("not inside a DVC repository: run `dgcn compare` in the project's folder") from None
    except DvcException as error:
        raise CompareError(f"dvc: {error}") from None
    if not any(state.experiments for state in states):
        where = "in this repository" if every_commit else "of the current commit (--all: every commit's)"
        raise CompareError(f"no DVC experiments {where}; run some with `dvc exp run -S <file>:<key>=<value>`")
    return [state.dumpd() for state in states]


def runs(states: Sequence[Mapping[str, Any]], dataset: str) -> list[Run]:
    """The rows of `states` (shaped as `dvc exp show --json`) for `dataset`; the workspace only where it differs from
    the commit after it. A data set that no row tracks (its pipelines/<dataset>.yaml, its summary) is a CompareError."""
    revisions = list(_revisions(states))
    if not any(_file(data.get("params"), _config_path(dataset)) or _file(data.get("metrics"), _summary_path(dataset))
               for data in ((state.get("data") or {}) for state, *_ in revisions)):
        raise CompareError(f"--dataset {dataset}: no row tracks {_config_path(dataset)} or {_summary_path(dataset)}")
    found = [_run(revision, dataset, *about) for revision, *about in revisions]
    if len(found) > 1 and found[0].name == "workspace" and (found[0].params, found[0].figures) == (
            found[1].params, found[1].figures):
        found.pop(0)
    return found


def table(rows: Sequence[Run], width: int = WIDTH) -> list[str]:
    """The lines that print `rows`: the params that differ between them, then the figures, at most `width` wide.

    Param columns are headed by their dotted keys; where that is too wide, by p1, p2, ... with a legend below; where
    even that is too wide, the table is printed in blocks of columns, each starting with the names."""
    keys = differing(rows)
    names = Column("experiment", [run.label for run in rows])
    figures = [Column(header, [_figure(run.figures.get(header)) for run in rows], left=False)
               for header in (*FIGURES, RATIO)]
    values = {key: [_short(_param(run.params.get(key, MISSING)), CELL_WIDTH) for run in rows] for key in keys}
    named = [Column(_short(key, width // 3), cells) for key, cells in values.items()]
    blocks = _blocks(names, [*([column] for column in named), figures], width)
    legend: list[str] = []
    if len(blocks) > 1:
        coded = [Column(f"p{index}", cells) for index, cells in enumerate(values.values(), 1)]
        single = _blocks(names, [*([column] for column in coded), figures], width)
        if len(single) == 1:
            blocks = single
            legend = _wrap([f"p{index} = {key}" for index, key in enumerate(keys, 1)], width)
    lines: list[str] = []
    for block in blocks:
        lines += [*([""] if lines else []), *_render(block)]
    return [*lines, *(legend if keys else ["no param differs between the rows"]), NOTE]


def differing(rows: Iterable[Run]) -> list[str]:
    """The dotted param keys whose values are not the same in every row (a missing key counts as a value), in the
    order the rows first list them."""
    rows = list(rows)
    keys = dict.fromkeys(key for run in rows for key in run.params)
    return [key for key in keys if len({_param(run.params.get(key, MISSING)) for run in rows}) > 1]


def main(dataset: str = typer.Option("synthetic", help="the data set: its pipelines/<dataset>.yaml over params.yaml, "
                                                       "its artifacts/<dataset>/evaluate/summary.json"),
         every_commit: bool = typer.Option(False, "--all", help="the experiments of every commit, not only the "
                                                                 "current commit's"),
         ) -> None:
    """Compare DVC experiments: the params that differ and each stage's mIoU, in one narrow table."""
    for line in table(runs(experiments(every_commit), dataset)):
        typer.echo(line)


def _revisions(states: Sequence[Mapping[str, Any]]) -> Iterable[tuple[Mapping[str, Any], str, bool, str | None]]:
    """(revision, its name, whether it is an experiment, its state unless done) of every row of `dvc exp show
    --json`: the workspace, each baseline commit (its branch or short hash), then that commit's experiments."""
    for state in states:
        yield state, "workspace" if state["rev"] == "workspace" else state.get("name") or state["rev"][:7], False, None
        for group in state.get("experiments") or []:
            if not group.get("revs"):
                continue
            tip = group["revs"][0]
            executor = (group.get("executor") or {}).get("state")
            yield tip, group.get("name") or tip.get("name") or tip["rev"][:7], True, (
                None if executor == "success" else executor)


def _run(state: Mapping[str, Any], dataset: str, name: str, experiment: bool, status: str | None) -> Run:
    """One row from a revision of `dvc exp show --json` (its data: params and metrics by file)."""
    data = state.get("data") or {}
    params = merge(_file(data.get("params"), "params.yaml"), _file(data.get("params"), _config_path(dataset)))
    summary = _file(data.get("metrics"), _summary_path(dataset))
    figures: dict[str, float | None] = {header: _number(summary.get(key)) for header, key in FIGURES.items()}
    retrained, upper = figures["retrain"], figures["upper"]
    figures[RATIO] = retrained / upper if retrained is not None and upper else None
    return Run(name, dict(_flatten(params)), figures, experiment, status)


def _config_path(dataset: str) -> str:
    return f"pipelines/{dataset}.yaml"


def _summary_path(dataset: str) -> str:
    return f"artifacts/{dataset}/evaluate/summary.json"


def _file(files: Mapping[str, Any] | None, path: str) -> dict[str, Any]:
    """The data of one params or metrics file of a revision; empty where the file is missing or unreadable."""
    data = ((files or {}).get(path) or {}).get("data")
    return data if isinstance(data, dict) else {}


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, value) of every leaf of nested mappings; an empty mapping is a leaf."""
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _figure(value: float | None) -> str:
    return MISSING if value is None else f"{value:.3f}"


def _param(value: Any) -> str:
    """A param value as YAML writes it in flow style (null, true, [0.08, 0.2]); text as it is."""
    return value if isinstance(value, str) and value else json.dumps(value)


def _short(text: str, limit: int) -> str:
    """`text`, its middle cut out where it is longer than `limit` (names differ most at their ends)."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head):]}"


def _blocks(names: Column, groups: Sequence[Sequence[Column]], width: int) -> list[list[Column]]:
    """The groups of columns packed in order into blocks at most `width` wide, each block after the names; a group
    is never split."""
    blocks = [[names]]
    used = names.width
    for group in groups:
        extra = sum(len(GAP) + column.width for column in group)
        if used + extra > width and len(blocks[-1]) > 1:
            blocks.append([names])
            used = names.width
        blocks[-1] += group
        used += extra
    return blocks


def _render(columns: Sequence[Column]) -> list[str]:
    """Header, rule and rows of one block, right-trimmed."""
    header = GAP.join(column.cell(column.header) for column in columns)
    rule = GAP.join("-" * column.width for column in columns)
    rows = [GAP.join(column.cell(column.cells[index]) for column in columns) for index in range(len(columns[0].cells))]
    return [line.rstrip() for line in (header, rule, *rows)]


def _wrap(entries: Sequence[str], width: int) -> list[str]:
    """`entries` joined by three spaces into lines at most `width` wide."""
    lines: list[str] = []
    for entry in entries:
        if lines and len(lines[-1]) + 3 + len(entry) <= width:
            lines[-1] += "   " + entry
        else:
            lines.append(entry)
    return lines

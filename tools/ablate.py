"""`ablate`: run the ablation plan (ablation.yaml) with `dvc exp run --temp`, one experiment per variant and seed, and
summarise every figure as mean, std and n over the seeds."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dgcn.errors import InputError
from dgcn.storage import staged_directory
from stages.runtime import write_json

# The figures of a variant: name -> what it says. Read from the evaluate stage's summary.json.
FIGURES: dict[str, str] = {
    "pseudo_miou": "pseudo-labels (train)",
    "crf_miou": "after the CRF stage (train)",
    "dgcn_val_miou": "DGCN network (val)",
    "val_miou": "retrained (val)",
    "upper_bound_val_miou": "upper bound (val)",
    "ratio_to_upper_bound": "val / upper bound",
}
# What the graph cut adds during training, at the last epoch (train_dgcn's metrics; where every image has a mask):
# precision and recall of the cues alone and of the grown supervision against the train masks.
GROWTH: dict[str, str] = {
    "final_cue_precision": "cues: precision",
    "final_cue_recall": "cues: recall",
    "final_grown_precision": "grown: precision",
    "final_grown_recall": "grown: recall",
}


# The params sections that decide the outputs of the stages two runs of a seed share, each stage with those before it.
# A run waits for the first earlier run that agrees with it on one of these, so that DVC's run cache hands it that
# run's outputs instead of both computing them at once. Only how much work is shared depends on this, never a figure.
SHARED_SECTIONS: dict[str, frozenset[str]] = {
    "cues": frozenset({"synthesize", "prepare", "cues"}),
    "train_dgcn": frozenset({"synthesize", "prepare", "cues", "train_dgcn", "graph_cut", "dense_crf"}),
}
# Where each run's DVC output goes (an ignored folder).
LOG_DIR = Path(".dvc/tmp/ablate")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(_Strict):
    overrides: dict[str, Any] = Field(description="dotted param key -> value, over pipelines/<dataset>.yaml")
    figures: dict[str, str | None] = Field(default_factory=dict, description="figure -> summary key; null: none")
    lever: bool = Field(False, description="a lever being tried, not a component: run only when named (--variant)")


class Setting(_Strict):
    dataset: str = Field(min_length=1)
    overrides: dict[str, Any]


class Plan(_Strict):
    seeds: list[int] = Field(min_length=1)
    seed_keys: list[str] = Field(min_length=1)
    threads: int = Field(1, ge=1, description="torch threads of every run: the figures do not depend on the machine")
    common: dict[str, Any]
    settings: dict[str, Setting] = Field(min_length=1)
    variants: dict[str, Variant] = Field(min_length=1)


def load_plan(path: Path) -> Plan:
    """The ablation plan; a missing file, bad YAML or a wrong key is one InputError naming the file."""
    try:
        plan = Plan.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise InputError(f"ablation plan not found: {path}") from None
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML: {error}") from None
    except ValidationError as error:
        first = error.errors()[0]
        raise InputError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    for figure in (f for variant in plan.variants.values() for f in variant.figures):
        if figure not in FIGURES | GROWTH:
            raise InputError(f"{path}: unknown figure {figure!r} (one of {', '.join(FIGURES | GROWTH)})")
    return plan


def experiment_name(setting: str, variant: str, seed: int) -> str:
    return f"ablate-{setting}-{variant}-s{seed}".replace("_", "-")


def override_args(config: str, overrides: Mapping[str, Any]) -> list[str]:
    """DVC `-S` arguments that set (or add) each dotted key of `config`, values in Hydra's grammar."""
    args = []
    for key, value in overrides.items():
        text = "null" if value is None else value if isinstance(value, str) else json.dumps(value)
        args += ["-S", f"{config}:++{key}={text}"]
    return args


def run_overrides(plan: Plan, setting: str, variant: str, seed: int) -> dict[str, Any]:
    """Every override of one run, later ones winning: common, the setting's, the variant's, the seed."""
    return {**plan.common, **plan.settings[setting].overrides, **plan.variants[variant].overrides,
            **{key: seed for key in plan.seed_keys}}


def figures_of(summary: Mapping[str, Any], variant: Variant) -> dict[str, float | None]:
    """The variant's figures from one run's evaluate summary (None where the variant has none)."""
    keys = {figure: variant.figures.get(figure, figure) for figure in FIGURES | GROWTH}
    values = {figure: None if key is None else summary.get(key) for figure, key in keys.items()}
    if values["val_miou"] is not None and values["upper_bound_val_miou"]:
        values["ratio_to_upper_bound"] = round(values["val_miou"] / values["upper_bound_val_miou"], 4)
    return values


def aggregate(runs: Sequence[Mapping[str, float | None]]) -> dict[str, dict[str, float | int] | None]:
    """figure -> {mean, std (sample, ddof 1; 0 for one run), n} over the runs that have it; None where none does."""
    result: dict[str, dict[str, float | int] | None] = {}
    for figure in FIGURES | GROWTH:
        values = [run[figure] for run in runs if run.get(figure) is not None]
        if not values:
            result[figure] = None
            continue
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        result[figure] = {"mean": round(mean, 4), "std": round(std, 4), "n": len(values)}
    return result


def markdown_table(summary: Mapping[str, Mapping[str, Mapping[str, float | int] | None]],
                   columns: Mapping[str, str] = FIGURES) -> str:
    """One row per variant that has any of the columns' figures, one column per figure: mean ± std (n)."""
    lines = ["| variant | " + " | ".join(columns.values()) + " |", "|---" * (len(columns) + 1) + "|"]
    for variant, figures in summary.items():
        if all(figures.get(name) is None for name in columns):
            continue
        cells = ["-" if (f := figures.get(name)) is None else f"{f['mean']:.3f} ± {f['std']:.3f} ({f['n']})"
                 for name in columns]
        lines.append(f"| `{variant}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tables(summary: Mapping[str, Mapping[str, Mapping[str, float | int] | None]]) -> str:
    """The figures table, then the growth table (the last DGCN epoch's supervision against the train masks)."""
    return f"{markdown_table(summary)}\n{markdown_table(summary, GROWTH)}"


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process's whole group (DVC and the stage it runs), then wait for it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    process.wait()


def run_as_group(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run `command` in a process group of its own, capturing its output. If this process is stopped while it waits
    (SIGTERM's SystemExit, Ctrl-C), the whole group gets SIGTERM and is waited for: DVC and the stage it runs clean up
    and exit with it instead of running on."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate()
        except BaseException:
            _stop(process)
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


DVC = [sys.executable, "-m", "dvc"]


def _dvc(*args: str) -> subprocess.CompletedProcess[str]:
    return run_as_group([*DVC, *args])


@dataclass(frozen=True)
class Run:
    """One experiment of the plan: a variant at a seed of a setting."""

    name: str
    dataset: str
    overrides: dict[str, Any] = field(hash=False)


def plan_runs(plan: Plan, settings: Sequence[str], variants: Sequence[str], seeds: Sequence[int]) -> list[Run]:
    """Every run, variant by variant (each over its seeds), so that the runs that share the most come first."""
    return [Run(experiment_name(setting, variant, seed), plan.settings[setting].dataset,
                run_overrides(plan, setting, variant, seed))
            for setting in settings for variant in variants for seed in seeds]


def waits_for(runs: Sequence[Run]) -> dict[str, set[str]]:
    """Run name -> the earlier runs it waits for: per SHARED_SECTIONS stage, the first run with the same settings."""
    first: dict[tuple[str, str], Run] = {}
    waits: dict[str, set[str]] = {}
    for run in runs:
        waits[run.name] = set()
        for stage, sections in SHARED_SECTIONS.items():
            chosen = {key: value for key, value in run.overrides.items() if key.split(".")[0] in sections}
            leader = first.setdefault((stage, f"{run.dataset} {json.dumps(chosen, sort_keys=True)}"), run)
            if leader is not run:
                waits[run.name].add(leader.name)
    return waits


def _start(run: Run, threads: int) -> subprocess.Popen:
    """`dvc exp run --temp` of evaluate@dataset under the run's overrides, in a process group of its own, its output
    to LOG_DIR/<name>.log; torch on `threads` threads. An earlier experiment of that name goes first."""
    _dvc("exp", "remove", run.name)  # absent: an error we do not need
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with (LOG_DIR / f"{run.name}.log").open("w", encoding="utf-8") as log:
        return subprocess.Popen([*DVC, "exp", "run", "--temp", "-n", run.name,
                                 *override_args(f"pipelines/{run.dataset}.yaml", run.overrides),
                                 f"evaluate@{run.dataset}"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _finished(run: Run, process: subprocess.Popen, seconds: float) -> None:
    """Say which stages the run computed (the others came from the run cache); a failed run is an InputError."""
    output = (LOG_DIR / f"{run.name}.log").read_text(encoding="utf-8", errors="replace")
    if process.returncode != 0:
        raise InputError(f"experiment {run.name} failed (all of its output: {LOG_DIR / run.name}.log):\n"
                         f"{output[-3000:]}")
    ran = [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]
    typer.echo(f"{run.name}: ran {', '.join(ran) or 'nothing (all cached)'} ({seconds:.0f} s)")


def run_experiments(runs: Sequence[Run], *, jobs: int, threads: int) -> None:
    """Run `jobs` experiments at once, each after the runs it waits for (waits_for). A failure, or this process being
    stopped, stops every experiment still running."""
    waits, pending, done = waits_for(runs), list(runs), set()
    running: dict[Run, tuple[subprocess.Popen, float]] = {}
    try:
        while pending or running:
            for run in [run for run in pending if waits[run.name] <= done][: jobs - len(running)]:
                pending.remove(run)
                running[run] = (_start(run, threads), time.monotonic())
            time.sleep(0.5)
            for run, (process, started) in list(running.items()):
                if process.poll() is not None:
                    del running[run]
                    _finished(run, process, time.monotonic() - started)
                    done.add(run.name)
    except BaseException:
        for process, _ in running.values():
            _stop(process)
        raise


def _experiment_metrics() -> dict[str, dict[str, dict[str, Any]]]:
    """Experiment name -> metrics file -> its data, from `dvc exp show --json` (unreadable files: none)."""
    result = _dvc("exp", "show", "--json")
    if result.returncode != 0:
        raise InputError(f"dvc exp show failed: {result.stderr.strip()}")
    return {rev["name"]: {path: metric.get("data", {}) for path, metric in rev["data"]["metrics"].items()}
            for baseline in json.loads(result.stdout) for experiment in baseline.get("experiments") or []
            for rev in experiment["revs"] if rev.get("name") and (rev.get("data") or {}).get("metrics")}


def evaluate_summary(metrics: Mapping[str, Mapping[str, Any]], dataset: str) -> dict[str, Any] | None:
    """Every metric of a run's stages (train_dgcn's growth figures among them), its evaluate summary's winning; None
    where the run has no evaluate summary for `dataset`."""
    summary_path = f"artifacts/{dataset}/evaluate/summary.json"
    if summary_path not in metrics:
        return None
    return {key: value for path in sorted(metrics) for key, value in metrics[path].items()} | metrics[summary_path]


def main(
    settings: list[str] = typer.Option(None, "--setting", help="settings of the plan to run (default: all)"),
    variants: list[str] = typer.Option(None, "--variant", help="variants to run (default: all but the levers); the "
                                       "tables show every variant that has experiments"),
    seeds: list[int] = typer.Option(None, "--seed", help="seeds to run (default: the plan's)"),
    jobs: int = typer.Option(0, min=0, help="experiments at once (0: the machine's cores / the plan's threads)"),
    plan_file: Path = typer.Option(Path("ablation.yaml"), "--plan", help="the ablation plan"),
    artifacts: Path = typer.Option(Path("artifacts"), help="summaries go to <artifacts>/<setting>/ablation/"),
    summary_only: bool = typer.Option(False, "--summary-only", help="run nothing: summarise the experiments this "
                                      "repository already has (e.g. run elsewhere and fetched with `dvc exp pull`)"),
) -> None:
    """Run the ablation plan (one dvc experiment per variant and seed); summarise each figure over the seeds.

    The tables cover every variant of the plan that has experiments of this commit (the plan's seeds and those named).
    """
    plan = load_plan(plan_file)
    for kind, chosen, known in (("setting", settings, plan.settings), ("variant", variants, plan.variants)):
        unknown = sorted(set(chosen or ()) - set(known))
        if unknown:
            raise InputError(f"{plan_file}: no {kind} {unknown[0]!r} (one of {', '.join(known)})")
    settings = settings or list(plan.settings)
    seeds = seeds or plan.seeds
    to_run = [] if summary_only else variants or [name for name, variant in plan.variants.items() if not variant.lever]
    runs = plan_runs(plan, settings, to_run, seeds)
    if runs:
        started = time.monotonic()
        jobs = jobs or max(1, (os.cpu_count() or 1) // plan.threads)
        run_experiments(runs, jobs=jobs, threads=plan.threads)
        typer.echo(f"ran {len(runs)} experiments in "
                   f"{(time.monotonic() - started) / 60:.1f} min ({jobs} at once, {plan.threads} thread(s) each)")
    found = _experiment_metrics()
    for setting in settings:
        _summarise(plan, setting, sorted({*plan.seeds, *seeds}), found, artifacts / setting / "ablation",
                   ran={run.name for run in runs})


def _summarise(plan: Plan, setting: str, seeds: Sequence[int], found: Mapping[str, Mapping[str, Mapping[str, Any]]],
               folder: Path, *, ran: set[str]) -> None:
    """Write one setting's summary.json, runs.json and table.md from every variant of the plan that has experiments
    at `seeds` (those run before, a lever run on its own, and these). An experiment in `ran` (run just now) that left
    no summary is an error; the plan's other non-lever variants without any experiment are named in a warning."""
    runs: dict[str, list[dict[str, float | None]]] = {}
    for variant in plan.variants:
        for seed in seeds:
            name = experiment_name(setting, variant, seed)
            summary = evaluate_summary(found.get(name, {}), plan.settings[setting].dataset)
            if summary is not None:
                runs.setdefault(variant, []).append({"seed": seed, **figures_of(summary, plan.variants[variant])})
            elif name in ran:
                raise InputError(f"experiment {name} left no evaluate summary")
    absent = [name for name, variant in plan.variants.items() if name not in runs and not variant.lever]
    if absent:
        typer.echo(f"warning: no experiments of {', '.join(absent)} ({setting}): left out of the table", err=True)
    summary = {variant: aggregate(values) for variant, values in runs.items()}
    with staged_directory(folder) as staged:
        write_json(staged / "summary.json", summary)
        write_json(staged / "runs.json", runs)
        (staged / "table.md").write_text(tables(summary), encoding="utf-8")
    typer.echo(f"\n{setting} ({len(seeds)} seeds):\n{tables(summary)}")

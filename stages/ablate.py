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
from collections.abc import Mapping, Sequence
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(_Strict):
    overrides: dict[str, Any] = Field(description="dotted param key -> value, over pipelines/<dataset>.yaml")
    figures: dict[str, str | None] = Field(default_factory=dict, description="figure -> summary key; null: none")


class Setting(_Strict):
    dataset: str = Field(min_length=1)
    overrides: dict[str, Any]


class Plan(_Strict):
    seeds: list[int] = Field(min_length=1)
    seed_keys: list[str] = Field(min_length=1)
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


def run_as_group(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run `command` in a process group of its own, capturing its output. If this process is stopped while it waits
    (SIGTERM's SystemExit, Ctrl-C), the whole group gets SIGTERM and is waited for: DVC and the stage it runs clean up
    and exit with it instead of running on."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _dvc(*args: str) -> subprocess.CompletedProcess[str]:
    return run_as_group([sys.executable, "-m", "dvc", *args])


def _run_experiment(name: str, dataset: str, overrides: Mapping[str, Any]) -> None:
    """One `dvc exp run --temp` of evaluate@dataset under `overrides`; an earlier experiment of that name goes first."""
    _dvc("exp", "remove", name)  # absent: an error we do not need
    result = _dvc("exp", "run", "--temp", "-n", name, *override_args(f"pipelines/{dataset}.yaml", overrides),
                  f"evaluate@{dataset}")
    if result.returncode != 0:
        raise InputError(f"experiment {name} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    ran = [line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")]
    typer.echo(f"{name}: ran {', '.join(ran) or 'nothing (all cached)'}")


def _experiment_summaries(dataset: str) -> dict[str, dict[str, Any]]:
    """Experiment name -> its evaluate summary, from `dvc exp show --json`."""
    result = _dvc("exp", "show", "--json")
    if result.returncode != 0:
        raise InputError(f"dvc exp show failed: {result.stderr.strip()}")
    summary_path = f"artifacts/{dataset}/evaluate/summary.json"
    found = {}
    for baseline in json.loads(result.stdout):
        for experiment in baseline.get("experiments") or []:
            for rev in experiment["revs"]:
                metrics = (rev.get("data") or {}).get("metrics") or {}
                if rev.get("name") and summary_path in metrics:
                    # every stage's metrics (train_dgcn's growth figures among them), the summary's winning
                    merged = {key: value for path in sorted(metrics)
                              for key, value in metrics[path].get("data", {}).items()}  # unreadable files: none
                    found[rev["name"]] = merged | metrics[summary_path]["data"]
    return found


def main(
    settings: list[str] = typer.Option(None, "--setting", help="settings of the plan to run (default: all)"),
    variants: list[str] = typer.Option(None, "--variant", help="variants to run (default: all)"),
    seeds: list[int] = typer.Option(None, "--seed", help="seeds to run (default: the plan's)"),
    plan_file: Path = typer.Option(Path("ablation.yaml"), "--plan", help="the ablation plan"),
    artifacts: Path = typer.Option(Path("artifacts"), help="summaries go to <artifacts>/<setting>/ablation/"),
    summary_only: bool = typer.Option(False, "--summary-only", help="run nothing: summarise the experiments this "
                                      "repository already has (e.g. run elsewhere and fetched with `dvc exp pull`), "
                                      "leaving out those it lacks"),
) -> None:
    """Run the ablation plan (one dvc experiment per variant and seed); summarise each figure over the seeds."""
    plan = load_plan(plan_file)
    for kind, chosen, known in (("setting", settings, plan.settings), ("variant", variants, plan.variants)):
        unknown = sorted(set(chosen or ()) - set(known))
        if unknown:
            raise InputError(f"{plan_file}: no {kind} {unknown[0]!r} (one of {', '.join(known)})")
    for setting in settings or list(plan.settings):
        dataset = plan.settings[setting].dataset
        names = {}
        for seed in seeds or plan.seeds:
            for variant in variants or list(plan.variants):
                names[variant, seed] = experiment_name(setting, variant, seed)
                if not summary_only:
                    _run_experiment(names[variant, seed], dataset, run_overrides(plan, setting, variant, seed))
        found = _experiment_summaries(dataset)
        missing = [name for name in names.values() if name not in found]
        if missing and not summary_only:
            raise InputError(f"experiment {missing[0]} left no evaluate summary")
        for name in missing:  # --summary-only: what was run, each figure's n saying how many seeds
            typer.echo(f"warning: no experiment {name}: left out of the summary", err=True)
        runs: dict[str, list[dict[str, float | None]]] = {}
        for (variant, seed), name in names.items():
            if name in found:
                runs.setdefault(variant, []).append({"seed": seed, **figures_of(found[name], plan.variants[variant])})
        summary = {variant: aggregate(values) for variant, values in runs.items()}
        with staged_directory(artifacts / setting / "ablation") as folder:
            write_json(folder / "summary.json", summary)
            write_json(folder / "runs.json", runs)
            (folder / "table.md").write_text(tables(summary), encoding="utf-8")
        typer.echo(f"\n{setting} ({len(seeds or plan.seeds)} seeds):\n{tables(summary)}")

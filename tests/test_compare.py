"""`dgcn compare`: DVC's experiments side by side, only the params that differ, the headline figures, 160 columns."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from dvc_project import dvc, git
from typer.testing import CliRunner

from tools.compare import FIGURES, NAME_WIDTH, NOTE, WIDTH, CompareError, Run, experiments, main, runs, table

SUMMARY = "artifacts/synthetic/evaluate/summary.json"
DEFAULTS = {"datasets": ["synthetic"], "crf": {"grown_confidence": 0.7, "workers": 0},
            "retrain": {"epochs": 24, "optimizer": {"lr": 0.004}}}
CONFIG = {"crf": {"grown_confidence": 0.9, "workers": 2}, "retrain": {}}


def revision(rev: str, name: str | None, defaults: dict, config: dict, val: float | None = None) -> dict[str, Any]:
    """One revision as `dvc exp show --json` gives it: its params and metrics by file, each under "data"."""
    metrics = {} if val is None else {SUMMARY: {"data": {"cues_miou": 0.71234, "val_miou": val,
                                                         "upper_bound_val_miou": 0.8}}}
    params = {"params.yaml": {"data": defaults}, "pipelines/synthetic.yaml": {"data": config}}
    return {"rev": rev, "name": name, "error": None, "experiments": None,
            "data": {"rev": rev, "timestamp": None, "params": params, "metrics": metrics, "deps": {}, "outs": {},
                     "meta": {}}}


def experiment(name: str, defaults: dict, config: dict, val: float | None, state: str = "success") -> dict[str, Any]:
    return {"revs": [revision("b" * 40, name, defaults, config, val)], "name": name,
            "executor": {"state": state, "name": "dvc-task", "local": None}}


def states(workspace_val: float = 0.51234) -> list[dict[str, Any]]:
    """The workspace, the baseline `main` and three experiments: one moves a pipelines/ value, one a params.yaml value
    that pipelines/synthetic.yaml overrides (so nothing moves), one a params.yaml value; the last failed."""
    baseline = revision("a" * 40, "main", DEFAULTS, CONFIG, 0.51234)
    baseline["experiments"] = [
        experiment("lower-confidence", DEFAULTS, {**CONFIG, "crf": {"grown_confidence": 0.8, "workers": 2}}, 0.6),
        experiment("overridden", {**DEFAULTS, "crf": {"grown_confidence": 0.5, "workers": 0}}, CONFIG, 0.51234),
        experiment("shorter-retrain", {**DEFAULTS, "retrain": {"epochs": 12, "optimizer": {"lr": 0.004}}}, CONFIG,
                   None, state="failed"),
    ]
    return [revision("workspace", None, DEFAULTS, CONFIG, workspace_val), baseline]


def test_only_the_params_that_differ_appear_beside_every_name_and_rounded_figures() -> None:
    lines = table(runs(states(), "synthetic"))
    header = lines[0]
    assert "crf.grown_confidence" in header and "retrain.epochs" in header
    assert "crf.workers" not in header and "datasets" not in header and "retrain.optimizer.lr" not in header
    assert all(column in header for column in FIGURES)
    body = "\n".join(lines)
    for name in ("main", "lower-confidence", "overridden", "shorter-retrain (failed)"):
        assert name in body
    assert "workspace" not in body  # the same as its commit
    row = next(line for line in lines if "lower-confidence" in line)
    assert row.split() == ["lower-confidence", "0.8", "24", "-", "0.712", "-", "-", "-", "0.600", "0.800", "0.750"]
    assert "0.512" in body and "0.5123" not in body and "0.640" in body  # 3 decimals; the ratio 0.51234 / 0.8
    assert next(line for line in lines if "shorter-retrain" in line).split()[2:4] == ["0.9", "12"]
    assert max(map(len, lines)) <= WIDTH


def test_the_workspace_shows_where_it_differs_from_its_commit() -> None:
    rows = runs(states(workspace_val=0.3), "synthetic")
    assert [run.name for run in rows[:2]] == ["workspace", "main"]
    assert not rows[0].experiment and rows[2].experiment


def many(value: str) -> list[Run]:
    """Three runs that differ in twelve long-named params, each value `value` and the run's number."""
    return [Run(f"run-{index}", {f"section_{key}.a_rather_long_param_name": f"{value}{index}" for key in range(12)},
                dict.fromkeys(FIGURES, 0.5)) for index in range(3)]


def test_many_differing_params_fit_with_a_legend_of_their_names() -> None:
    lines = table(many("v"))
    assert lines[0].split()[1:13] == [f"p{index}" for index in range(1, 13)]
    legend = " ".join(lines[5:-1])
    assert "p1 = section_0.a_rather_long_param_name" in legend and "p12 = section_11.a_rather_long_param_name" in legend
    assert max(map(len, lines)) <= WIDTH


def test_long_values_print_in_blocks_that_each_start_with_the_names() -> None:
    lines = table(many("a value of some length "))
    headers = [line for line in lines if line.startswith("experiment")]
    assert len(headers) > 1 and sum("run-2" in line for line in lines) == len(headers)
    assert all(f"section_{key}.a_rather_long_param_name" in " ".join(headers) for key in range(12))
    assert headers[-1].split()[-len(FIGURES) - 1:] == [*FIGURES, "ratio"]  # the figures stay together, last
    assert max(map(len, lines)) <= WIDTH


def test_a_long_name_keeps_its_start_and_its_end() -> None:
    name = "ablate-synthetic-hard-seeds-constrain-s3"
    lines = table([Run("main", {"a": 1}, {}), Run(name, {"a": 2}, {}, experiment=True)])
    shown = lines[3].split()[0]
    assert len(shown) <= NAME_WIDTH and shown.startswith("ablate-sy") and shown.endswith("constrain-s3")


def test_a_data_set_that_no_row_tracks_is_one_error() -> None:
    with pytest.raises(CompareError, match="--dataset voc12: no row tracks pipelines/voc12.yaml"):
        runs(states(), "voc12")


def test_outside_a_dvc_repository_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CompareError, match="not inside a DVC repository"):
        experiments(every_commit=False)


WRITE = """import json, pathlib, yaml
params = yaml.safe_load(open("params.yaml"))
over = yaml.safe_load(open("pipelines/synthetic.yaml"))
confidence = {**params["crf"], **over["crf"]}["grown_confidence"]
out = pathlib.Path("artifacts/synthetic/evaluate")
out.mkdir(parents=True, exist_ok=True)
figures = {"crf_miou": confidence / 2, "val_miou": params["retrain"]["epochs"] / 100, "upper_bound_val_miou": 0.5}
(out / "summary.json").write_text(json.dumps(figures))
"""


@pytest.mark.slow
def test_two_dvc_experiments_compare_in_one_narrow_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    (root / "pipelines").mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(DEFAULTS))
    (root / "pipelines/synthetic.yaml").write_text(yaml.safe_dump(CONFIG))
    (root / "write.py").write_text(WRITE)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": {
        "cmd": f"{sys.executable} write.py", "deps": ["write.py"],
        "params": ["crf", "retrain", {"pipelines/synthetic.yaml": ["crf", "retrain"]}],
        "metrics": [{SUMMARY: {"cache": False}}]}}}))
    git("init", "-q", "-b", "main", cwd=root)
    dvc("init", "-q", cwd=root)
    dvc("repro", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "base", cwd=root)
    # --temp: each experiment starts from the commit (one in the workspace would start from the one before it)
    dvc("exp", "run", "--temp", "-n", "lower-confidence", "-S", "pipelines/synthetic.yaml:crf.grown_confidence=0.8",
        cwd=root)
    dvc("exp", "run", "--temp", "-n", "shorter-retrain", "-S", "retrain.epochs=12", cwd=root)
    monkeypatch.chdir(root)
    command = typer.Typer()
    command.command()(main)
    result = CliRunner().invoke(command, [])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(command, ["--all"]).output == result.output  # one commit has experiments
    lines = result.output.splitlines()
    assert lines[0].split() == ["experiment", "crf.grown_confidence", "retrain.epochs", *FIGURES, "ratio"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:5]}
    assert lines[5] == NOTE
    assert rows.keys() == {"main", "lower-confidence", "shorter-retrain"}  # the workspace is the commit
    assert rows["lower-confidence"] == ["0.8", "24", "-", "-", "-", "0.400", "-", "0.240", "0.500", "0.480"]
    assert rows["shorter-retrain"][:2] == ["0.9", "12"] and rows["shorter-retrain"][-3:] == ["0.120", "0.500", "0.240"]
    assert max(map(len, lines)) <= WIDTH
    wrong = CliRunner().invoke(command, ["--dataset", "voc12"])
    assert wrong.exit_code == 1 and isinstance(wrong.exception, CompareError)

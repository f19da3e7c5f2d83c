"""The root command: a static table lists every stage without importing any, and each command imports only its own."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stages.app import COMMANDS, app

REPO = Path(__file__).resolve().parents[1]


def squeeze(text: str) -> str:
    """`text` without whitespace: help output wraps (and may break at hyphens) to the terminal width."""
    return "".join(text.split())


def run_python(code: str) -> str:
    """Run `code` in a fresh interpreter at the repository root; its stdout."""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_table_holds_exactly_the_pipeline_commands() -> None:
    assert list(COMMANDS) == ["synthesize", "prepare", "cues", "train-dgcn", "export", "crf", "retrain", "evaluate",
                              "ablate", "report", "compare", "export-labels", "add-dataset", "check"]
    assert COMMANDS["train-dgcn"][0] == "stages.train_dgcn" and COMMANDS["ablate"][0] == "tools.ablate"
    assert COMMANDS["synthesize"][1] == "Generate a synthetic data set (VOC layout) from a seed."


def test_help_lists_every_command_with_its_help() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name, (_, text) in COMMANDS.items():
        assert any(line.split()[:1] == [name] for line in lines), f"{name} is not listed:\n{result.output}"
        assert squeeze(text) in squeeze(result.output), f"help of {name} is not listed:\n{result.output}"


def test_no_arguments_prints_the_help() -> None:
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 2
    assert all(name in result.output for name in COMMANDS)


def test_help_imports_no_stage_and_no_torch() -> None:
    code = ("import sys; from typer.testing import CliRunner; from stages.app import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.split('.')[0] in ('dgcn', 'stages')))")
    assert run_python(code).strip() == "['stages', 'stages.app']"


def test_python_m_stages_help_lists_every_command_without_torch() -> None:
    code = ("import runpy, sys; sys.argv = ['stages', '--help']\n"
            "try:\n    runpy.run_module('stages', run_name='__main__')\n"
            "except SystemExit as exit:\n    assert exit.code in (0, None), exit.code\n"
            "print('torch' in sys.modules, 'dgcn' in sys.modules)")
    output = run_python(code)
    assert output.splitlines()[-1] == "False False"
    assert all(name in output for name in COMMANDS)


def test_a_command_imports_only_its_own_module() -> None:
    code = ("import sys; from typer.testing import CliRunner; from stages.app import app; "
            "r = CliRunner().invoke(app, ['report', '--help']); assert r.exit_code == 0, r.output; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('stages.', 'tools.')))))")
    loaded = set(run_python(code).split())
    command_modules = {module for module, _ in COMMANDS.values()}
    assert loaded & command_modules == {"tools.report"}


def test_report_help_still_works() -> None:
    result = CliRunner().invoke(app, ["report", "--help"])
    assert result.exit_code == 0, result.output
    assert "--summary" in result.output
    assert squeeze(COMMANDS["report"][1]) in squeeze(result.output)


def test_unknown_command_suggests_the_close_ones() -> None:
    result = CliRunner().invoke(app, ["reprot"])
    assert result.exit_code == 2
    assert "No such command 'reprot'" in result.output and "'report'" in result.output


@pytest.mark.parametrize("name", list(COMMANDS))
def test_table_help_is_the_first_line_of_main_docstring(name: str) -> None:
    module_name, text = COMMANDS[name]
    module = importlib.import_module(module_name)  # fails, rightly, for a module that is missing
    doc = inspect.getdoc(module.main) or ""
    assert doc.splitlines()[:1] == [text], f"update COMMANDS[{name!r}] in stages/app.py, or {module.__name__}.main"

"""The typed params loader: every bad parameter is named."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stages.params import ParamsError, load_section, param


@dataclass
class Inner:
    iterations: int = param(10, range=(1, None))


@dataclass
class Example:
    lr: float = param(0.1, range=(0.0, 1.0))
    scales: list[float] = param([1.0], range=(0.25, 4.0))
    arch: str = param("small", choices=("small", "big"))
    root: Path | None = param(None)
    inner: Inner = field(default_factory=Inner)


def load(tmp_path: Path, text: str) -> Example:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return load_section(path, "stage", Example)


def test_defaults_types_and_nesting(tmp_path: Path) -> None:
    config = load(tmp_path, "stage:\n  lr: 1\n  root: data/x\n  inner: {iterations: 3}\n")
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.root == Path("data/x") and config.inner.iterations == 3 and config.scales == [1.0]


@pytest.mark.parametrize(("text", "message"), [
    ("stage:\n  lr: 2.0\n", r"stage\.lr: 2\.0 is out of range \[0\.0, 1\.0\]"),
    ("stage:\n  scales: [1.0, 9.0]\n", r"stage\.scales: 9\.0 is out of range"),
    ("stage:\n  arch: huge\n", r"stage\.arch: 'huge' is not one of small, big"),
    ("stage:\n  lr: fast\n", r"stage\.lr: expected float, got 'fast'"),
    ("stage:\n  inner: {iterations: 0}\n", r"stage\.inner\.iterations: 0 is out of range"),
    ("stage:\n  speed: 3\n", r"stage: unknown parameter\(s\) speed"),
    ("other: {}\n", r"missing section 'stage'"),
])
def test_bad_params_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        load(tmp_path, text)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="params file not found"):
        load_section(tmp_path / "nope.yaml", "stage", Example)

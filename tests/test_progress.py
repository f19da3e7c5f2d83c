"""Progress: one line per loop in a log, a bar on a terminal, silence under TQDM_DISABLE; fit's line per epoch."""

from __future__ import annotations

import io
import re
import sys
from functools import partial
from pathlib import Path

import pytest
import torch

from dgcn.progress import log_line, progress
from dgcn.training.loop import Batch, epoch_batches, fit


class Terminal(io.StringIO):
    """A stderr that says it is an interactive terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Progress reporting on, whatever the environment running the tests says."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)


def test_a_loop_in_a_log_prints_exactly_one_line_when_it_ends(enabled, capsys: pytest.CaptureFixture[str]) -> None:
    seen = []
    for i in progress(range(100), "steps"):
        seen.append(i)
        if i == 50:
            assert capsys.readouterr().err == ""  # nothing while the loop runs
    assert seen == list(range(100))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.fullmatch(r"steps: 100 done in \d+\.\d s\n", captured.err)


def test_generators_count_what_they_yielded_and_summary_false_or_a_break_print_nothing(
        enabled, capsys: pytest.CaptureFixture[str]) -> None:
    assert list(progress((i for i in range(7)), "gen", total=7)) == list(range(7))
    assert re.fullmatch(r"gen: 7 done in \d+\.\d s\n", capsys.readouterr().err)
    assert list(progress(range(5), "quiet", summary=False)) == list(range(5))
    for i in progress(range(5), "stopped"):
        if i == 2:
            break
    assert capsys.readouterr().err == ""


def test_tqdm_disable_silences_plain_loops(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert list(progress(range(100), "steps")) == list(range(100))
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert list(progress(range(3), "bar")) == [0, 1, 2]
    assert sys.stderr.getvalue() == ""
    monkeypatch.undo()
    assert capsys.readouterr().err == ""


def test_on_a_terminal_a_bar_that_clears_itself_and_lines_through_tqdm_write(
        enabled, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = progress(range(4), "live")
    for i in bar:
        bar.set_postfix({"loss": f"{i:.3f}"})
    log_line("after the bar")
    written = terminal.getvalue()
    assert "live" in written and "\r" in written  # the tqdm bar, redrawn in place
    assert "done in" not in written  # no summary line on a terminal
    assert written.endswith("after the bar\n")


def _fit(epochs: int, checkpoint: Path | None = None) -> None:
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    def step(batch: Batch) -> dict[str, float]:
        optimizer.step()  # no gradients: a no-op, but the scheduler expects it first
        return {"loss": 0.5, "seeding": 0.125}

    fit(model=model, optimizer=optimizer, scheduler=scheduler, step=step, batches=partial(epoch_batches, 40, 4, 0),
        epochs=epochs, checkpoint=checkpoint, desc="dgcn")


@pytest.mark.parametrize("disable", [None, "1"])
def test_fit_prints_one_line_per_epoch_even_with_tqdm_disabled(
        disable: str | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    if disable is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", disable)
    _fit(3, tmp_path / "last.pt")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    for epoch, line in enumerate(lines, start=1):
        assert re.fullmatch(rf"dgcn epoch {epoch}/3: loss=0\.5000 seeding=0\.1250 \(\d+\.\d s\)", line), line
    _fit(5, tmp_path / "last.pt")  # resumes after epoch 3, saying so: only the epochs it runs are reported
    resumed, *epochs = capsys.readouterr().err.splitlines()
    assert resumed == f"dgcn: resuming after epoch 3 from checkpoint {tmp_path / 'last.pt'}"
    assert [line.split(":")[0] for line in epochs] == ["dgcn epoch 4/5", "dgcn epoch 5/5"]

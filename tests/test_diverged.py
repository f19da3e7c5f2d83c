"""No diverged network leaves a stage: each trainer stops at the first non-finite step with one line naming the epoch
and step, a network with a non-finite weight is neither saved nor loaded, and nothing is published."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from stage_chain import invoke, write_config, write_generic
from typer.testing import CliRunner

from dgcn.errors import ModelFileError
from dgcn.model_files import load_model, save_model
from dgcn.models.registry import build_segmenter
from dgcn.storage import staged_directory
from stages.app import app
from stages.params import merge

# The diverging optimiser: every step multiplies the head's update by 1e30.
DIVERGING = {"optimizer": {"name": "sgd", "lr": 1.0, "momentum": 0.99, "head_lr_mult": 1e30}}
# Several steps per epoch, so that the divergence shows in a step's loss, not only in the final weights.
STEPS = {"epochs": 2, "batch_size": 2}
OWN = {"prepare": {"format": "generic", "generic": {"val_fraction": 0.25, "seed": 3, "masks": "masks"}},
       "cues": {"saliency_dir": None}}
DEFAULTS = ["--defaults", str(Path(__file__).resolve().parents[1] / "params.yaml")]
COMMON = ["--manifest", "a/prepare/manifest.json", *DEFAULTS]
# `<stage>: training diverged in epoch 1/2, step 3/4: <what>; stopped, nothing saved (lower the learning rate)`
DIVERGED = (r"{}: training diverged in epoch [12]/2, step \d+/\d+: ({}); stopped, nothing saved "
            r"\(lower the learning rate\)")
NON_FINITE = r"(loss|seeding|constrain)=nan.*|loss=inf|the network's output holds \d+ non-finite values"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """8 tiny images with tags and masks, prepared, and the cues of a well-behaved classifier (a/cues)."""
    root = tmp_path_factory.mktemp("diverged")
    write_generic(root / "data", 8, masked=set(range(8)))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        config = write_config(root / "own.yaml", OWN)
        invoke("prepare", "--config", config, *DEFAULTS, "--root", "data", "--out", "a/prepare")
        invoke("cues", "--config", config, *COMMON, "--out", "a/cues")
    yield root


def run_diverging(project: Path, monkeypatch: pytest.MonkeyPatch, stage: str, section: str, *args: str) -> str:
    """Run `stage` with the diverging optimiser in its section; its one error line (exit 1, no output folder)."""
    monkeypatch.chdir(project)
    config = write_config(project / f"{section}.yaml", merge(OWN, {section: DIVERGING | STEPS}))
    out = f"a/{section}_diverged"
    result = CliRunner().invoke(app, [stage, "--config", str(config), *COMMON, *args, "--out", out])
    assert result.exit_code == 1, result.output
    assert not (project / out).exists() and not list((project / "a").glob(f".{section}_diverged*"))
    lines = result.output.splitlines()  # progress lines (one per epoch or phase), then the error line
    assert "Traceback" not in result.output and lines[-1].startswith("error: "), result.output
    return lines[-1].removeprefix("error: ")


def test_cue_classifier_stops_at_the_first_non_finite_loss(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = run_diverging(project, monkeypatch, "cues", "cues")
    assert re.fullmatch(DIVERGED.format("classifier", NON_FINITE), line), line


def test_dgcn_training_stops_instead_of_failing_in_the_cut(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, NaN features reached the kNN graph: no neighbour, and `kthvalue(): Expected reduction dim 1 to have
    non-zero size`."""
    line = run_diverging(project, monkeypatch, "train-dgcn", "train_dgcn", "--cues", "a/cues/cues.zarr",
                         "--classifier", "a/cues/classifier.pt")
    assert re.fullmatch(DIVERGED.format("dgcn", NON_FINITE), line), line


def test_retraining_stops_at_the_first_non_finite_loss(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = run_diverging(project, monkeypatch, "retrain", "retrain", "--ground-truth", "--classifier",
                         "a/cues/classifier.pt")
    assert re.fullmatch(DIVERGED.format("retrain", NON_FINITE), line), line


def diverged_segmenter() -> torch.nn.Module:
    """The tiny segmenter of the fixture's settings with one NaN and one infinite weight."""
    model = build_segmenter("small", 3, width=8)
    weight = next(model.parameters())
    with torch.no_grad():
        weight.view(-1)[:2] = torch.tensor([float("nan"), float("inf")])
    return model


def test_a_diverged_network_is_not_saved_and_the_line_names_the_output(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as caught, staged_directory(tmp_path / "train_dgcn") as folder:
        save_model(folder / "model.pt", diverged_segmenter(), kind="segmenter", arch="small", num_outputs=3,
                   options={"width": 8})
    total = sum(value.numel() for value in diverged_segmenter().state_dict().values() if value.is_floating_point())
    assert str(caught.value) == (f"{tmp_path}/train_dgcn/model.pt: not saved, the segmenter diverged: 2 of {total} "
                                 f"weights are not finite (NaN or infinite), the first in "
                                 f"{next(iter(diverged_segmenter().state_dict()))}")
    assert list(tmp_path.iterdir()) == []


def test_a_stage_refuses_a_diverged_model_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model.pt written before this check (or edited) is refused where it is loaded: export names it."""
    monkeypatch.chdir(project)
    model = diverged_segmenter()
    torch.save({"kind": "segmenter", "arch": "small", "num_outputs": 3, "options": {"width": 8},
                "state_dict": model.state_dict()}, project / "diverged.pt")
    with pytest.raises(ModelFileError, match=r"diverged.pt holds a diverged segmenter: 2 of \d+ weights are not "
                                             r"finite \(NaN or infinite\), the first in .+; retrain it$"):
        load_model(project / "diverged.pt", "segmenter")
    result = CliRunner().invoke(app, ["export", "--config", str(project / "own.yaml"), *COMMON, "--cues",
                                      "a/cues/cues.zarr", "--model", "diverged.pt", "--out", "a/export_diverged"])
    assert result.exit_code == 1 and result.output.startswith("error: diverged.pt holds a diverged segmenter: 2 of ")
    assert not (project / "a/export_diverged").exists()

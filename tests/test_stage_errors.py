"""Bad input to a stage: one clear error line, a non-zero exit, and no partial output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from dgcn.data.palette import voc_palette
from dgcn.storage import LabelStoreWriter
from stages.app import app
from stages.runtime import resolve_device

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder holding the default params, as the current directory."""
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_help_lists_every_stage() -> None:
    code, output = invoke("--help")
    assert code == 0
    for name in ("prepare", "cues", "train-dgcn", "export", "crf", "retrain", "evaluate"):
        assert name in output


@pytest.mark.parametrize("stage", ["cues", "train-dgcn", "export", "crf", "retrain", "evaluate"])
def test_missing_upstream_artifact_is_named(workdir: Path, stage: str) -> None:
    code, output = invoke(stage)
    assert code == 1
    assert "missing upstream artifact artifacts/prepare/manifest.json" in output
    assert not (workdir / "artifacts").exists() or not any((workdir / "artifacts").rglob("*.zarr"))


def test_out_of_range_param_is_named(workdir: Path) -> None:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["crf"]["label_confidence"] = 1.5
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    code, output = invoke("crf")
    assert code == 1 and "crf.label_confidence: 1.5 is out of range" in output


def test_bad_dataset_root_is_named_and_writes_nothing(workdir: Path) -> None:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["prepare"].update(dataset="voc", root="no/such/root")
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    code, output = invoke("prepare")
    assert code == 1 and "data root not found: no/such/root" in output
    assert not (workdir / "artifacts").exists()


def test_wrong_zarr_layout_is_named_and_leaves_no_output(workdir: Path) -> None:
    voc = REPO.parent / "shared" / "voc-mini"
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["prepare"].update(dataset="voc", root=str(voc))
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    assert invoke("prepare")[0] == 0
    manifest = json.loads((workdir / "artifacts/prepare/manifest.json").read_text())
    assert manifest["splits"]["train"]["names"] == ["2011_000003", "2011_000006", "2011_000025"]
    broken = workdir / "artifacts/export/pseudo_labels.zarr"
    broken.mkdir(parents=True)
    (broken / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    code, output = invoke("crf")
    assert code == 1 and "pseudo_labels.zarr" in output
    assert not (workdir / "artifacts/crf").exists()


def test_stage_failing_part_way_publishes_nothing(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    voc = REPO.parent / "shared" / "voc-mini"
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["prepare"].update(dataset="voc", root=str(voc))
    params["crf"]["workers"] = 0
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    assert invoke("prepare")[0] == 0
    manifest = json.loads((workdir / "artifacts/prepare/manifest.json").read_text())
    train = manifest["splits"]["train"]
    with LabelStoreWriter(workdir / "artifacts/export/pseudo_labels.zarr", train["names"], train["sizes"],
                          manifest["class_names"], voc_palette()[:21].tolist()) as writer:
        writer.write(0, [np.zeros(size, np.uint8) for size in train["sizes"]])

    def full_disk(path: Path, payload: object) -> None:
        raise ValueError(f"no space left to write {path.name}")

    # The label store is complete by the time the metrics fail to write: neither may appear.
    monkeypatch.setattr("stages.crf.write_json", full_disk)
    code, output = invoke("crf")
    assert code == 1 and "no space left to write metrics.json" in output
    assert sorted(p.name for p in (workdir / "artifacts").iterdir()) == ["export", "prepare"]


def test_missing_cuda_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"train_dgcn\.device: 'cuda' requested but no CUDA device is available"):
        resolve_device("cuda", "train_dgcn.device")
    with pytest.raises(ValueError, match=r"cues\.device: unknown device 'tpu'"):
        resolve_device("tpu", "cues.device")
    assert resolve_device("auto", "x").type == "cpu"

"""Bad input to a stage: one clear error line, a non-zero exit, and no partial output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from dgcn.storage import Evidence, EvidenceStoreWriter
from stages.app import app
from stages.runtime import resolve_device

REPO = Path(__file__).resolve().parents[1]
# The inputs each stage reads besides its config and manifest, as command-line options (dvc.yaml passes them).
INPUTS = {
    "cues": [],
    "train-dgcn": ["--cues", "a/cues/cues.zarr", "--classifier", "a/cues/classifier.pt"],
    "export": ["--cues", "a/cues/cues.zarr", "--model", "a/train_dgcn/model.pt"],
    "crf": ["--evidence", "a/export/evidence.zarr"],
    "retrain": ["--labels", "a/crf/crf_labels.zarr"],
    "evaluate": ["--metrics", "a/cues/metrics.json", "--cues", "a/cues/cues.zarr", "--pseudo-labels",
                 "a/export/pseudo_labels.zarr", "--crf-labels", "a/crf/crf_labels.zarr", "--model",
                 "a/retrain/model.pt", "--upper-bound", "a/upper_bound/model.pt"],
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder holding the shared defaults and the VOC config, as the current directory."""
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (tmp_path / "voc.yaml").write_text((REPO / "pipelines/voc12.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(stage: str, *args: str, config: str = "voc.yaml") -> tuple[int, str]:
    result = CliRunner().invoke(app, [stage, "--config", config, *args])
    return result.exit_code, result.output


def set_param(path: Path, section: str, **values: object) -> None:
    """Change keys of one section of the YAML file at `path`."""
    document = yaml.safe_load(path.read_text())
    document[section] = {**document.get(section, {}), **values}
    path.write_text(yaml.safe_dump(document))


def prepare_voc_mini(voc_mini: Path) -> dict:
    """Run prepare on the vendored photos into a/prepare; return its manifest."""
    assert invoke("prepare", "--root", str(voc_mini), "--out", "a/prepare")[0] == 0
    return json.loads(Path("a/prepare/manifest.json").read_text())


@pytest.mark.parametrize("stage", list(INPUTS))
def test_missing_upstream_artifact_is_named(workdir: Path, stage: str) -> None:
    code, output = invoke(stage, *INPUTS[stage], "--manifest", "a/prepare/manifest.json", "--out", f"a/{stage}")
    assert code == 1
    assert "missing upstream artifact a/prepare/manifest.json" in output
    assert not (workdir / "a").exists()


def test_out_of_range_param_is_named_with_its_file(workdir: Path) -> None:
    set_param(workdir / "voc.yaml", "crf", grown_confidence=1.5)
    code, output = invoke("crf", *INPUTS["crf"], "--manifest", "m.json", "--out", "a/crf")
    assert code == 1 and "voc.yaml: crf.grown_confidence:" in output and "1.5" in output


def test_retrain_needs_exactly_one_label_source(workdir: Path) -> None:
    code, output = invoke("retrain", "--manifest", "m.json", "--out", "a/retrain")
    assert code == 1 and "exactly one of --labels <store> and --ground-truth" in output


def test_bad_dataset_root_is_named_and_writes_nothing(workdir: Path) -> None:
    code, output = invoke("prepare", "--root", "no/such/root", "--out", "a/prepare")
    assert code == 1 and "data root not found: no/such/root" in output
    assert not (workdir / "a").exists()


def test_wrong_zarr_layout_is_named_and_leaves_no_output(workdir: Path, voc_mini: Path) -> None:
    manifest = prepare_voc_mini(voc_mini)
    assert manifest["splits"]["train"]["names"] == ["2011_000003", "2011_000006", "2011_000025"]
    broken = workdir / "a/export/evidence.zarr"
    broken.mkdir(parents=True)
    (broken / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    code, output = invoke("crf", *INPUTS["crf"], "--manifest", "a/prepare/manifest.json", "--out", "a/crf")
    assert code == 1 and "evidence.zarr: wrong Zarr layout" in output
    assert not (workdir / "a/crf").exists()


def test_stage_failing_part_way_publishes_nothing(workdir: Path, voc_mini: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    set_param(workdir / "voc.yaml", "crf", workers=0)
    train = prepare_voc_mini(voc_mini)["splits"]["train"]
    manifest = json.loads(Path("a/prepare/manifest.json").read_text())
    background = np.zeros((21, 3, 4), np.float16)
    background[0] = 1
    evidence = Evidence(background, np.zeros((21, 3, 4), np.uint8), np.eye(21, dtype=bool)[0])
    with EvidenceStoreWriter(workdir / "a/export/evidence.zarr", train["names"], manifest["class_names"],
                             (3, 4)) as writer:
        writer.write(0, [evidence] * len(train["names"]))

    def full_disk(path: Path, payload: object) -> None:
        raise ValueError(f"no space left to write {path.name}")

    # The label store is complete by the time the metrics fail to write: neither may appear.
    monkeypatch.setattr("stages.crf.write_json", full_disk)
    code, output = invoke("crf", *INPUTS["crf"], "--manifest", "a/prepare/manifest.json", "--out", "a/crf")
    assert code == 1 and "no space left to write metrics.json" in output
    assert sorted(p.name for p in (workdir / "a").iterdir()) == ["export", "prepare"]


def test_missing_cuda_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"train_dgcn\.device: 'cuda' requested but no CUDA device is available"):
        resolve_device("cuda", "train_dgcn.device")
    with pytest.raises(ValueError, match=r"cues\.device: unknown device 'tpu'"):
        resolve_device("tpu", "cues.device")
    assert resolve_device("auto", "x").type == "cpu"

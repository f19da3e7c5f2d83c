"""Every stage on the real voc-mini photos (VOC layout, 21 classes, images of different sizes), tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dgcn.storage import LabelStore
from stages.app import app

REPO = Path(__file__).resolve().parents[1]
VOC_MINI = REPO.parent / "shared" / "voc-mini"  # shared/ lies beside the checkout


@pytest.mark.parametrize(("arch", "options"), [("small", {"width": 8}), ("hrnet", {"variant": "hrnet_w18_small"})])
def test_all_stages_run_on_real_voc_photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arch: str,
                                           options: dict) -> None:
    params = yaml.safe_load((REPO / "pipelines/voc12/params.yaml").read_text())
    params["prepare"]["root"] = str(VOC_MINI)
    for stage in ("cues", "train_dgcn", "retrain"):
        params[stage].update(arch=arch, arch_options=options, pretrained=None, input_size=64, epochs=1,
                             batch_size=3, device="cpu")
    params["train_dgcn"].update(workers=0, warmup_iters=1, init_from_classifier=True)
    params["export"].update(input_size=64, batch_size=2, shard_images=2, device="cpu")
    params["crf"].update(workers=0, iterations=2)
    params["evaluate"].update(crf=True, gallery_train=1, gallery_val=1, device="cpu")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    for command in (["prepare"], ["cues"], ["train-dgcn"], ["export"], ["crf"], ["retrain", "--labels", "pseudo"],
                    ["retrain", "--labels", "gt"], ["evaluate"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, f"{command}: {result.output}"
    labels = LabelStore(tmp_path / "artifacts/crf/crf_labels.zarr")
    assert [labels[i].shape for i in range(len(labels))] == [(338, 500), (375, 500), (375, 500)]
    image_classes = [{5, 15}, {9, 15, 18}, {6, 7}]  # from the masks; the labels may use only these and background
    assert all(set(np.unique(labels[i])) <= {0} | image_classes[i] for i in range(len(labels)))
    summary = json.loads((tmp_path / "artifacts/evaluate/summary.json").read_text())
    assert len(summary) == 6 and all(0.0 <= value <= 1.0 for value in summary.values())
    per_class = json.loads((tmp_path / "artifacts/evaluate/per_class.json").read_text())
    assert len(per_class["classes"]) == 21

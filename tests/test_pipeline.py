"""The whole pipeline through DVC on a tiny configuration of the embedded data set: repro, determinism, partial
reruns, code dependencies, a quiet status, push/pull."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
from dvc_project import TINY, dvc, edit_yaml, git, lock_hashes, make_project, ran_stages
from typer.testing import CliRunner

from dgcn.cues import CueStore
from dgcn.storage import EvidenceStore, LabelStore
from stages.app import app

SUMMARY_KEYS = {"cam_baseline_miou", "cues_miou", "pseudo_miou", "crf_miou", "dgcn_val_miou", "dgcn_val_crf_miou",
                "val_miou", "upper_bound_val_miou"}
STAGES = ("synthesize", "prepare", "cues", "train_dgcn", "export", "crf", "retrain", "upper_bound", "evaluate")
ARTIFACTS = Path("artifacts/synthetic")

pytestmark = pytest.mark.slow  # dvc repro of the whole pipeline


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh git + DVC project running the embedded data set shrunk to 24 + 8 images of 64 pixels, reproduced."""
    tiny = {**TINY, "synthesize": {"num_train": 24, "num_val": 8, "image_size": 64}}
    root = make_project(tmp_path_factory.mktemp("project"), ["synthetic"], {"synthetic": tiny})
    assert ran_stages(dvc("repro", cwd=root)) == {f"{stage}@synthetic" for stage in STAGES}
    return root


def test_repro_writes_the_summary_and_every_picture(project: Path) -> None:
    summary = json.loads((project / ARTIFACTS / "evaluate/summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert all(0.0 <= summary[key] <= 1.0 for key in SUMMARY_KEYS)
    for picture in ("gallery.png", "per_class_iou.png", "confusion.png"):
        assert (project / ARTIFACTS / "evaluate" / picture).stat().st_size > 1000


def test_repro_stores_record_the_stage_that_wrote_them(project: Path) -> None:
    stores = {"cues/cues.zarr": CueStore, "export/pseudo_labels.zarr": LabelStore,
              "export/evidence.zarr": EvidenceStore, "crf/crf_labels.zarr": LabelStore}
    origins = {store: reader(project / ARTIFACTS / store).provenance for store, reader in stores.items()}
    for store, origin in origins.items():
        assert origin["stage"] == store.split("/")[0]
        assert all(len(origin[key]) == 64 for key in ("params_sha256", "inputs_sha256"))
    assert origins["export/pseudo_labels.zarr"] == origins["export/evidence.zarr"] != origins["crf/crf_labels.zarr"]


def test_report_lists_every_figure_with_the_dgcn_network_on_val(project: Path) -> None:
    summary = json.loads((project / ARTIFACTS / "evaluate/summary.json").read_text())
    result = CliRunner().invoke(app, ["report", "--summary", str(project / ARTIFACTS / "evaluate/summary.json")])
    assert result.exit_code == 0, result.output
    rows = {fields[-2]: fields[-1] for fields in map(str.split, result.output.splitlines())
            if len(fields) > 2 and fields[-2].endswith("_miou")}
    assert set(rows) == SUMMARY_KEYS
    assert rows["dgcn_val_miou"] == f"{summary['dgcn_val_miou']:.3f}"
    assert "DGCN network, multi-scale + flip (val)" in result.output


def test_status_and_metrics_are_quiet(project: Path) -> None:
    assert "up to date" in dvc("status", cwd=project)
    metrics = dvc("metrics", "show", cwd=project)
    assert "cam_baseline_miou" in metrics and "failed" not in metrics.lower()


def test_per_class_chart_has_numbers_on_x_and_classes_on_y(project: Path) -> None:
    specs = json.loads(dvc("plots", "show", "--json", cwd=project))["data"]
    (chart,) = specs[str(ARTIFACTS / "evaluate/per_class_iou.csv")]
    encoding = chart["content"]["encoding"]
    assert encoding["x"]["field"] == "val_iou" and encoding["x"]["type"] == "quantitative"
    assert encoding["y"]["field"] == "class" and encoding["y"]["type"] == "nominal"
    values = chart["content"]["data"]["values"]
    assert [row["class"] for row in values] == ["background", "disc", "square", "triangle", "ellipse", "cross"]
    assert all(0.0 <= float(row["val_iou"]) <= 1.0 for row in values)


def test_second_repro_does_nothing(project: Path) -> None:
    assert ran_stages(dvc("repro", cwd=project)) == set()


def test_forced_rerun_gives_identical_artifacts(project: Path) -> None:
    before = lock_hashes(project)
    dvc("repro", "--force", cwd=project)
    assert lock_hashes(project) == before


@pytest.mark.parametrize(("path", "importers"), [
    ("dgcn/metrics.py", ("cues", "export", "crf", "evaluate")),
    ("stages/schemas/crf.py", ("crf",)),  # a stage's schema: that stage alone, not those before it
])
def test_editing_a_module_changes_exactly_the_stages_that_import_it(project: Path, path: str,
                                                                     importers: tuple[str, ...]) -> None:
    module = project / path
    original = module.read_text()
    module.write_text(original + "\n# an edit\n")
    try:
        status = json.loads(dvc("status", "--json", cwd=project))
    finally:
        module.write_text(original)
    changed = {name for name, changes in status.items() if any(path in change.get("changed deps", {})
                                                               for change in changes)}
    assert changed == {f"{stage}@synthetic" for stage in importers}
    assert set(status) == changed  # nothing else changed: the stages after them rerun only once their inputs do


def test_parameter_change_reruns_only_downstream_stages(project: Path) -> None:
    edit_yaml(project / "pipelines/synthetic.yaml", {"crf": {"grown_confidence": 0.8}})
    assert ran_stages(dvc("repro", cwd=project)) == {"crf@synthetic", "retrain@synthetic", "evaluate@synthetic"}


def test_push_then_pull_in_a_fresh_clone_restores_identical_pseudo_labels(project: Path, tmp_path: Path) -> None:
    dvc("remote", "add", "-f", "-d", "shared", str(tmp_path / "remote"), cwd=project)
    dvc("push", cwd=project)
    git("add", "-A", cwd=project)
    git("commit", "-qm", "pipeline run", cwd=project)
    clone = tmp_path / "clone"
    git("clone", "-q", str(project), str(clone), cwd=tmp_path)
    dvc("pull", cwd=clone)  # exits 0, or the helper fails the test
    store = ARTIFACTS / "export/pseudo_labels.zarr"
    files = sorted(p.relative_to(project / store) for p in (project / store).rglob("*") if p.is_file())
    assert files, "the pseudo-label store is empty"
    _, mismatch, errors = filecmp.cmpfiles(project / store, clone / store, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors
    assert ran_stages(dvc("repro", cwd=clone)) == set()
    assert "up to date" in dvc("status", cwd=clone)

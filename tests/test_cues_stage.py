"""The cues stage on the vendored real photos: saliency-guided background from a folder under the data root, and the
published DSRG/DGCN pickle imported with its own image labels."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_stage_errors import REPO, invoke, prepare_voc_mini, set_param, workdir  # noqa: F401 (workdir: a fixture)

from dgcn.cues import CueStore, load_saliency

# A tiny classifier: 64-pixel inputs at output stride 4 give a 16 x 16 cue grid.
TINY_CUES = {"arch": "small", "arch_options": {"width": 8}, "pretrained": None, "device": "cpu", "input_size": 64,
             "epochs": 1, "batch_size": 3}
GRID = 16
TRAIN = ["2011_000003", "2011_000006", "2011_000025"]  # mask classes {5, 15}, {9, 15, 18}, {6, 7}


@pytest.fixture
def voc_root(workdir: Path, voc_mini: Path) -> Path:  # noqa: F811 (the fixture imported above)
    """A writable copy of the vendored photos, prepared, with the tiny classifier configured."""
    root = workdir / "data"
    shutil.copytree(voc_mini, root)
    prepare_voc_mini(root)
    set_param(workdir / "voc.yaml", "cues", **TINY_CUES)
    return root


def run_cues() -> tuple[int, str]:
    return invoke("cues", "--manifest", "a/prepare/manifest.json", "--out", "a/cues")


def test_background_comes_from_saliency_maps_under_the_data_root(voc_root: Path) -> None:
    (voc_root / "Saliency").mkdir()
    for name in TRAIN:  # stand-in saliency: every object pixel (borders included) salient
        mask = np.asarray(Image.open(voc_root / "SegmentationClassAug" / f"{name}.png"))
        Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8)).save(voc_root / "Saliency" / f"{name}.png")
    code, output = run_cues()
    assert code == 0, output
    store = CueStore("a/cues/cues.zarr")
    assert store.grid == GRID
    for i, name in enumerate(TRAIN):
        size = np.asarray(Image.open(voc_root / "JPEGImages" / f"{name}.jpg")).shape[:2]
        low = load_saliency(voc_root / "Saliency" / f"{name}.png", size, GRID) < 0.07  # params.yaml's threshold
        assert np.array_equal(store[i][0].astype(bool), low & ~store[i][1:].any(axis=0))
        assert store[i][0].sum() > 20  # real background cues
    # background cues only where no object is near: on the grid, nearly all of them are ground-truth background
    assert json.loads(Path("a/cues/metrics.json").read_text())["cue_precision"] > 0.5


def test_a_missing_saliency_folder_is_named_before_training(voc_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stages.cues.train_classifier", lambda *args, **kwargs: pytest.fail("trained first"))
    code, output = run_cues()
    assert code == 1
    assert f"saliency folder not found: {voc_root / 'Saliency'}" in output and "null" in output
    assert not Path("a/cues").exists()


def _write_published(folder: Path, pickle_name: str = "localization_cues.pickle") -> None:
    """A DSRG-format pickle (spec section 1) over the training images in another order, with its own labels: one
    image agrees with its mask, one lacks a mask class (9, 18), one has a class its mask lacks (14) and a cue for it."""
    published = {
        "0_labels": np.array([6, 7, 14]),  # 2011_000025: mask {6, 7}
        "0_cues": (np.array([0, 6, 7, 14]), np.array([0, 5, 6, 7]), np.array([0, 5, 6, 7])),
        "1_labels": np.array([5, 15]),  # 2011_000003: as its mask
        "1_cues": (np.array([0, 5, 15, 15]), np.array([1, 2, 3, 3]), np.array([1, 2, 3, 4])),
        "2_labels": np.array([15]),  # 2011_000006: mask {9, 15, 18}
        "2_cues": (np.array([0, 15]), np.array([0, 8]), np.array([15, 8])),
    }
    folder.mkdir()
    (folder / pickle_name).write_bytes(pickle.dumps(published, protocol=2))
    (folder / "input_list.txt").write_text("/JPEGImages/2011_000025.jpg 0\n/JPEGImages/2011_000003.jpg 1\n"
                                           "/JPEGImages/2011_000006.jpg 2\n")


def test_published_cues_keep_their_own_labels_and_report_the_mismatch(voc_root: Path, workdir: Path) -> None:  # noqa: F811
    _write_published(voc_root / "published")
    # Paths relative to the data root; no saliency folder is needed when the cues are imported.
    set_param(workdir / "voc.yaml", "cues", source="dsrg", path="published/localization_cues.pickle",
              input_list="published/input_list.txt")
    code, output = run_cues()
    assert code == 0, output
    metrics = json.loads(Path("a/cues/metrics.json").read_text())
    assert metrics["published_label_mismatch"] == 2
    store = CueStore("a/cues/cues.zarr")
    assert list(store.names) == TRAIN
    assert [np.flatnonzero(row).tolist() for row in store.image_labels] == [[0, 5, 15], [0, 15], [0, 6, 7, 14]]
    assert store[2][14, 7, 7] == 1 and store[2].sum() == 4  # the cue of the class its mask lacks is kept
    assert store[0][15, 3, 3] == store[0][15, 3, 4] == store[0][5, 2, 2] == store[0][0, 1, 1] == 1
    assert store[1][15, 8, 8] == store[1][0, 0, 15] == 1 and store[1].sum() == 2


def test_the_published_config_imports_the_pickle_where_the_docs_put_it(voc_root: Path, workdir: Path) -> None:  # noqa: F811
    """pipelines/voc12_published.yaml as committed (tiny classifier settings added): the pickle and list named in
    docs/voc.md under the data root are imported, and no saliency folder is needed."""
    config = yaml.safe_load((REPO / "pipelines/voc12_published.yaml").read_text())
    config["cues"] |= TINY_CUES
    (workdir / "published.yaml").write_text(yaml.safe_dump(config))
    _write_published(voc_root / "published", "localization_cues-sal.pickle")
    assert not (voc_root / "Saliency").exists()
    code, output = invoke("cues", "--manifest", "a/prepare/manifest.json", "--out", "a/cues", config="published.yaml")
    assert code == 0, output
    assert json.loads(Path("a/cues/metrics.json").read_text())["published_label_mismatch"] == 2
    assert CueStore("a/cues/cues.zarr")[2][14, 7, 7] == 1  # the pickle's cue, not one of our CAM's


def test_cam_labels_are_the_scored_cam_baseline(voc_root: Path) -> None:
    """cam_labels.zarr: one map per training image at its size, over background and the image's classes; the
    cam_baseline_miou metric is the mIoU of exactly those maps."""
    from dgcn.metrics import ConfusionMatrix
    from dgcn.storage import LabelStore

    set_param(Path("voc.yaml"), "cues", saliency_dir=None)
    code, output = run_cues()
    assert code == 0, output
    store, scored = LabelStore("a/cues/cam_labels.zarr"), ConfusionMatrix(21)
    for i, name in enumerate(TRAIN):
        mask = np.asarray(Image.open(voc_root / "SegmentationClassAug" / f"{name}.png"))
        assert store[i].shape == mask.shape
        assert set(np.unique(store[i])) <= {0} | set(np.unique(mask)) - {255}
        scored.add(mask, store[i])
    metrics = json.loads(Path("a/cues/metrics.json").read_text())
    assert metrics["cam_baseline_miou"] == pytest.approx(scored.miou())

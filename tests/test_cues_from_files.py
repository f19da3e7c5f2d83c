"""The cues stage reading another method's files (cues.source) on a tiny synthetic data set: our own CAMs written as
IRN-style dicts or plain arrays give back exactly the classifier's cues and baseline; seed PNGs become cues as they
are; bad folders stop the stage with one line; the classifier.pt it writes says why it holds no classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from stage_chain import invoke, write_config
from typer.testing import CliRunner

from dgcn.cam import compute_cams
from dgcn.cue_files import seeds_on_grid
from dgcn.cues import CueStore
from dgcn.data.synthetic import generate
from dgcn.model_files import load_model
from dgcn.storage import LabelStore
from stages.app import app
from stages.manifest import Manifest
from tools.probes.own_seeds import eroded_seeds, write_irn_cams, write_seed_pngs

REPO = Path(__file__).resolve().parents[1]
# 64-pixel images, 64-pixel classifier inputs at output stride 4: a 16 x 16 cue grid, 4 x 4 pixels per cell
CONFIG = {"prepare": {"classes": "synthetic"}, "cues": {"input_size": 64, "epochs": 2, "saliency_dir": None}}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic data set, prepared, and the cues stage run on our own classifier (in `ours/`)."""
    root = tmp_path_factory.mktemp("files")
    generate(root / "data", num_train=10, num_val=2, image_size=64, seed=0)
    write_config(root / "config.yaml", CONFIG)
    invoke("prepare", *common(root), "--root", root / "data", "--out", root / "prepare")
    invoke("cues", *common(root), "--manifest", root / "prepare/manifest.json", "--out", root / "ours")
    return root


def common(root: Path, config: str = "config.yaml") -> list:
    return ["--config", root / config, "--defaults", REPO / "params.yaml"]


def run_cues(root: Path, out: str, **cues: object) -> tuple[int, str]:
    """The cues stage with `cues` over the module's config, into root/out."""
    config = yaml.safe_load((root / "config.yaml").read_text())
    config["cues"] |= cues
    (root / f"{out}.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["cues", *map(str, common(root, f"{out}.yaml")), "--manifest",
                                      str(root / "prepare/manifest.json"), "--out", str(root / out)])
    return result.exit_code, result.output


def our_cams(root: Path) -> tuple[Manifest, np.ndarray]:
    """The manifest, and the grid CAMs of ours/classifier.pt as the cues stage computes them."""
    data = Manifest.load(root / "prepare/manifest.json")
    cams = compute_cams(load_model(root / "ours/classifier.pt", "classifier"), data.train.dataset.image,
                        data.train.names, input_size=64)
    return data, cams


def assert_same_cues(root: Path, out: str) -> None:
    """root/out's cues, image labels, baseline labels and figures are ours/'s."""
    ours, theirs = CueStore(root / "ours/cues.zarr"), CueStore(root / out / "cues.zarr")
    assert np.array_equal(np.stack(list(ours)), np.stack(list(theirs)))
    assert np.array_equal(ours.image_labels, theirs.image_labels)
    ours_cam, theirs_cam = LabelStore(root / "ours/cam_labels.zarr"), LabelStore(root / out / "cam_labels.zarr")
    assert all(np.array_equal(a, b) for a, b in zip(ours_cam, theirs_cam, strict=True))
    mine, other = (json.loads((root / folder / "metrics.json").read_text()) for folder in ("ours", out))
    assert {key: other[key] for key in mine} == mine


def test_our_cams_in_the_irn_format_give_our_cues_exactly(project: Path) -> None:
    data, cams = our_cams(project)
    assert np.stack(list(CueStore(project / "ours/cues.zarr"))).sum() > 0
    write_irn_cams(project / "data/irn", data.train.names, data.train.sizes, data.train.classes, cams)
    code, output = run_cues(project, "irn", source="irn_cam", path="irn")
    assert code == 0, output
    assert_same_cues(project, "irn")
    assert json.loads((project / "irn/metrics.json").read_text())["file_label_mismatch"] == 0


def test_plain_cam_arrays_of_every_class_give_our_cues_exactly(project: Path) -> None:
    data, cams = our_cams(project)
    (project / "data/arrays").mkdir()
    for name, cam in zip(data.train.names, cams, strict=True):
        np.save(project / f"data/arrays/{name}.npy", cam.repeat(4, axis=1).repeat(4, axis=2))
    code, output = run_cues(project, "arrays", source="cam_npy", path="arrays")
    assert code == 0, output
    assert_same_cues(project, "arrays")


@pytest.fixture(scope="module")
def seeds(project: Path) -> list[np.ndarray]:
    """The masks eroded to 30% of each region as seed PNGs, and the cues stage run on them (in `seeds/`)."""
    train = Manifest.load(project / "prepare/manifest.json").train
    seeds = [eroded_seeds(train.dataset.mask(name), 0.3) for name in train.names]
    write_seed_pngs(project / "data/seeds", train.names, seeds)
    code, output = run_cues(project, "seeds", source="seed_png", path="seeds")
    assert code == 0, output
    return seeds


def test_seed_pngs_become_the_cues_and_the_baseline_labels(project: Path, seeds: list[np.ndarray]) -> None:
    store = CueStore(project / "seeds/cues.zarr")
    assert store.grid == 16
    assert np.array_equal(store.image_labels, Manifest.load(project / "prepare/manifest.json").train.image_labels())
    for i, seed in enumerate(seeds):
        assert np.array_equal(store[i], seeds_on_grid(seed, 6, 16))
        assert np.array_equal(LabelStore(project / "seeds/cam_labels.zarr")[i], seed)
    metrics = json.loads((project / "seeds/metrics.json").read_text())
    assert "cam_baseline_miou" not in metrics and "seeds, not CAMs" in metrics["cam_baseline_not_scored"]
    assert metrics["file_label_mismatch"] == 0 and metrics["cue_precision"] > 0.95
    assert (project / "seeds/train_log.csv").read_text() == "\n"


def test_training_from_the_absent_classifier_says_why(project: Path, seeds: list[np.ndarray],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["train-dgcn", *map(str, common(project)), "--manifest",
                                      str(project / "prepare/manifest.json"), "--cues",
                                      str(project / "seeds/cues.zarr"), "--classifier",
                                      str(project / "seeds/classifier.pt"), "--out", str(project / "dgcn")])
    assert result.exit_code == 1
    assert ("seeds/classifier.pt holds no trained classifier: cues.source is seed_png, so no classifier was trained; "
            "set init_from_classifier: false") in " ".join(result.output.split())
    assert not (project / "dgcn").exists()


def test_seeds_of_a_class_the_image_lacks_are_dropped_and_counted(project: Path) -> None:
    train = Manifest.load(project / "prepare/manifest.json").train
    absent = next(c for c in range(1, 6) if c not in train.classes[0])
    seeds = [train.dataset.mask(name) for name in train.names]
    seeds[0] = seeds[0].copy()
    seeds[0][:4, :4] = absent
    write_seed_pngs(project / "data/foreign", train.names, seeds)
    code, output = run_cues(project, "foreign", source="seed_png", path="foreign")
    assert code == 0, output
    assert json.loads((project / "foreign/metrics.json").read_text())["file_label_mismatch"] == 1
    assert CueStore(project / "foreign/cues.zarr")[0][absent].sum() == 0


def test_a_class_list_maps_the_files_indices(project: Path) -> None:
    train = Manifest.load(project / "prepare/manifest.json").train
    # the files count ellipse, cross, disc, square, triangle: data set class c is file class order[c]
    order = np.array([0, 3, 4, 5, 1, 2, *[0] * 249, 255], dtype=np.uint8)
    write_seed_pngs(project / "data/listed", train.names, [order[train.dataset.mask(name)] for name in train.names])
    (project / "data/listed.txt").write_text("ellipse\ncross\ndisc\nsquare\ntriangle\n")
    code, output = run_cues(project, "listed", source="seed_png", path="listed", class_list="listed.txt")
    assert code == 0, output
    code, output = run_cues(project, "unlisted", source="seed_png", path="listed")  # read as the data set's order
    assert code == 0, output
    write_seed_pngs(project / "data/masks", train.names, [train.dataset.mask(name) for name in train.names])
    code, output = run_cues(project, "masks", source="seed_png", path="masks")
    assert code == 0, output
    listed, masks = CueStore(project / "listed/cues.zarr"), CueStore(project / "masks/cues.zarr")
    assert all(np.array_equal(a, b) for a, b in zip(listed, masks, strict=True))
    assert not np.array_equal(CueStore(project / "unlisted/cues.zarr")[0], masks[0])
    (project / "data/listed.txt").write_text("ellipse\ndog\n")
    code, output = run_cues(project, "bad_list", source="seed_png", path="listed", class_list="listed.txt")
    assert code == 1 and "listed.txt: class 'dog' is not a class of the data set" in output


@pytest.mark.parametrize(("cues", "message"), [
    ({"source": "irn_cam", "path": "nowhere"}, "cue folder not found: "),
    ({"source": "seed_png", "path": None}, "cues.path: source seed_png reads files: name them"),
    ({"source": "dsrg", "path": "x.pickle", "input_list": None}, "cues.input_list: source dsrg needs the pickle's"),
    ({"published_cues": "x.pickle"}, "cues.published_cues: renamed: write source: dsrg, path: <the pickle>"),
    ({"path": "seeds"}, "cues.path: source classifier reads no files: set cues.source to their format"),
])
def test_bad_sources_are_named_in_one_line(project: Path, cues: dict, message: str) -> None:
    code, output = run_cues(project, "bad", **cues)
    assert code == 1 and message in output and len(output.strip().splitlines()) == 1, output
    assert not (project / "bad").exists()


def test_a_missing_file_names_the_image(project: Path) -> None:
    train = Manifest.load(project / "prepare/manifest.json").train
    (project / "data/partial").mkdir()
    for name in train.names[1:]:
        np.save(project / f"data/partial/{name}.npy", np.zeros((5, 64, 64), np.float32))
    code, output = run_cues(project, "partial", source="cam_npy", path="partial")
    assert code == 1 and f"no .npy file for training image(s) {train.names[0]}" in output
    np.save(project / f"data/partial/{train.names[0]}.npy", np.zeros((5, 64, 60), np.float32))
    code, output = run_cues(project, "partial", source="cam_npy", path="partial")
    assert code == 1 and "CAMs are 64x60, the image 64x64" in output

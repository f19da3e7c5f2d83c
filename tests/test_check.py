"""`dgcn check <dataset>`: a good data set passes (exit 0); each kind of problem gives its one line and exit 1.

The project is a temporary copy of params.yaml and pipelines/ with data/mini/ a copy of tests/data/voc-mini (3 train
and 7 val photos with masks), a saliency map per training image, and the tiny CPU network of the stage-chain tests
loading a trunk file of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from dvc_project import REPO, VOC_MINI
from PIL import Image
from stage_chain import write_config, write_generic
from typer.testing import CliRunner

from dgcn.cues import export_published_cues
from dgcn.models.registry import build_segmenter
from stages.app import app
from tools import check

TRAIN = ["2011_000003", "2011_000006", "2011_000025"]
NETWORKS = ("cues", "train_dgcn", "retrain")


def run_check(*args: str) -> tuple[int, list[str]]:
    """`dgcn check mini` in the current folder: its exit status and lines."""
    result = CliRunner().invoke(app, ["check", "mini", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output.splitlines()


def problems(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("problem: ")]


def configure(changes: dict) -> None:
    """Merge `changes` into pipelines/mini.yaml."""
    path = Path("pipelines/mini.yaml")
    config = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        config[section] = {**config[section], **values}
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project root as the current folder; data/mini and pipelines/mini.yaml ready for a run."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "pipelines", root / "pipelines")
    params = (REPO / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("\ndatasets: [synthetic]\n", "\ndatasets: [synthetic, mini]\n"))
    data = root / "data" / "mini"
    shutil.copytree(VOC_MINI, data)
    (data / "Saliency").mkdir()
    for name in TRAIN:
        width, height = Image.open(data / "JPEGImages" / f"{name}.jpg").size
        Image.fromarray(np.full((height, width), 128, dtype=np.uint8)).save(data / "Saliency" / f"{name}.png")
    (root / "weights").mkdir()
    trunk = build_segmenter("small", 21, width=8).trunk.state_dict()
    torch.save(trunk, root / "weights" / "trunk.pt")
    write_config(root / "pipelines" / "mini.yaml", {
        "cues": {"saliency_dir": "Saliency"}, **{section: {"pretrained": "weights/trunk.pt"} for section in NETWORKS}})
    monkeypatch.chdir(root)
    return root


def test_a_good_data_set_passes_with_a_line_per_thing_checked(project: Path) -> None:
    code, lines = run_check()
    assert code == 0, "\n".join(lines)
    assert problems(lines) == []
    assert lines[-1] == "check mini: no problem found; next: dvc repro evaluate@mini"
    assert "ok: data: data/mini (voc): 3 train + 7 val images that pass, 10 with a mask, 21 classes; sizes from the " \
           "file headers (--decode: every pixel)" in lines
    assert "ok: saliency: data/mini/Saliency: a map of its image's size for each of the 3 training images" in lines
    assert ("ok: weights: cues.pretrained, train_dgcn.pretrained, retrain.pretrained weights/trunk.pt: "
            "weights/trunk.pt loads (weights_only) and fits small's SmallTrunk") in lines
    assert any(line.startswith("ok: devices: cpu for cues, train_dgcn, export, retrain, evaluate; ") for line in lines)
    disk = next(line for line in lines if line.startswith("ok: disk: "))
    assert "artifacts/mini needs at most" in disk and "3 training images of" in disk and "GiB free on" in disk
    # --decode reads every pixel of the same files: still good
    assert run_check("--decode")[0] == 0


@pytest.mark.parametrize(("damage", "line"), [
    (lambda root: (root / "ImageSets/Segmentation/val.txt").unlink(),
     "problem: split list not found: data/mini/ImageSets/Segmentation/val.txt"),
    (lambda root: (root / "JPEGImages/2011_000006.jpg").unlink(),
     "problem: image not found: data/mini/JPEGImages/2011_000006.jpg"),
    (lambda root: (root / "JPEGImages/val_crop_008.jpg").write_bytes(b"no picture"),
     "problem: unreadable or corrupt image: data/mini/JPEGImages/val_crop_008.jpg (cannot identify image file "
     "'data/mini/JPEGImages/val_crop_008.jpg')"),
    (lambda root: Image.new("P", (40, 30)).save(root / "SegmentationClassAug/2011_000025.png"),
     "problem: mask size 40x30 differs from its image 500x375: data/mini/SegmentationClassAug/2011_000025.png"),
    (lambda root: (root / "Saliency/2011_000003.png").unlink(),
     "problem: saliency map not found: data/mini/Saliency/2011_000003.png"),
    (lambda root: Image.new("L", (30, 40)).save(root / "Saliency/2011_000003.png"),
     "problem: data/mini/Saliency/2011_000003.png: saliency map is 40x30, its image 338x500"),
], ids=["missing list", "missing image", "unreadable image", "mask size", "missing saliency", "saliency size"])
def test_each_data_problem_gives_its_line_and_exit_1(project: Path, damage, line: str) -> None:
    damage(project / "data" / "mini")
    code, lines = run_check()
    assert code == 1
    assert problems(lines) == [line]
    assert lines[-1].startswith("check mini: 1 problem (") and lines[-1].endswith("before `dvc repro evaluate@mini`")


def test_a_mask_value_out_of_range_needs_decode(project: Path) -> None:
    mask_path = project / "data/mini/SegmentationClassAug/val_crop_000.png"
    mask = np.asarray(Image.open(mask_path)).copy()
    mask[0, 0] = 50
    Image.fromarray(mask).save(mask_path)
    assert run_check()[0] == 0  # the headers are right
    code, lines = run_check("--decode")
    assert code == 1
    assert problems(lines) == ["problem: mask values [50] outside the class range 0..20 (and 255 = ignore): "
                               "data/mini/SegmentationClassAug/val_crop_000.png"]


def test_many_problems_of_a_kind_are_counted_past_the_limit(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "LINES_PER_TOPIC", 2)
    for path in (project / "data/mini/JPEGImages").glob("val_crop_*.jpg"):
        path.unlink()
    code, lines = run_check()
    assert code == 1
    shown = problems(lines)
    assert len(shown) == 3 and all(line.startswith("problem: image not found: ") for line in shown[:2])
    assert shown[2] == "problem: ... and 5 more data problems like these"
    assert lines[-1].startswith("check mini: 7 problems (data 7)")


def write_cue_pickle(root: Path, names: list[str], grid: int = 16) -> None:
    """data/mini/cues.pickle and input_list.txt of `names`: background-only cue maps on the small net's grid."""
    labels = np.zeros((len(names), 21), dtype=np.uint8)
    labels[:, 0] = 1
    export_published_cues(root / "cues.pickle", root / "input_list.txt", names,
                          np.zeros((len(names), 21, grid, grid), dtype=np.uint8), labels)
    configure({"cues": {"source": "dsrg", "path": "cues.pickle", "input_list": "input_list.txt"}})


def test_seed_files_of_every_training_image_pass_and_a_missing_one_is_named(project: Path) -> None:
    folder = project / "data/mini/seeds"
    folder.mkdir()
    for name in TRAIN:
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / f"{name}.png")  # the check reads names, not pixels
    configure({"cues": {"source": "seed_png", "path": "seeds"}})
    code, lines = run_check()
    assert code == 0, "\n".join(lines)
    assert "ok: cues: data/mini/seeds holds one .png file per training image (3)" in lines
    (folder / f"{TRAIN[1]}.png").unlink()
    code, lines = run_check()
    assert code == 1 and problems(lines) == [f"problem: data/mini/seeds: no .png file for training image(s) "
                                             f"{TRAIN[1]}"]


def test_a_cue_pickle_covering_the_training_images_passes(project: Path) -> None:
    write_cue_pickle(project / "data/mini", TRAIN)
    code, lines = run_check()
    assert code == 0, "\n".join(lines)
    assert ("ok: cues: data/mini/cues.pickle holds 3 images' cues on the 16x16 grid, every training image among them"
            in lines)


def test_a_training_image_missing_from_the_cue_list(project: Path) -> None:
    write_cue_pickle(project / "data/mini", TRAIN[:2])
    code, lines = run_check()
    assert code == 1
    assert problems(lines) == ["problem: data/mini/cues.pickle: no cues for training image '2011_000025' (not in "
                               "data/mini/input_list.txt)"]


def test_a_listed_image_missing_from_the_cue_pickle(project: Path) -> None:
    write_cue_pickle(project / "data/mini", TRAIN)
    with (project / "data/mini/input_list.txt").open("a") as file:
        file.write("extra.jpg 3\n")
    code, lines = run_check()
    assert code == 1
    assert problems(lines) == ["problem: data/mini/cues.pickle, image 'extra' (idx 3): keys '3_labels' / '3_cues' "
                               "are missing"]


def test_a_missing_weights_file(project: Path) -> None:
    configure({"train_dgcn": {"pretrained": "weights/missing.pt"}})
    code, lines = run_check()
    assert code == 1
    assert problems(lines) == ["problem: train_dgcn.pretrained: pretrained weights file not found: weights/missing.pt "
                               "(pass an existing state-dict file)"]


def test_weights_with_the_wrong_keys(project: Path) -> None:
    state = torch.load(project / "weights/trunk.pt", weights_only=True)
    state["extra.weight"] = state.pop("stem.0.weight")
    torch.save(state, project / "weights/other.pt")
    configure({section: {"pretrained": "weights/other.pt"} for section in NETWORKS})
    code, lines = run_check()
    assert code == 1
    assert problems(lines) == ["problem: cues.pretrained, train_dgcn.pretrained, retrain.pretrained: weights/other.pt "
                               "does not fit SmallTrunk: 1 missing keys ['stem.0.weight'], 1 unexpected keys "
                               "['extra.weight']"]


def test_imagenet_weights_missing_from_the_cache_say_where_to_put_them(project: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    configure({"cues": {"arch": "deeplab_v2", "arch_options": {}, "pretrained": "imagenet"}})
    code, lines = run_check()
    assert code == 1
    [line] = problems(lines)
    assert line.startswith("problem: cues.pretrained: ImageNet weights not found; tried ")
    assert f"into {tmp_path / 'hub' / 'checkpoints'}" in line and "dgcn never downloads" in line


def test_cuda_asked_for_on_a_machine_without_it(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    configure({"train_dgcn": {"device": "cuda"}, "retrain": {"device": "cuda"}})
    code, lines = run_check()
    assert code == 1
    assert problems(lines) == ["problem: train_dgcn.device, retrain.device: 'cuda' requested but no CUDA device is "
                               "available (use cpu or auto)"]


def test_too_little_free_disk(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100 * 2**30, 0, 2**20))
    code, lines = run_check()
    assert code == 1
    [line] = problems(lines)
    assert line.startswith("problem: artifacts/mini needs at most ")
    assert line.endswith(f" 0.0 GiB free on {project.resolve()}")


def test_a_data_set_that_params_yaml_does_not_run(project: Path) -> None:
    Path("params.yaml").write_text(Path("params.yaml").read_text().replace("[synthetic, mini]", "[synthetic]"))
    code, lines = run_check()
    assert code == 1
    assert problems(lines) == ["problem: params.yaml: datasets ['synthetic'] lacks 'mini': dvc has no stage "
                               "evaluate@mini (add the name there)"]


def test_a_gpu_index_beyond_the_visible_ones(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    configure({"export": {"device": "cuda:1"}})
    code, lines = run_check()
    assert code == 1
    assert problems(lines) == ["problem: export.device: 'cuda:1' requested but 1 CUDA device is visible "
                               "(cuda:0..cuda:0)"]


def test_your_own_layout_is_checked_by_its_own_reader(project: Path) -> None:
    shutil.rmtree("data/mini")
    names = write_generic(Path("data/mini"), 6, masked={0})
    Path("data/mini/images", names[3]).unlink()
    configure({"prepare": {"format": "generic", "generic": {"masks": "masks"}}, "cues": {"saliency_dir": None}})
    code, lines = run_check()
    assert code == 1
    assert problems(lines) == [f"problem: data/mini/labels.csv:5: image not found: data/mini/images/{names[3]}"]
    assert any(line.startswith("ok: data: data/mini (generic): ") for line in lines)

"""`dgcn add-dataset`: a folder of images and a tags file registered as a data set in one command; bad input is one
line and writes nothing; and (slow) from there to `dvc repro evaluate@<name>` on the CPU."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from dvc_project import REPO, dvc, make_project, run
from PIL import Image
from stage_chain import write_generic
from typer.testing import CliRunner

from stages.app import app
from stages.params import load_params
from tools.add_dataset import SIZED, STAGE_SECTIONS
from tools.params_schema import SECTIONS

DATASETS = "\ndatasets: [synthetic]\n"
# The command as the README has it (`dgcn add-dataset`), in a subprocess.
COMMAND = [sys.executable, "-m", "stages", "add-dataset"]


def add_dataset(*args: str | Path) -> tuple[int, str]:
    """Run `dgcn add-dataset` in the current folder (bad input: one line, exit 1)."""
    result = CliRunner().invoke(app, ["add-dataset", *(str(arg) for arg in args)])
    return result.exit_code, result.output


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root (params.yaml, pipelines/) as the current folder."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "pipelines", root / "pipelines")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Eight 32x40 images of two classes, tags in labels.csv, masks of two, outside the project."""
    write_generic(tmp_path / "photos", 8, masked={0, 1})
    return tmp_path / "photos"


def written(name: str) -> dict:
    return yaml.safe_load(Path(f"pipelines/{name}.yaml").read_text())


def loaded(section: str, config: Path | None) -> dict:
    return load_params(section, SECTIONS[section], config=config).model_dump()


def test_a_copy_the_cpu_preset_and_the_name_in_params_then_the_next_command(project: Path, photos: Path) -> None:
    code, output = add_dataset("pets", "--images", photos / "images", "--labels", photos / "labels.csv", "--masks",
                               photos / "masks")
    assert code == 0, output
    assert output.splitlines()[0] == "pets: 8 images (2 with a mask, 0 background-only), classes disc, square"
    assert output.splitlines()[-1] == "next: dvc repro evaluate@pets"
    assert sorted(path.name for path in Path("data/pets").iterdir()) == ["images", "labels.csv", "masks"]
    assert Path("data/pets/labels.csv").read_bytes() == (photos / "labels.csv").read_bytes()
    assert len(list(Path("data/pets/images").iterdir())) == 8 and "/pets" in Path("data/.gitignore").read_text()
    # params.yaml: the one line changed, its comments kept
    assert Path("params.yaml").read_text() == (REPO / "params.yaml").read_text().replace(
        DATASETS, "\ndatasets: [synthetic, pets]\n")
    # every stage's section, only what differs: the embedded default's small net at the images' size (64: clamped)
    config = Path("pipelines/pets.yaml")
    assert config.read_text().startswith("# pets: ") and list(written("pets")) == STAGE_SECTIONS
    assert written("pets")["prepare"] == {"format": "generic", "generic": {"masks": "masks"}}
    assert written("pets")["graph_cut"] == {}
    for section in STAGE_SECTIONS:
        loaded(section, config)  # valid params, as each stage loads them
    embedded = Path("pipelines/synthetic.yaml")
    for section, key in SIZED.items():
        ours, theirs = loaded(section, config), loaded(section, embedded)
        assert [name for name in ours if ours[name] != theirs[name]] == [key] and ours[key] == 64
    assert loaded("crf", config)["grown_confidence"] == loaded("crf", None)["grown_confidence"]  # synthetic's own
    assert loaded("evaluate", config) == loaded("evaluate", embedded)


def test_the_gpu_preset_writes_the_layout_alone(project: Path, photos: Path) -> None:
    code, output = add_dataset("pets", "--images", photos / "images", "--labels", photos / "labels.csv", "--preset",
                               "gpu")
    assert code == 0, output
    assert written("pets") == {section: {} for section in STAGE_SECTIONS} | {
        "prepare": {"format": "generic"}, "cues": {"saliency_dir": None}}


@pytest.mark.parametrize(("sizes", "expected"), [([(40, 32), (48, 20)], 64), ([(203, 150), (90, 90), (260, 100)], 200),
                                                 ([(640, 480), (500, 375)], 321)])
def test_the_cpu_preset_takes_the_median_long_side(project: Path, tmp_path: Path, sizes: list, expected: int) -> None:
    (tmp_path / "images").mkdir()
    for index, size in enumerate(sizes):
        Image.new("RGB", size, (120, 90, 60)).save(tmp_path / f"images/{index}.png")
    (tmp_path / "tags.csv").write_text("image,tags\n" + "".join(f"{index}.png,cat\n" for index in range(len(sizes))))
    code, output = add_dataset("cats", "--images", tmp_path / "images", "--labels", tmp_path / "tags.csv")
    assert code == 0, output
    assert {loaded(section, Path("pipelines/cats.yaml"))[key] for section, key in SIZED.items()} == {expected}


def test_in_place_json_lines_a_class_list_and_force(project: Path, photos: Path) -> None:
    write_generic(Path("data/pets"), 6)
    code, output = add_dataset("pets", "--images", "data/pets/images", "--labels", "data/pets/labels.csv")
    assert code == 0 and "data: data/pets/ (in place)" in output, output
    assert sorted(path.name for path in Path("data/pets").iterdir()) == ["images", "labels.csv", "masks"]
    assert written("pets")["prepare"] == {"format": "generic"} and not Path("data/.gitignore").exists()
    rows = (line.split(",") for line in (photos / "labels.csv").read_text().splitlines()[1:])
    (photos / "tags.jsonl").write_text("".join(json.dumps({"image": name, "tags": tags}) + "\n" for name, tags in rows))
    (photos / "classes.txt").write_text("square\ndisc\n")
    args = ("pets", "--images", photos / "images", "--labels", photos / "tags.jsonl", "--classes",
            photos / "classes.txt")
    assert add_dataset(*args) == (1, "error: data/pets and pipelines/pets.yaml already exist: choose another name, or "
                                     "--force to replace\n")
    code, output = add_dataset(*args, "--force")
    assert code == 0 and "classes square, disc" in output, output
    assert sorted(path.name for path in Path("data/pets").iterdir()) == ["classes.txt", "images", "labels.jsonl"]
    assert written("pets")["prepare"]["generic"] == {"labels": "labels.jsonl", "class_list": "classes.txt"}
    assert Path("params.yaml").read_text().count("pets") == 1


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _bad_header(photos: Path) -> None:
    (photos / "labels.csv").write_text("img,tag\nimg00.png,disc\n")


def _missing_image(photos: Path) -> None:
    (photos / "images/img03.jpg").unlink()


def _datasets_as_a_block(photos: Path) -> None:
    Path("params.yaml").write_text(Path("params.yaml").read_text().replace(DATASETS, "\ndatasets:\n  - synthetic\n"))


def _existing_data(photos: Path) -> None:
    Path("data/pets").mkdir(parents=True)


@pytest.mark.parametrize(("name", "change", "message"), [
    ("pets", None, "--images: folder not found: {photos}/nope"),
    ("pets", _bad_header, "{photos}/labels.csv:1: expected the header 'image,tags' (or JSON lines), got "
                          "['img', 'tag']"),
    ("pets", _missing_image, "{photos}/labels.csv:5: image not found: {photos}/images/img03.jpg"),
    ("pets", _existing_data, "data/pets already exists: choose another name, or --force to replace"),
    ("pets", _datasets_as_a_block, "params.yaml: expected one line 'datasets: [a, b]' to add the name to; add it there "
                                   "by hand"),
    ("My pets", None, "data set name 'My pets': use a-z, 0-9, _ and - (starting with a letter or digit)"),
    ("cues", None, "data set name 'cues' is a key of params.yaml: choose another"),
    ("synthetic", None, "data set name 'synthetic': the synthesize stage generates that one: choose another"),
])
def test_bad_input_is_one_line_and_writes_nothing(project: Path, photos: Path, name: str, change, message: str) -> None:
    if change is not None:
        change(photos)
    before = snapshot(project)
    images = photos / ("nope" if "nope" in message else "images")
    code, output = add_dataset(name, "--images", images, "--labels", photos / "labels.csv")
    assert (code, output) == (1, f"error: {message.format(photos=photos)}\n")
    assert snapshot(project) == before and not Path("pipelines/pets.yaml").exists()


@pytest.mark.slow
def test_from_a_folder_of_images_and_a_csv_to_evaluate_on_the_cpu(tmp_path: Path) -> None:
    """The README's path: `dgcn add-dataset` on 24 images (masks for six, one background-only), then `dvc repro
    evaluate@pets` with the cpu preset as written."""
    root = make_project(tmp_path / "project", ["synthetic"], {})
    shutil.copy(REPO / "params.yaml", root / "params.yaml")  # as shipped, comments and all
    photos = tmp_path / "photos"
    names = write_generic(photos, 24, masked={0, 1, 2, 3, 4, 18})  # 4 and 18: the val split drawn with seed 0
    Image.fromarray(np.full((32, 40, 3), 120, np.uint8)).save(photos / "images" / names[0])  # background-only
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(photos / "masks/img00.png")
    labels = photos / "labels.csv"
    labels.write_text(labels.read_text().replace(f"\n{names[0]},disc square\n", f"\n{names[0]},\n"))
    output = run([*COMMAND, "pets", "--images", str(photos / "images"), "--labels", str(labels), "--masks",
                  str(photos / "masks")], root)
    assert "pets: 24 images (6 with a mask, 1 background-only)" in output, output
    assert output.splitlines()[-1] == "next: dvc repro evaluate@pets"
    dvc("repro", "evaluate@pets", cwd=root)
    summary = json.loads((root / "artifacts/pets/evaluate/summary.json").read_text())
    for key in ("cues_miou", "crf_miou", "dgcn_val_miou", "val_miou", "upper_bound_val_miou"):
        assert 0 <= summary[key] <= 1, (key, summary)
    report = run([sys.executable, "-m", "stages", "report", "--summary", "artifacts/pets/evaluate/summary.json"], root)
    assert "square" in report
    assert not (root / "artifacts/synthetic").exists()

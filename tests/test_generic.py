"""Your own data set: a folder of images and a tags file, with no masks, or masks for some images; the whole chain of
stages runs on it and every mask-based score counts exactly the images with a mask. Bad input names file and row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from stage_chain import read, run_chain, write_config, write_generic
from typer.testing import CliRunner

from dgcn.data.generic import read_labels
from dgcn.metrics import ConfusionMatrix
from dgcn.storage import LabelStore
from stages.app import app
from stages.params import merge

REPO = Path(__file__).resolve().parents[1]
GENERIC = {"prepare": {"format": "generic", "generic": {"val_fraction": 0.25, "seed": 3}},
           "cues": {"saliency_dir": None}}


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # retraining keeps its checkpoints under the current directory
    return tmp_path


@pytest.mark.slow
def test_no_masks_at_all_runs_the_whole_chain_and_reports_what_needs_none(scratch: Path) -> None:
    names = write_generic(scratch / "data", 12)
    edit_labels(scratch / "data", 7, f"{names[5]},")  # a background-only image: every stage takes it
    out = run_chain(scratch / "data", write_config(scratch / "own.yaml", GENERIC), scratch / "a")
    manifest = read(out / "prepare/manifest.json")
    assert manifest["class_names"] == ["background", "disc", "square"]  # derived from the tags, sorted
    assert manifest["splits"]["train"]["classes"][4] == []  # img05, in train: cues, training, export, CRF take it
    assert (len(manifest["splits"]["train"]["names"]), len(manifest["splits"]["val"]["names"])) == (9, 3)
    assert not any(manifest["splits"]["train"]["masked"] + manifest["splits"]["val"]["masked"])
    summary = read(out / "evaluate/summary.json")
    assert set(summary) >= {"val_miou", "crf_miou"} and all(value is None for value in summary.values())
    stats = read(out / "evaluate/label_stats.json")
    assert stats["cues_not_scored"] == stats["crf_not_scored"] == "no train image has a ground-truth mask"
    assert stats["val_not_scored"] == "no val image has a ground-truth mask"
    assert stats["upper_bound_not_scored"] == "no training image has a ground-truth mask"
    assert stats["val_scored_images"] == stats["cues_scored_images"] == 0
    assert 0 < stats["cue_labelled_fraction"] <= 1 and 0 <= stats["crf_changed_fraction"] <= 1
    assert sum(stats["crf_label_frequency"].values()) == pytest.approx(1, abs=1e-3)
    assert read(out / "upper_bound/metrics.json")["trained_images"] == 0
    assert (out / "evaluate/gallery.png").stat().st_size > 1000
    report = CliRunner().invoke(app, ["report", "--summary", str(out / "evaluate/summary.json")]).output
    assert "pixels changed by the CRF" in report and "not scored: no val image has a ground-truth mask" in report
    assert "cue coverage" in report and "square" in report


@pytest.mark.slow
def test_masks_for_half_the_images_score_exactly_those(scratch: Path) -> None:
    names = write_generic(scratch / "data", 12, masked={0, 1, 2, 3, 8, 9})
    (scratch / "data/train.txt").write_text("\n".join(names[:8]) + "\n")
    (scratch / "data/val.txt").write_text("\n".join(names[8:]) + "\n")
    config = merge(GENERIC, {"prepare": {"generic": {"masks": "masks", "train_list": "train.txt",
                                                      "val_list": "val.txt"}}})
    out = run_chain(scratch / "data", write_config(scratch / "own.yaml", config), scratch / "a")
    assert read(out / "prepare/manifest.json")["splits"]["train"]["masked"] == [True] * 4 + [False] * 4
    stats = read(out / "evaluate/label_stats.json")
    assert (stats["cues_scored_images"], stats["pseudo_scored_images"], stats["crf_scored_images"]) == (4, 4, 4)
    assert stats["val_scored_images"] == 2 and "val_not_scored" not in stats
    assert read(out / "upper_bound/metrics.json")["trained_images"] == 4
    # crf_miou is the one confusion matrix over exactly the four masked training images
    labels, matrix = LabelStore(out / "crf/crf_labels.zarr"), ConfusionMatrix(3)
    for i in range(4):
        matrix.add(np.asarray(Image.open(scratch / f"data/masks/img{i:02d}.png")), labels[i])
    assert read(out / "crf/metrics.json")["crf_miou"] == matrix.miou()
    summary = read(out / "evaluate/summary.json")
    assert all(0 <= summary[key] <= 1 for key in ("cues_miou", "crf_miou", "val_miou", "upper_bound_val_miou"))


# --- bad input: one error line naming the file and row, or a warning line for what is not used -------------------

def prepare(root: Path, tmp_path: Path, **generic: object) -> tuple[int, str]:
    config = write_config(tmp_path / "own.yaml", merge(GENERIC, {"prepare": {"generic": generic}}))
    result = CliRunner().invoke(app, ["prepare", "--config", str(config), "--defaults", str(REPO / "params.yaml"),
                                      "--root", str(root), "--out", str(tmp_path / "out")])
    return result.exit_code, result.output


@pytest.fixture
def own(tmp_path: Path) -> Path:
    write_generic(tmp_path / "data", 6, masked={0, 1})
    return tmp_path / "data"


def edit_labels(root: Path, line: int, text: str) -> None:
    """Replace line `line` (1 = the header) of labels.csv, or append when it is past the end."""
    lines = (root / "labels.csv").read_text().splitlines()
    lines[line - 1:line] = [text]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


def assert_error(code: int, output: str, *parts: str) -> None:
    assert code == 1 and output.startswith("error: ") and len(output.splitlines()) == 1, output
    assert all(part in output for part in parts), output


@pytest.mark.parametrize("lists", [False, True], ids=["random split", "split lists"])
def test_an_image_without_tags_is_kept_as_background_only(own: Path, tmp_path: Path, lists: bool) -> None:
    edit_labels(own, 3, "img01.jpg,")
    (own / "train.txt").write_text("img00.png\nimg01.jpg\nimg02.png\nimg03.jpg\n")
    (own / "val.txt").write_text("img04.png\nimg05.jpg\n")
    code, output = prepare(own, tmp_path, **({"train_list": "train.txt", "val_list": "val.txt"} if lists else {}))
    assert (code, output.count("warning")) == (0, 0), output
    splits = read(tmp_path / "out/manifest.json")["splits"]
    classes = dict(zip(splits["train"]["names"] + splits["val"]["names"],
                       splits["train"]["classes"] + splits["val"]["classes"], strict=True))
    assert len(classes) == 6 and classes.pop("img01.jpg") == [] and all(classes.values())


def test_a_train_split_without_a_tag_names_its_list(own: Path, tmp_path: Path) -> None:
    edit_labels(own, 2, "img00.png,")
    edit_labels(own, 3, "img01.jpg,")
    (own / "train.txt").write_text("img00.png\nimg01.jpg\n")
    (own / "val.txt").write_text("img02.png\n")
    assert_error(*prepare(own, tmp_path, train_list="train.txt", val_list="val.txt"),
                 f"no foreground in {own / 'train.txt'}: none of its 2 images has a tag")
    assert not (tmp_path / "out").exists()


def test_a_tag_not_in_the_class_list_names_file_and_row(own: Path, tmp_path: Path) -> None:
    (own / "classes.txt").write_text("disc\nsquare\n")
    edit_labels(own, 4, "img02.png,disc cat")
    assert_error(*prepare(own, tmp_path, class_list="classes.txt"), f"{own / 'labels.csv'}:4", "tag 'cat'")


def test_a_mask_for_an_unknown_image_is_named_in_a_warning(own: Path, tmp_path: Path) -> None:
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(own / "masks/stray.png")
    code, output = prepare(own, tmp_path, masks="masks")
    assert code == 0, output
    assert f"warning: {own / 'masks/stray.png'}: mask for an unknown image" in output


def test_two_images_of_one_stem_sharing_a_mask_are_named_both(own: Path, tmp_path: Path) -> None:
    # img00.png has a mask, masks/img00.png: an img00.jpg beside it would silently read that mask as its own
    (own / "images/img00.jpg").write_bytes((own / "images/img01.jpg").read_bytes())
    edit_labels(own, 8, "img00.jpg,disc")
    assert_error(*prepare(own, tmp_path, masks="masks"), f"images {own / 'images/img00.jpg'} and "
                 f"{own / 'images/img00.png'} share the mask {own / 'masks/img00.png'}: rename one of them")
    assert not (tmp_path / "out").exists()
    assert prepare(own, tmp_path)[0] == 0  # without masks nothing is shared


def test_two_images_of_one_stem_without_a_mask_are_fine(own: Path, tmp_path: Path) -> None:
    (own / "images/img02.jpg").write_bytes((own / "images/img01.jpg").read_bytes())
    edit_labels(own, 8, "img02.jpg,disc")
    code, output = prepare(own, tmp_path, masks="masks")
    assert (code, output.count("warning")) == (0, 0), output
    splits = read(tmp_path / "out/manifest.json")["splits"].values()
    masked = {name for split in splits for name, has in zip(split["names"], split["masked"], strict=True) if has}
    assert masked == {"img00.png", "img01.jpg"}


def test_a_duplicate_row_names_both_rows(own: Path, tmp_path: Path) -> None:
    edit_labels(own, 8, "img02.png,square")
    assert_error(*prepare(own, tmp_path), f"{own / 'labels.csv'}:8: duplicate row for image 'img02.png'",
                 f"first at {own / 'labels.csv'}:4")


def test_a_missing_image_names_the_row_and_the_file(own: Path, tmp_path: Path) -> None:
    (own / "images/img03.jpg").unlink()
    assert_error(*prepare(own, tmp_path), f"{own / 'labels.csv'}:5: image not found: {own / 'images/img03.jpg'}")


def test_a_mask_of_another_size_names_the_mask(own: Path, tmp_path: Path) -> None:
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(own / "masks/img01.png")
    assert_error(*prepare(own, tmp_path, masks="masks"), "mask size 40x30 differs from its image 40x32",
                 str(own / "masks/img01.png"))


def test_a_split_list_naming_an_unknown_image_names_its_line(own: Path, tmp_path: Path) -> None:
    (own / "train.txt").write_text("img00.png\nnope.png\n")
    (own / "val.txt").write_text("img01.jpg\n")
    assert_error(*prepare(own, tmp_path, train_list="train.txt", val_list="val.txt"),
                 f"{own / 'train.txt'}:2: image 'nope.png' has no row in the labels file")


def test_a_class_list_must_not_name_background(own: Path, tmp_path: Path) -> None:
    (own / "classes.txt").write_text("disc\nbackground\n")
    assert_error(*prepare(own, tmp_path, class_list="classes.txt"), f"{own / 'classes.txt'}:2", "implicit")


def test_json_lines_and_both_tag_separators_read_alike(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text('image,tags\nx.jpg,"cat; dog"\ny.jpg,dog cat\n')
    (tmp_path / "b.jsonl").write_text('{"image": "x.jpg", "tags": ["cat", "dog"]}\n{"image": "y.jpg", "tags": '
                                      '"dog;cat"}\n')
    for name in ("a.csv", "b.jsonl"):
        assert [(row.name, sorted(row.tags)) for row in read_labels(tmp_path / name)] == [
            ("x.jpg", ["cat", "dog"]), ("y.jpg", ["cat", "dog"])]


def test_a_train_list_without_a_val_list_is_a_params_error(own: Path, tmp_path: Path) -> None:
    assert_error(*prepare(own, tmp_path, train_list="train.txt"), "prepare.generic.val_list",
                 "train_list and val_list are given together, or neither")

"""COCO 2014: a few images and instances JSONs written here; labels from the instances, masks rendered from polygons
and RLE, 81 classes in the standard order; prepare through evaluate; bad annotations named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from stage_chain import read, run_chain, scene, write_config
from typer.testing import CliRunner

from dgcn.data.coco import CocoInstances
from stages.app import app

REPO = Path(__file__).resolve().parents[1]
MISSING_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}  # COCO's 80 category ids are 1..90 without these
CATEGORIES = [{"id": i, "name": f"c{i}", "supercategory": "thing"} for i in range(1, 91) if i not in MISSING_IDS]
COCO = {"prepare": {"format": "coco"}, "cues": {"saliency_dir": None}}
TAG_CATEGORY = {"disc": 1, "square": 90}  # the scenes' shapes as COCO categories: index 1 and index 80


def annotation(number: int, image_id: int, category: int, pixels: np.ndarray, kind: str) -> dict:
    """One instance of `pixels` as a polygon (its bounding box), a compressed or an uncompressed RLE."""
    rows, cols = np.nonzero(pixels)
    if kind == "polygon":
        x0, y0, x1, y1 = cols.min(), rows.min(), cols.max() + 1, rows.max() + 1
        segmentation = [[float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]]
    elif kind == "rle":
        segmentation = coco_mask.encode(np.asfortranarray(pixels.astype(np.uint8)))
        segmentation["counts"] = segmentation["counts"].decode("ascii")
    else:  # uncompressed: run lengths of the column-major pixels, starting with a run of zeros
        flat = pixels.ravel(order="F").astype(np.int8)
        changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
        segmentation = {"size": list(pixels.shape), "counts": np.diff(np.concatenate([[0], changes])).tolist()}
    return {"id": number, "image_id": image_id, "category_id": category, "segmentation": segmentation,
            "area": float(pixels.sum()), "iscrowd": int(kind == "uncompressed"), "bbox": [0, 0, 1, 1]}


def write_coco(root: Path, split: str, indices: range, untagged: int | None = None) -> dict[str, np.ndarray]:
    """Images root/<split>2014/*.jpg and root/annotations/instances_<split>2014.json; returns the expected masks."""
    (root / f"{split}2014").mkdir(parents=True)
    (root / "annotations").mkdir(exist_ok=True)
    images, annotations, masks = [], [], {}
    kinds = ("polygon", "rle", "uncompressed")
    for image_id in indices:
        picture, mask, tags = scene(image_id)
        name = f"COCO_{split}2014_{image_id:012d}.jpg"
        Image.fromarray(picture).save(root / f"{split}2014" / name, quality=95)
        images.append({"id": image_id, "file_name": name, "height": mask.shape[0], "width": mask.shape[1]})
        if image_id == untagged:
            continue
        expected = np.zeros_like(mask)
        for tag in tags:
            pixels = mask == {"disc": 1, "square": 2}[tag]
            kind = kinds[(image_id + len(annotations)) % 3]
            annotations.append(annotation(len(annotations) + 1, image_id, TAG_CATEGORY[tag], pixels, kind))
            if kind == "polygon":  # the box: painted first (larger), the other shape stays on top
                rows, cols = np.nonzero(pixels)
                pixels = np.zeros_like(pixels)
                pixels[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
            masks.setdefault(name, []).append((pixels, TAG_CATEGORY[tag]))
        for pixels, category in sorted(masks.get(name, []), key=lambda item: -item[0].sum()):
            expected[pixels] = 1 if category == 1 else 80
        masks[name] = expected
    document = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    (root / "annotations" / f"instances_{split}2014.json").write_text(json.dumps(document))
    return masks


def test_masks_render_polygons_and_both_rles_largest_first(tmp_path: Path) -> None:
    expected = write_coco(tmp_path, "train", range(6))
    instances = CocoInstances.load(tmp_path / "annotations/instances_train2014.json")
    assert len(instances.class_names) == 81 and instances.class_names[:2] == ("background", "c1")
    assert instances.category_index[13] == 12 and instances.category_index[90] == 80  # the gaps closed up
    for name, mask in expected.items():
        rendered = instances.mask(name)
        # pycocotools rasterises a polygon's edge pixels by their centres: allow the box outline to differ
        assert np.mean(rendered == mask) > 0.95, name
        assert set(np.unique(rendered)) == set(np.unique(mask)), name


def test_a_smaller_instance_stays_on_top_of_a_larger_one_in_either_file_order(tmp_path: Path) -> None:
    # exact pixels (RLE): where the two overlap, the paint order alone decides the class
    big, small = np.zeros((8, 10), bool), np.zeros((8, 10), bool)
    big[1:7, 1:9] = True
    small[3:5, 4:6] = True  # inside big
    expected = np.where(small, 80, np.where(big, 1, 0)).astype(np.uint8)
    images = [{"id": i, "file_name": f"{i}.jpg", "height": 8, "width": 10} for i in (1, 2)]
    shapes = {1: [(90, small), (1, big)], 2: [(1, big), (90, small)]}  # image 1: the small one first in the file
    annotations = [annotation(len(images) * i + k, i, category, pixels, "rle")
                   for i, pair in shapes.items() for k, (category, pixels) in enumerate(pair)]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    instances = CocoInstances.load(path)
    for name in ("1.jpg", "2.jpg"):
        assert np.array_equal(instances.mask(name), expected), name


@pytest.mark.slow
def test_coco_fixture_runs_prepare_through_evaluate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_coco(tmp_path / "coco", "train", range(8), untagged=5)
    write_coco(tmp_path / "coco", "val", range(100, 103))
    out = run_chain(tmp_path / "coco", write_config(tmp_path / "coco.yaml", COCO), tmp_path / "a")
    manifest = read(out / "prepare/manifest.json")
    assert len(manifest["class_names"]) == 81
    train = manifest["splits"]["train"]
    assert "COCO_train2014_000000000005.jpg" not in train["names"] and len(train["names"]) == 7  # no instances
    assert train["classes"][:3] == [[1, 80], [80], [1]]  # scenes 0-2: disc and square, a square, a disc
    summary = read(out / "evaluate/summary.json")
    assert all(0 <= value <= 1 for value in summary.values())
    stats = read(out / "evaluate/label_stats.json")
    assert stats["val_scored_images"] == 3 and stats["cues_scored_images"] == 7
    # one confusion matrix over the split: the 78 classes no val image holds are reported absent
    assert {"c1", "c90"}.isdisjoint(stats["val_classes_absent"]) and "c2" in stats["val_classes_absent"]
    assert len(stats["val_classes_absent"]) == 78
    per_class = read(out / "evaluate/per_class.json")
    assert len(per_class["classes"]) == 81 and per_class["val_iou"][2] is None


@pytest.mark.parametrize(("edit", "message"), [
    (lambda doc: doc["annotations"][0].update(category_id=12), "annotation 0 (id 1): unknown category id 12"),
    (lambda doc: doc["annotations"][1].update(image_id=999), "annotation 1 (id 2): unknown image id 999"),
    (lambda doc: doc["images"][0].update(height=31),
     "is 40x32, its annotation in {json} says 40x31: the mask size would differ from its image"),
    (lambda doc: doc["images"][1].update(file_name="gone.jpg"), "image not found: {root}/train2014/gone.jpg"),
    (lambda doc: doc["images"].append(dict(doc["images"][0])), "duplicate image 'COCO_train2014_000000000000.jpg'"),
])
def test_bad_annotations_are_named(tmp_path: Path, edit, message: str) -> None:
    root = tmp_path / "coco"
    write_coco(root, "train", range(4))
    write_coco(root, "val", range(100, 102))
    path = root / "annotations/instances_train2014.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["prepare", "--config", str(write_config(tmp_path / "c.yaml", COCO)),
                                      "--defaults", str(REPO / "params.yaml"), "--root", str(root),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and len(result.output.splitlines()) == 1, result.output
    assert f"error: {path}" in result.output or f"error: {root}" in result.output, result.output
    assert message.format(json=path, root=root) in result.output, result.output
    assert not (tmp_path / "out").exists()

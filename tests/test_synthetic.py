"""The embedded synthetic data set: layout, determinism, prefix stability, geometry and parameter checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgcn.data.palette import SYNTHETIC_CLASSES, voc_palette
from dgcn.data.shapes import AREA_FACTOR, SHAPES, pixel_grid, rotated_frame, shape_mask
from dgcn.data.synthetic import contact_sheet, generate, render_scene

SMALL = {"num_train": 4, "num_val": 2, "image_size": 64}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _ids(root: Path, list_name: str) -> list[str]:
    return (root / "ImageSets" / "Segmentation" / f"{list_name}.txt").read_text().split()


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("syn") / "voc"
    generate(root, seed=3, **SMALL)
    return root


def test_same_seed_gives_byte_identical_files(small_set: Path, tmp_path: Path) -> None:
    generate(tmp_path, seed=3, **SMALL)
    first, second = _tree(small_set), _tree(tmp_path)
    assert len(first) == 2 * 6 + 2
    assert first == second


def test_other_seed_gives_other_images(small_set: Path, tmp_path: Path) -> None:
    generate(tmp_path, seed=4, **SMALL)
    first, second = _tree(small_set), _tree(tmp_path)
    assert first.keys() == second.keys()
    images = [name for name in first if name.endswith(".jpg")]
    assert all(first[name] != second[name] for name in images)


def test_layout_splits_and_masks(small_set: Path) -> None:
    assert _ids(small_set, "train_aug") == [f"syn_train_{i:04d}" for i in range(4)]
    assert _ids(small_set, "val") == [f"syn_val_{i:04d}" for i in range(2)]
    palette = voc_palette()
    for image_id in _ids(small_set, "train_aug") + _ids(small_set, "val"):
        image = Image.open(small_set / "JPEGImages" / f"{image_id}.jpg")
        mask = Image.open(small_set / "SegmentationClassAug" / f"{image_id}.png")
        assert image.mode == "RGB" and image.size == (64, 64)
        assert mask.mode == "P" and mask.size == image.size
        assert np.array_equal(np.asarray(mask.getpalette(), np.uint8).reshape(-1, 3), palette)
        labels = np.asarray(mask)
        assert labels.max() < len(SYNTHETIC_CLASSES)
        assert (labels > 0).any(), f"{image_id} has no object"


def test_prefix_of_larger_set_is_identical(small_set: Path, tmp_path: Path) -> None:
    generate(tmp_path, num_train=2, num_val=1, image_size=64, seed=3)
    smaller, larger = _tree(tmp_path), _tree(small_set)
    shared = [name for name in smaller if not name.endswith(".txt")]
    assert len(shared) == 2 * 3
    assert all(smaller[name] == larger[name] for name in shared)


def test_summary_matches_the_design(tmp_path: Path) -> None:
    summary = generate(tmp_path, num_train=40, num_val=1, image_size=64, seed=0)["train_aug"]
    assert summary.num_images == 40
    assert summary.image_frequency[0] == 1.0
    assert all(0.15 < freq < 0.7 for freq in summary.image_frequency[1:])
    assert math.isclose(sum(summary.pixel_fraction), 1.0)
    assert 0.06 < summary.mean_object_fraction < 0.2


def test_objects_show_two_colour_texture() -> None:
    for index in range(20):
        image, labels = render_scene(np.random.default_rng([7, 0, index]), 96)
        for cls in np.unique(labels[labels > 0]):
            spread = np.linalg.norm(image[labels == cls].astype(np.float64).std(axis=0))
            assert spread > 20, f"scene {index} class {cls}: texture invisible (colour spread {spread:.1f})"


@pytest.mark.parametrize("shape", SHAPES)
def test_shape_area_matches_its_radius(shape: str) -> None:
    rows, cols = pixel_grid(128)
    mask = shape_mask(shape, *rotated_frame(rows, cols, (64.0, 64.0), 0.7), 25.0)
    assert mask.sum() == pytest.approx(AREA_FACTOR[shape] * 25.0**2, rel=0.03)


def test_contact_sheet_is_deterministic_png(small_set: Path, tmp_path: Path) -> None:
    ids = _ids(small_set, "train_aug")
    contact_sheet(small_set, ids, tmp_path / "a.png", columns=3)
    contact_sheet(small_set, ids, tmp_path / "b.png", columns=3)
    sheet = Image.open(tmp_path / "a.png")
    assert sheet.width >= 3 * (2 * 64 * 2)
    assert sheet.height > 2 * 64 * 2
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_train": 0}, "num_train"),
        ({"num_val": -1}, "num_val"),
        ({"num_train": 2.5}, "num_train"),
        ({"image_size": 63}, "image_size"),
        ({"image_size": 513}, "image_size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_parameters_are_named(tmp_path: Path, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        generate(tmp_path, **{**SMALL, **kwargs})
    assert not any(tmp_path.iterdir())


def test_contact_sheet_rejects_bad_arguments(small_set: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ids"):
        contact_sheet(small_set, [], tmp_path / "x.png")
    with pytest.raises(ValueError, match="columns"):
        contact_sheet(small_set, ["syn_train_0000"], tmp_path / "x.png", columns=0)

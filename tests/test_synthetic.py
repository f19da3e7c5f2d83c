"""The embedded synthetic data set: layout, determinism, prefix stability, geometry and parameter checks."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgcn.data.palette import SYNTHETIC_CLASSES, voc_palette
from dgcn.data.shapes import AREA_FACTOR, SHAPES, pixel_grid, rotated_frame, shape_mask
from dgcn.data.synthetic import (
    MIN_VISIBLE,
    Difficulty,
    contact_sheet,
    generate,
    render_parts_scene,
    render_scene,
)

SMALL = {"num_train": 4, "num_val": 2, "image_size": 64}
# The parts style with several objects a scene, so that bodies hide one another and occluders hide bodies.
PARTS = Difficulty(object_area=(0.15, 0.25), clutter=(1, 3), objects=(2, 3), style="parts", part_area=(0.2, 0.3))


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


# sha256 of the image and label bytes of scenes [0, split, 0..7] of both splits at 96 pixels, as the generator drew
# them before the parts style existed: the embedded default and the ablation's harder setting must not change.
BEFORE_PARTS = {
    Difficulty(): "7ec5ba95f9c3dda282eb8cc18e857a5c4d0fa0eb9cb01cbca4b16a28867bb811",
    Difficulty((0.04, 0.10), (3, 6)): "d3ff63a75d2e4743e21d10ab0b139d1e3681af8bc7cbb335195b431e64d633e2",
}


@pytest.mark.parametrize("difficulty", list(BEFORE_PARTS), ids=["default", "hard"])
def test_existing_settings_draw_the_same_scenes(difficulty: Difficulty) -> None:
    digest = hashlib.sha256()
    for split in (0, 1):
        for index in range(8):
            image, labels = render_scene(np.random.default_rng([0, split, index]), 96, difficulty)
            digest.update(image.tobytes())
            digest.update(labels.tobytes())
    assert digest.hexdigest() == BEFORE_PARTS[difficulty]


def test_parts_objects_are_a_small_part_on_a_body_coloured_like_the_background() -> None:
    counts = []
    for index in range(30):
        image, labels, parts = render_parts_scene(np.random.default_rng([5, 0, index]), 96, PARTS)
        assert np.array_equal(render_scene(np.random.default_rng([5, 0, index]), 96, PARTS)[1], labels)
        assert not (parts & (labels == 0)).any(), "a part outside every object, or hidden by an occluder"
        # the 4 pixels around a part are its own body's: no other object or occluder comes that close
        part_class = np.where(parts, labels, 0)
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                near = np.roll(part_class, (dy, dx), axis=(0, 1))
                assert np.all((near == 0) | (near == labels)), f"scene {index}: part's surroundings not its body"
        cells = image.astype(np.int64) // 32  # 8 levels per channel
        cells = (cells[..., 0] * 8 + cells[..., 1]) * 8 + cells[..., 2]
        background_cells = np.unique(cells[labels == 0])
        present = np.unique(labels[labels > 0])
        counts.append(len(present))
        for cls in present:
            region = labels == cls
            part = (parts & region).sum() / region.sum()
            # the part covers its part_area of the body's full area (less where the body's core is too small for
            # it, down to about half); other bodies and occluders leave MIN_VISIBLE of the body
            assert 0.4 * PARTS.part_area[0] <= part <= PARTS.part_area[1] / MIN_VISIBLE, f"scene {index} {cls}: {part}"
            body = region & ~parts
            shared = np.isin(cells[body], background_cells).mean()
            assert shared > 0.75, f"scene {index} class {cls}: only {shared:.2f} of the body in background colours"
    assert set(counts) == {1, 2, 3}  # a scene where an object found no place keeps the others


def test_parts_style_is_deterministic_and_checks_its_parameters(tmp_path: Path) -> None:
    generate(tmp_path / "a", seed=1, difficulty=PARTS, **SMALL)
    generate(tmp_path / "b", seed=1, difficulty=PARTS, **SMALL)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    generate(tmp_path / "plain", seed=1, **SMALL)
    parts, plain = _tree(tmp_path / "a"), _tree(tmp_path / "plain")
    assert parts.keys() == plain.keys() and all(parts[name] != plain[name] for name in parts if name.endswith(".jpg"))
    for bad, name in (({"objects": (0, 2)}, "objects"), ({"objects": (2, 6)}, "objects"),
                      ({"style": "photo"}, "style"), ({"part_area": (0.3, 0.2)}, "part_area"),
                      ({"part_area": (0.1, 1.0)}, "part_area"), ({"object_area": (0.3, 0.6)}, "object_area"),
                      ({"object_area": (0.6, 0.95), "style": "parts"}, "object_area")):
        with pytest.raises(ValueError, match=name):
            Difficulty(**bad)
    # a parts-style body may leave the image, so it may cover more of it than a plain object can
    assert Difficulty(object_area=(0.6, 0.8), style="parts").object_area == (0.6, 0.8)


def test_contact_sheet_shows_an_extra_label_panel(small_set: Path, tmp_path: Path) -> None:
    ids = _ids(small_set, "train_aug")[:2]
    contact_sheet(small_set, ids, tmp_path / "three.png", columns=2,
                  extra=lambda name: np.full((64, 64), 255 if name == ids[0] else 1, np.uint8))
    three = Image.open(tmp_path / "three.png")
    assert three.width == 2 * (2 * (3 * 64 + 2 * 2) + 8) + 8  # 2 tiles of three 64-pixel panels and 2 gaps, x2
    colours = {tuple(c) for c in np.asarray(three.convert("RGB")).reshape(-1, 3)}
    assert tuple(voc_palette()[255]) in colours and tuple(voc_palette()[1]) in colours

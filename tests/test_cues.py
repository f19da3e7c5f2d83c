"""Cues from CAMs, the cue store, the published-pickle import/export and cue quality, on hand-made arrays."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgcn.cues import (
    CueQuality,
    CueStore,
    cue_label_map,
    cue_quality,
    cues_from_cams,
    differing_label_sets,
    export_published_cues,
    import_published_cues,
    load_saliency,
    write_cue_store,
)
from dgcn.data.palette import voc_palette
from dgcn.storage import write_label_store

PROVENANCE = {"stage": "test"}  # what a stage would record

CLASSES = ["background", "disc", "square", "triangle"]


def _cams() -> np.ndarray:
    """(3, 2, 4) CAMs: class 1 peaks at 10, class 2 at 4, class 3 (absent) is large everywhere."""
    cams = np.zeros((3, 2, 4), dtype=np.float32)
    cams[0] = [[10.0, 8.0, 7.5, 0.5], [-5.0, 0.0, 7.0, 0.0]]
    cams[1] = [[0.0, 3.6, 3.0, 4.0], [0.0, 0.0, 3.2, 0.3]]
    cams[2] = 100.0
    return cams


# cues_from_cams


def test_foreground_background_and_conflicts() -> None:
    cues = cues_from_cams(_cams(), [1, 2], fg_threshold=0.7, bg_threshold=0.1)
    assert cues.shape == (4, 2, 4) and cues.dtype == np.uint8
    # normalised class 1: [[1, .8, .75, .05], [0, 0, .7, 0]]; class 2: [[0, .9, .75, 1], [0, 0, .8, .075]]
    assert cues[1].tolist() == [[1, 0, 1, 0], [0, 0, 0, 0]]  # (0,2) is a tie at 0.75 -> lower class index
    assert cues[2].tolist() == [[0, 1, 0, 1], [0, 0, 1, 0]]  # higher normalised score wins (0,1) and (1,2)
    assert cues[0].tolist() == [[0, 0, 0, 0], [1, 1, 0, 1]]  # negative CAM counts as 0 after ReLU
    assert not cues[3].any()  # absent class, however strong its CAM
    assert cues.sum(axis=0).max() == 1


def test_saliency_replaces_the_background_rule() -> None:
    saliency = np.full((2, 4), 0.5)
    saliency[0, 0] = saliency[0, 3] = saliency[1, 1] = 0.01  # (0,0) and (0,3) are foreground cues
    cues = cues_from_cams(_cams(), [1, 2], saliency=saliency, saliency_threshold=0.06)
    assert cues[0].tolist() == [[0, 0, 0, 0], [0, 1, 0, 0]]


def test_saliency_threshold_defaults_to_the_published_drfi_value() -> None:
    saliency = np.full((2, 4), 0.5)
    saliency[1, 0], saliency[1, 1] = 0.065, 0.075
    cues = cues_from_cams(_cams(), [1, 2], saliency=saliency)
    assert cues[0].tolist() == [[0, 0, 0, 0], [1, 0, 0, 0]]  # 0.065 < 0.07 <= 0.075


def test_load_saliency_resizes_the_whole_map_to_the_grid(tmp_path: Path) -> None:
    grey = np.zeros((30, 60), dtype=np.uint8)
    grey[:, :30] = 255  # the left half is salient
    Image.fromarray(grey).save(tmp_path / "a.png")
    saliency = load_saliency(tmp_path / "a.png", (30, 60), grid=6)
    assert saliency.shape == (6, 6) and saliency.dtype == np.float32
    assert np.allclose(saliency[:, :2], 1.0) and np.allclose(saliency[:, 4:], 0.0)
    assert np.all((saliency[:, 2:4] > 0.0) & (saliency[:, 2:4] < 1.0))  # the edge is interpolated, within [0, 1]
    with pytest.raises(ValueError, match=r"a.png: saliency map is 30x60, its image 60x30"):
        load_saliency(tmp_path / "a.png", (60, 30), grid=6)
    with pytest.raises(FileNotFoundError, match="saliency map not found: .*b.png"):
        load_saliency(tmp_path / "b.png", (30, 60), grid=6)


def test_no_present_class_gives_background_everywhere_and_zero_cam_gives_no_foreground() -> None:
    assert cues_from_cams(_cams(), np.array([], dtype=int))[0].all()
    cues = cues_from_cams(np.zeros((3, 2, 2), np.float32), [2])
    assert not cues[1:].any() and cues[0].all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"present": [0]}, "present classes"),
        ({"present": [4]}, "present classes"),
        ({"present": [1], "fg_threshold": 0.0}, "fg_threshold"),
        ({"present": [1], "bg_threshold": 1.5}, "bg_threshold"),
        ({"present": [1], "saliency": np.zeros((4, 2))}, "saliency must be"),
        ({"present": [1], "saliency": np.full((2, 4), 2.0)}, "saliency values"),
    ],
)
def test_cues_from_cams_rejects_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cues_from_cams(_cams(), **kwargs)


def test_cues_from_cams_rejects_bad_cams() -> None:
    with pytest.raises(ValueError, match="float"):
        cues_from_cams(np.zeros((3, 2, 2), np.int64), [1])
    with pytest.raises(ValueError, match="NaN"):
        cues_from_cams(np.full((3, 2, 2), np.nan, np.float32), [1])


# cue store


def _random_cues(count: int, grid: int = 5, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((count, len(CLASSES))) < 0.5).astype(np.uint8)
    labels[:, 0] = 1
    cues = (rng.random((count, len(CLASSES), grid, grid)) < 0.3).astype(np.uint8) * labels[:, :, None, None]
    return [f"2007_{i:06d}" for i in range(count)], cues, labels


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cue_store_round_trip_and_determinism(tmp_path: Path) -> None:
    names, cues, labels = _random_cues(30)
    write_cue_store(tmp_path / "a.zarr", names, cues, labels, CLASSES, shard_images=8, provenance=PROVENANCE)
    write_cue_store(tmp_path / "b.zarr", names, cues, labels, CLASSES, shard_images=8, provenance=PROVENANCE)
    assert _files(tmp_path / "a.zarr") == _files(tmp_path / "b.zarr")
    store = CueStore(tmp_path / "a.zarr")
    assert len(store) == 30 and list(store.names) == names and store.grid == 5 and store.class_names == CLASSES
    assert np.array_equal(store.image_labels, labels)
    assert np.array_equal(store[7], cues[7]) and np.array_equal(store[-1], cues[-1])
    assert np.array_equal(np.stack(list(store)), cues)
    assert store.index("2007_000012") == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr", "b.zarr"]


def test_cue_store_rejects_inconsistent_input(tmp_path: Path) -> None:
    names, cues, labels = _random_cues(4)
    path = tmp_path / "c.zarr"
    stray = labels.copy()
    stray[2, 1:] = 0
    cues[2, 1, 0, 0] = 1
    with pytest.raises(ValueError, match="'2007_000002' has cues for class 1"):
        write_cue_store(path, names, cues, stray, CLASSES, provenance=PROVENANCE)
    no_background = labels.copy()
    no_background[1, 0] = 0
    with pytest.raises(ValueError, match="'2007_000001' lacks the background"):
        write_cue_store(path, names, cues, no_background, CLASSES, provenance=PROVENANCE)
    with pytest.raises(ValueError, match="uint8"):
        write_cue_store(path, names, cues.astype(np.float32), labels, CLASSES, provenance=PROVENANCE)
    with pytest.raises(ValueError, match="only 0 and 1"):
        write_cue_store(path, names, cues * 2, labels, CLASSES, provenance=PROVENANCE)
    assert list(tmp_path.iterdir()) == []


def test_cue_store_reader_rejects_other_stores(tmp_path: Path) -> None:
    write_label_store(tmp_path / "l.zarr", ["a"], [np.zeros((3, 3), np.uint8)], CLASSES, voc_palette(),
                      provenance=PROVENANCE)
    with pytest.raises(ValueError, match="l.zarr: wrong Zarr layout: format"):
        CueStore(tmp_path / "l.zarr")
    with pytest.raises(FileNotFoundError, match="none.zarr"):
        CueStore(tmp_path / "none.zarr")


# published pickle


def _write_published(tmp_path: Path) -> tuple[Path, Path]:
    published = {
        "0_labels": np.array([15]),
        "0_cues": (np.array([0, 15, 15, 0]), np.array([0, 20, 21, 20]), np.array([0, 30, 30, 30])),
        "1_labels": np.array([1, 7]),
        "1_cues": (np.array([7, 1, 1]), np.array([40, 40, 39]), np.array([40, 40, 40])),  # (40, 40) cued twice
    }
    pickle_path, list_path = tmp_path / "localization_cues.pickle", tmp_path / "input_list.txt"
    pickle_path.write_bytes(pickle.dumps(published, protocol=2))
    list_path.write_text("/JPEGImages/2007_000032.jpg 0\n/JPEGImages/2007_000039.jpg 1\n\n")
    return pickle_path, list_path


def test_import_published_cues(tmp_path: Path) -> None:
    names, cues, labels = import_published_cues(*_write_published(tmp_path))
    assert names == ["2007_000032", "2007_000039"]
    assert cues.shape == (2, 21, 41, 41) and cues.dtype == np.uint8 and labels.dtype == np.uint8
    assert np.flatnonzero(labels[0]).tolist() == [0, 15] and np.flatnonzero(labels[1]).tolist() == [0, 1, 7]
    # A cell cued for two classes keeps the higher alone, as the published marker map (dataset.py:56-58): (20, 30) of
    # image 0 (background and 15) and (40, 40) of image 1 (7 and 1).
    assert cues[0].sum() == 3 and cues[0, 15, 20, 30] == cues[0, 15, 21, 30] == cues[0, 0, 0, 0] == 1
    assert cues[1, :, 40, 40].nonzero()[0].tolist() == [7] and cues[1, 1, 39, 40] == 1 and cues[1].sum() == 2


def test_import_rejects_missing_keys_and_bad_indices(tmp_path: Path) -> None:
    pickle_path, list_path = _write_published(tmp_path)
    list_path.write_text("a.jpg 0\nb.jpg 5\n")
    with pytest.raises(ValueError, match="'b' \\(idx 5\\).*'5_labels'"):
        import_published_cues(pickle_path, list_path)
    list_path.write_text("a.jpg 0\n")
    with pytest.raises(ValueError, match="row indices outside 0..19"):
        import_published_cues(pickle_path, list_path, grid=20)
    list_path.write_text("a.jpg zero\n")
    with pytest.raises(ValueError, match="input_list.txt: line 1"):
        import_published_cues(pickle_path, list_path)


def test_differing_label_sets() -> None:
    published = np.array([[1, 0, 1], [1, 1, 0], [1, 1, 1]], dtype=np.uint8)
    from_masks = np.array([[1, 0, 1], [1, 0, 1], [1, 1, 0]], dtype=np.uint8)
    assert differing_label_sets(published, from_masks).tolist() == [1, 2]
    assert differing_label_sets(published, published).tolist() == []
    with pytest.raises(ValueError, match="one shape"):
        differing_label_sets(published, from_masks[:2])


def test_export_then_import_round_trips_keeping_the_highest_class_per_cell(tmp_path: Path) -> None:
    names, cues, labels = _random_cues(6, grid=41)
    assert (cues.sum(axis=1) > 1).any()  # multi-hot cells: the import keeps their highest class
    pickle_path, list_path = tmp_path / "cues.pickle", tmp_path / "input_list.txt"
    export_published_cues(pickle_path, list_path, names, cues, labels)
    back_names, back_cues, back_labels = import_published_cues(pickle_path, list_path, num_classes=4, grid=41)
    highest = np.stack([cue_label_map(c) for c in cues])[:, None] == np.arange(len(CLASSES))[:, None, None]
    assert back_names == names
    assert np.array_equal(back_cues, highest.astype(np.uint8)) and np.array_equal(back_labels, labels)


# cue quality


def test_cue_quality_counts() -> None:
    gt = np.array([[0, 1, 1], [2, 255, 0]], dtype=np.uint8)
    cues = np.zeros((3, 2, 3), dtype=np.uint8)
    cues[0, 0, 0] = 1  # correct background
    cues[1, 0, 1] = cues[2, 0, 1] = 1  # multi-hot: one right, one wrong
    cues[1, 1, 0] = 1  # wrong (gt is 2)
    cues[1, 1, 1] = 1  # on an ignored pixel: counts nowhere
    quality = cue_quality(cues, gt)
    assert quality == CueQuality(correct=2, cue_labels=4, gt_pixels=5)
    assert quality.precision == pytest.approx(0.5) and quality.coverage == pytest.approx(0.4)
    batched = cue_quality(np.stack([cues, cues]), np.stack([gt, gt]))
    assert batched == quality + quality
    assert np.isnan(cue_quality(np.zeros_like(cues), gt).precision)


def test_cue_quality_rejects_mismatch() -> None:
    with pytest.raises(ValueError, match="do not match"):
        cue_quality(np.zeros((3, 4, 4), np.uint8), np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="outside 0..2"):
        cue_quality(np.zeros((3, 2, 2), np.uint8), np.full((2, 2), 3, np.uint8))


# cue label map


def test_cue_label_map_takes_the_highest_seeded_class_and_255_where_unlabelled() -> None:
    cues = np.zeros((3, 2, 3), dtype=np.uint8)
    cues[0, 0, 0] = 1
    cues[1, 0, 1] = cues[2, 0, 1] = 1  # multi-hot: the higher class, as the graph cut's terminals use it
    cues[0, 1, 2] = cues[1, 1, 2] = 1
    label_map = cue_label_map(cues)
    assert label_map.dtype == np.uint8 and label_map.shape == (2, 3)
    assert label_map.tolist() == [[0, 2, 255], [255, 255, 1]]


def test_cue_label_map_equals_the_reversed_argmax_on_random_multi_hot_cues() -> None:
    cues = (np.random.default_rng(2).random((5, 7, 6)) < 0.2).astype(np.uint8)
    # The formula the gallery used before: last maximum along the classes, 255 where no class is seeded.
    reversed_argmax = np.where(cues.any(axis=0), cues.shape[0] - 1 - cues[::-1].argmax(axis=0), 255)
    assert np.array_equal(cue_label_map(cues), reversed_argmax.astype(np.uint8))
    with pytest.raises(ValueError, match=r"\(C, h, w\)"):
        cue_label_map(cues[0])

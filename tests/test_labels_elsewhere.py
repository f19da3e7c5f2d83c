"""Labels out of the pipeline: a label store written as palette PNGs in the VOC layout reads back equal (palette and
255 kept), and the torch Dataset pairs each label map with its image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dgcn.data.files import read_mask
from dgcn.data.label_dataset import LabelDataset
from dgcn.data.palette import SYNTHETIC_CLASSES, voc_palette
from dgcn.errors import InputError
from dgcn.storage import write_label_store
from stages.app import app

NAMES = ["cat1.jpg", "dog7.png", "both.jpg"]  # ids of a data set of your own: file names
SIZES = [(6, 9), (7, 5), (4, 4)]
PALETTE = np.array([[0, 0, 0], [200, 10, 10], [10, 200, 10], [10, 10, 200], [90, 90, 0], [0, 90, 90]], np.uint8)


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    """A label store over three images of different sizes, every class and 255 among its values, own colours."""
    rng = np.random.default_rng(0)
    labels = [rng.choice([0, 1, 2, 3, 4, 5, 255], size=size).astype(np.uint8) for size in SIZES]
    write_label_store(tmp_path / "labels.zarr", NAMES, labels, SYNTHETIC_CLASSES, PALETTE,
                      provenance={"stage": "test"})
    return tmp_path / "labels.zarr", labels


def export(store: Path, out: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["export-labels", "--store", str(store), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_store_to_png_and_back_is_equal_with_palette_and_ignore(store: tuple[Path, list[np.ndarray]],
                                                              tmp_path: Path) -> None:
    path, labels = store
    assert "3 label PNGs of 6 classes" in export(path, tmp_path / "voc")
    assert (tmp_path / "voc/ImageSets/Segmentation/train.txt").read_text() == "cat1\ndog7\nboth\n"
    assert (tmp_path / "voc/class_names.txt").read_text().splitlines() == list(SYNTHETIC_CLASSES)
    for stem, label in zip(["cat1", "dog7", "both"], labels, strict=True):
        png = tmp_path / f"voc/SegmentationClass/{stem}.png"
        with Image.open(png) as image:
            assert image.mode == "P"
            colours = np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)
        assert np.array_equal(colours[:6], PALETTE) and colours[255].tolist() == voc_palette()[255].tolist()
        assert colours[255].tolist() == [224, 224, 192]  # VOC's cream for "no label"
        assert np.array_equal(read_mask(png, 6), label)  # as the pipeline reads masks: values kept, 255 too


def test_torchvision_reads_the_export_as_voc(store: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    from torchvision.datasets import VOCSegmentation

    path, labels = store
    voc = tmp_path / "VOCdevkit/VOC2012"
    export(path, voc)
    (voc / "JPEGImages").mkdir()
    for stem, size in zip(["cat1", "dog7", "both"], SIZES, strict=True):
        Image.fromarray(np.zeros((*size, 3), np.uint8)).save(voc / "JPEGImages" / f"{stem}.jpg")
    dataset = VOCSegmentation(str(tmp_path), year="2012", image_set="train")
    assert len(dataset) == 3
    for (image, target), label in zip(dataset, labels, strict=True):
        assert image.size == target.size and np.array_equal(np.asarray(target), label)


def test_export_replaces_the_folder_and_names_the_split(store: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    path, _ = store
    export(path, tmp_path / "voc", "--split", "pseudo")
    export(path, tmp_path / "voc", "--split", "pseudo")
    assert sorted(p.name for p in (tmp_path / "voc/ImageSets/Segmentation").iterdir()) == ["pseudo.txt"]
    result = CliRunner().invoke(app, ["export-labels", "--store", str(path), "--out", str(tmp_path / "x"),
                                      "--split", "../train"])
    assert result.exit_code == 1 and "a split list's name is a file name" in result.output
    assert not (tmp_path / "x").exists()


def test_ids_sharing_a_stem_are_refused(tmp_path: Path) -> None:
    write_label_store(tmp_path / "l.zarr", ["a.jpg", "a.png"], [np.zeros((2, 2), np.uint8)] * 2, SYNTHETIC_CLASSES,
                      PALETTE, provenance={"stage": "test"})
    result = CliRunner().invoke(app, ["export-labels", "--store", str(tmp_path / "l.zarr"), "--out",
                                      str(tmp_path / "voc")])
    assert result.exit_code == 1 and "share the file stem 'a'" in result.output
    assert not (tmp_path / "voc").exists()


def test_dataset_pairs_each_image_with_its_labels(store: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    path, labels = store
    (tmp_path / "images").mkdir()
    pictures = [np.random.default_rng(i).integers(0, 255, (*size, 3), dtype=np.uint8) for i, size in enumerate(SIZES)]
    for name, picture in zip(NAMES, pictures, strict=True):
        Image.fromarray(picture).save(tmp_path / "images" / name, quality=100)
    data = LabelDataset(path, tmp_path / "images", suffix="")
    assert len(data) == 3 and data.class_names == list(SYNTHETIC_CLASSES) and np.array_equal(data.palette, PALETTE)
    image, label = data[1]  # the PNG: exact pixels
    assert image.dtype == torch.uint8 and image.shape == (3, 7, 5)
    assert torch.equal(image, torch.from_numpy(pictures[1]).permute(2, 0, 1))
    assert label.dtype == torch.int64 and torch.equal(label, torch.from_numpy(labels[1].astype(np.int64)))
    crops = LabelDataset(path, tmp_path / "images", suffix="", transform=lambda x, y: (x[:, :4, :4], y[:4, :4]))
    batch = next(iter(torch.utils.data.DataLoader(crops, batch_size=3, num_workers=1)))
    assert batch[0].shape == (3, 3, 4, 4) and torch.equal(batch[1][2], label.new_tensor(labels[2].astype(np.int64)))


def test_dataset_names_an_image_of_another_size(store: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    path, _ = store
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "images/cat1.jpg")
    with pytest.raises(InputError, match=r"cat1.jpg is 5x5, its label map 6x9"):
        LabelDataset(path, tmp_path / "images", suffix="")[0]

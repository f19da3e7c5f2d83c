"""The VOC-layout data layer: loading, image-level labels, and validation errors that name the bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgcn.data.palette import VOC_CLASSES, voc_palette
from dgcn.data.voc import DatasetError, VOCDataset, check_disjoint


def write_voc(root: Path, masks: dict[str, np.ndarray], split: str = "train", annotations: dict | None = None,
              size: tuple[int, int] = (20, 30)) -> None:
    """A tiny VOC layout: one image per id, palette masks for the ids in `masks`, XML for those in `annotations`."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClassAug").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    names = list(masks) + list(annotations or {})
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
    for name, mask in masks.items():
        image = Image.fromarray(mask, mode="P")
        image.putpalette(voc_palette().ravel().tolist())
        image.save(root / "SegmentationClassAug" / f"{name}.png")
    if annotations:
        (root / "Annotations").mkdir()
        for name, objects in annotations.items():
            body = "".join(f"<object><name>{o}</name></object>" for o in objects)
            (root / "Annotations" / f"{name}.xml").write_text(f"<annotation>{body}</annotation>")
    (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")


def mask_with(values: list[int], size: tuple[int, int] = (20, 30)) -> np.ndarray:
    mask = np.zeros(size, dtype=np.uint8)
    for k, value in enumerate(values):
        mask[k * 3:(k + 1) * 3] = value
    return mask


def test_loads_images_masks_and_labels_from_masks(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0, 15, 255, 5]), "b": mask_with([0, 12])})
    dataset = VOCDataset(tmp_path, "train")
    assert dataset.names == ["a", "b"]
    assert dataset.image("a").shape == (20, 30, 3) and dataset.image("a").dtype == np.uint8
    assert dataset.mask("a").shape == (20, 30)
    assert dataset.image_labels("a") == (5, 15)
    infos = dataset.validate()
    assert [(i.name, i.height, i.width, i.classes) for i in infos] == [("a", 20, 30, (5, 15)), ("b", 20, 30, (12,))]


def test_labels_from_annotations_when_masks_are_absent(tmp_path: Path) -> None:
    write_voc(tmp_path, {}, annotations={"c": ["person", "dog", "person"]})
    dataset = VOCDataset(tmp_path, "train")
    assert dataset.image_labels("c") == (VOC_CLASSES.index("dog"), VOC_CLASSES.index("person"))
    assert dataset.validate()[0].classes == (12, 15)


def test_unknown_class_in_annotation_is_named(tmp_path: Path) -> None:
    write_voc(tmp_path, {}, annotations={"c": ["unicorn"]})
    with pytest.raises(DatasetError, match=r"unknown class 'unicorn'.*c\.xml"):
        VOCDataset(tmp_path, "train").validate()


def test_missing_image_is_named(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0]), "b": mask_with([0])})
    (tmp_path / "JPEGImages" / "b.jpg").unlink()
    with pytest.raises(DatasetError, match=r"image not found: .*b\.jpg"):
        VOCDataset(tmp_path, "train").validate()


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0])})
    (tmp_path / "JPEGImages" / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DatasetError, match=r"unreadable or corrupt image: .*a\.jpg"):
        VOCDataset(tmp_path, "train").validate()


def test_mask_size_mismatch_is_named(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0], size=(21, 30))})
    with pytest.raises(DatasetError, match=r"mask size 30x21 differs from its image 30x20: .*a\.png"):
        VOCDataset(tmp_path, "train").validate()


def test_mask_values_outside_class_range_are_named(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0, 21, 40])})
    with pytest.raises(DatasetError, match=r"mask values \[21, 40\] outside the class range 0..20.*a\.png"):
        VOCDataset(tmp_path, "train").validate()


def test_empty_split_is_named(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0])})
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"empty split: .*train\.txt"):
        VOCDataset(tmp_path, "train").validate()


def test_missing_split_and_root_are_named(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0])})
    with pytest.raises(DatasetError, match=r"split list not found: .*val\.txt"):
        VOCDataset(tmp_path, "val").validate()
    with pytest.raises(DatasetError, match="data root not found"):
        VOCDataset(tmp_path / "nowhere", "train")


def test_no_labels_at_all_is_named(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0])})
    (tmp_path / "SegmentationClassAug" / "a.png").unlink()
    with pytest.raises(DatasetError, match=r"no image-level labels for 'a'"):
        VOCDataset(tmp_path, "train").validate()


def test_real_voc_mini_photos_validate(voc_mini: Path) -> None:
    root = voc_mini
    infos = VOCDataset(root, "val").validate()
    assert len(infos) == 7 and all((i.height, i.width) == (513, 513) for i in infos)
    assert VOCDataset(root, "train_aug").validate()[1].classes == (9, 15, 18)


def write_split(root: Path, split: str, content: str | bytes) -> Path:
    """Write ImageSets/Segmentation/<split>.txt as text (UTF-8) or raw bytes."""
    path = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_duplicate_ids_are_named(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0, 1]), "b": mask_with([0, 2]), "c": mask_with([0, 3])})
    write_split(tmp_path, "train", "a\nb\nc\nb\na\nb\n")
    with pytest.raises(DatasetError, match=r"^duplicate ids in .*train\.txt: a, b$"):
        VOCDataset(tmp_path, "train").validate()


def test_train_val_overlap_is_named(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0, 1]), "b": mask_with([0, 2]), "c": mask_with([0, 3])})
    write_split(tmp_path, "val", "c\nb\n")
    with pytest.raises(DatasetError, match=r"^2 ids in both .*train\.txt and .*val\.txt: b, c$"):
        check_disjoint(VOCDataset(tmp_path, "train"), VOCDataset(tmp_path, "val"))
    write_split(tmp_path, "val", "d\n")
    check_disjoint(VOCDataset(tmp_path, "train"), VOCDataset(tmp_path, "val"))


def test_a_long_list_of_ids_is_cut(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0, 1])})
    write_split(tmp_path, "train", "".join(f"{i:02d}\n" for i in range(12)) * 2)
    with pytest.raises(DatasetError, match=r"train\.txt: 00, 01, 02, 03, 04, 05, 06, 07, 08, 09 and 2 more$"):
        _ = VOCDataset(tmp_path, "train").names


def test_byte_order_mark_is_not_part_of_the_first_id(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0, 1]), "b": mask_with([0, 2])})
    write_split(tmp_path, "train", "\ufeffa\r\nb\r\n".encode())
    assert VOCDataset(tmp_path, "train").names == ["a", "b"]
    assert [info.name for info in VOCDataset(tmp_path, "train").validate()] == ["a", "b"]


def test_split_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0, 1])})
    write_split(tmp_path, "train", "a\nb\u00e9\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"^split list is not UTF-8 text: .*train\.txt \(byte 3: b'\\xe9'\)$"):
        VOCDataset(tmp_path, "train").validate()


@pytest.mark.parametrize("line", ["../a", "sub/a", "..", "a\\b", "a\0b"])
def test_an_id_with_a_folder_is_refused(tmp_path: Path, line: str) -> None:
    write_voc(tmp_path, {"a": mask_with([0, 1])})
    write_split(tmp_path, "train", f"a\n{line}\n")
    with pytest.raises(DatasetError, match=r"^bad image id .* in .*train\.txt: an id is a file name without folders$"):
        VOCDataset(tmp_path, "train").validate()


def test_split_without_any_foreground_is_an_error(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0]), "b": mask_with([0, 255])})
    with pytest.raises(DatasetError, match=r"^no foreground in .*train\.txt: none of its 2 images contains an object"):
        VOCDataset(tmp_path, "train").validate()


def test_split_without_any_foreground_is_an_error_with_annotations_too(tmp_path: Path) -> None:
    write_voc(tmp_path, {}, annotations={"c": [], "d": []})
    with pytest.raises(DatasetError, match="no foreground"):
        VOCDataset(tmp_path, "train").validate()


@pytest.mark.parametrize("mode", ["1", "F", "RGB"])
def test_mask_that_is_no_integer_label_map_is_named(tmp_path: Path, mode: str) -> None:
    write_voc(tmp_path, {"a": mask_with([0, 1])})
    Image.new(mode, (30, 20)).save(tmp_path / "SegmentationClassAug" / "a.png" if mode != "F" else
                                   tmp_path / "SegmentationClassAug" / "a.tiff")
    if mode == "F":  # PNG cannot hold floats: a TIFF under the mask's name
        (tmp_path / "SegmentationClassAug" / "a.tiff").rename(tmp_path / "SegmentationClassAug" / "a.png")
    with pytest.raises(DatasetError, match=rf"^mask is not .* integer class indices: .*a\.png has mode {mode}$"):
        VOCDataset(tmp_path, "train").validate()


def test_sixteen_bit_masks_with_class_values_are_read(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0, 1])})
    Image.fromarray(mask_with([0, 7]).astype(np.uint16)).save(tmp_path / "SegmentationClassAug" / "a.png")
    assert VOCDataset(tmp_path, "train").validate()[0].classes == (7,)


def test_image_a_decoder_chokes_on_is_named(tmp_path: Path) -> None:
    write_voc(tmp_path, {"a": mask_with([0, 1])})
    png = tmp_path / "JPEGImages" / "a.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(noise).save(png, format="PNG")
    png.write_bytes(png.read_bytes()[:900])  # a truncated PNG under the .jpg name
    with pytest.raises(DatasetError, match=r"^unreadable or corrupt image: .*a\.jpg \("):
        VOCDataset(tmp_path, "train").validate()

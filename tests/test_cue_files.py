"""Other methods' CAMs and seeds, one file per image: the readers, their checks and the move to the cue grid, on files
each test writes itself (IRN-style dicts, plain arrays, seed PNGs); a crafted pickle runs nothing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_safe_loading import Payload

from dgcn.cue_files import (
    cams_on_grid,
    class_indices,
    file_paths,
    load_npy,
    read_cam_array,
    read_irn_cams,
    read_seed_map,
    seeds_on_grid,
)
from dgcn.data.palette import SYNTHETIC_CLASSES, voc_palette
from dgcn.errors import InputError

CLASSES = np.arange(1, 6)  # the files count the data set's own classes: file class k is data set class k + 1
SIZE = (8, 12)


def irn_dict(keys: list[int], rng: np.random.Generator, size: tuple[int, int] = SIZE) -> dict:
    """What IRN's make_cam saves: keys and strided `cam` as torch tensors, `high_res` as a numpy array."""
    high_res = rng.random((len(keys), *size)).astype(np.float32)
    return {"keys": torch.tensor(keys), "cam": torch.from_numpy(high_res[:, ::4, ::4].copy()), "high_res": high_res}


def test_irn_dict_with_torch_tensors_is_read_as_numpy(tmp_path: Path) -> None:
    content = irn_dict([0, 3], np.random.default_rng(0))
    np.save(tmp_path / "a.npy", content, allow_pickle=True)
    loaded = load_npy(tmp_path / "a.npy")
    assert isinstance(loaded["keys"], np.ndarray) and loaded["keys"].tolist() == [0, 3]
    assert isinstance(loaded["cam"], np.ndarray) and np.array_equal(loaded["cam"], content["cam"].numpy())
    classes, maps = read_irn_cams(tmp_path / "a.npy", CLASSES, SIZE)
    assert classes.tolist() == [1, 4] and maps.dtype == np.float32
    assert np.array_equal(maps, content["high_res"])


def test_a_background_only_image_has_no_maps(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", {"keys": [], "high_res": np.zeros((0, *SIZE), np.float32)}, allow_pickle=True)
    classes, maps = read_irn_cams(tmp_path / "a.npy", CLASSES, SIZE)
    assert classes.size == 0 and cams_on_grid(maps, 4).shape == (0, 4, 4)


def test_a_strided_tensor_view_keeps_its_values(tmp_path: Path) -> None:
    tensor = torch.arange(24, dtype=torch.float32).reshape(4, 6)[1:, ::2]  # offset and strides of a view
    np.save(tmp_path / "a.npy", {"t": tensor}, allow_pickle=True)
    assert np.array_equal(load_npy(tmp_path / "a.npy")["t"], tensor.numpy())


def test_crafted_npy_runs_nothing_and_is_named(tmp_path: Path) -> None:
    marker, path = tmp_path / "pwned", tmp_path / "a.npy"
    np.save(path, {"keys": np.array([0]), "high_res": Payload(marker)}, allow_pickle=True)
    with pytest.raises(InputError, match=rf"^{path}: not a readable .npy file: UnpicklingError: refused to load "):
        read_irn_cams(path, CLASSES, SIZE)
    assert not marker.exists()


class _EvilStorage:
    """Pickles as a tensor storage whose bytes are a pickle that runs code: what torch's own _load_from_bytes (with
    weights_only=False) would run when numpy unpickles the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        saved = io.BytesIO()
        torch.save(Payload(self.marker), saved)
        return (torch.storage._load_from_bytes, (saved.getvalue(),))


def test_crafted_tensor_bytes_run_nothing(tmp_path: Path) -> None:
    marker, path = tmp_path / "pwned", tmp_path / "a.npy"
    np.save(path, {"keys": np.array([0]), "cam": _EvilStorage(marker)}, allow_pickle=True)
    with pytest.raises(InputError, match=rf"^{path}: not a readable .npy file: UnpicklingError: a tensor's bytes "
                                         "hold more than a tensor"):
        load_npy(path)
    assert not marker.exists()


def test_plain_arrays_load_and_other_pickles_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "plain.npy", np.ones((2, 3), np.float64))
    assert load_npy(tmp_path / "plain.npy").shape == (2, 3)
    np.save(tmp_path / "list.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="list.npy: not a readable .npy file: .*only arrays of numbers"):
        load_npy(tmp_path / "list.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(InputError, match="junk.npy: not a readable .npy file"):
        load_npy(tmp_path / "junk.npy")


@pytest.mark.parametrize(("content", "message"), [
    ({"keys": np.array([0, 5]), "high_res": np.zeros((2, *SIZE), np.float32)}, r"keys \[0, 5\] are not class"),
    ({"keys": np.array([1, 1]), "high_res": np.zeros((2, *SIZE), np.float32)}, "repeat a class"),
    ({"keys": np.array([1]), "high_res": np.zeros((1, 8, 13), np.float32)}, "CAMs are 8x13, the image 8x12"),
    ({"keys": np.array([1]), "high_res": np.zeros((2, *SIZE), np.float32)}, "2 maps in high_res for 1 keys"),
    ({"keys": np.array([1]), "high_res": np.full((1, *SIZE), np.nan, np.float32)}, "NaN"),
    ({"keys": np.array([1])}, r"'keys' and 'high_res' \(found \['keys'\]\)"),
])
def test_bad_irn_dicts_are_named(tmp_path: Path, content: dict, message: str) -> None:
    np.save(tmp_path / "a.npy", content, allow_pickle=True)
    with pytest.raises(InputError, match=rf"^{tmp_path / 'a.npy'}: .*{message}"):
        read_irn_cams(tmp_path / "a.npy", CLASSES, SIZE)


def test_cam_arrays_hold_every_listed_class_or_the_images_own(tmp_path: Path) -> None:
    classes = np.array([3, 1])  # a class list of another order: triangle, disc
    every = np.random.default_rng(1).random((2, *SIZE)).astype(np.float32)
    np.save(tmp_path / "every.npy", every)
    own, maps = read_cam_array(tmp_path / "every.npy", classes, [1, 2], SIZE)
    assert own.tolist() == [3, 1] and np.array_equal(maps, every)
    np.save(tmp_path / "own.npy", every[1:])  # the image has disc and square: of the listed classes, disc alone
    own, maps = read_cam_array(tmp_path / "own.npy", classes, [1, 2], SIZE)
    assert own.tolist() == [1] and np.array_equal(maps, every[1:])
    with pytest.raises(InputError, match=r"own.npy: 1 maps; expected one per class of the class list \(2\) or one "
                                         r"per class of the image \(2\)"):
        read_cam_array(tmp_path / "own.npy", classes, [1, 3], SIZE)
    np.save(tmp_path / "pickled.npy", {"high_res": every}, allow_pickle=True)
    with pytest.raises(InputError, match="not a pickled dict"):
        read_cam_array(tmp_path / "pickled.npy", classes, [1], SIZE)


def test_seed_png_is_remapped_to_the_data_sets_classes(tmp_path: Path) -> None:
    seeds = np.full(SIZE, 255, np.uint8)
    seeds[0, :3], seeds[1, :3], seeds[2, :3] = 0, 1, 2  # background, file class 1, file class 2
    image = Image.fromarray(seeds, mode="P")
    image.putpalette(voc_palette().ravel().tolist())
    image.save(tmp_path / "a.png")
    mapped = read_seed_map(tmp_path / "a.png", np.array([4, 2]), SIZE)  # file classes: ellipse, square
    assert mapped[0, 0] == 0 and mapped[1, 0] == 4 and mapped[2, 0] == 2 and mapped[3, 0] == 255
    with pytest.raises(InputError, match="outside the class range 0..1"):
        read_seed_map(tmp_path / "a.png", np.array([4]), SIZE)
    with pytest.raises(InputError, match="a.png: seeds are 8x12, the image 8x11"):
        read_seed_map(tmp_path / "a.png", np.array([4, 2]), (8, 11))


def test_class_list_names_must_be_classes_of_the_data_set() -> None:
    assert class_indices(["triangle", "disc"], SYNTHETIC_CLASSES, "x").tolist() == [3, 1]
    with pytest.raises(InputError, match=r"^classes.txt: class 'dog' is not a class of the data set \(disc, "):
        class_indices(["disc", "dog"], SYNTHETIC_CLASSES, "classes.txt")


def test_files_must_match_the_training_ids(tmp_path: Path) -> None:
    for stem in ("a", "b"):
        (tmp_path / f"{stem}.npy").touch()
    (tmp_path / "classes.txt").touch()  # files of another kind do not count
    assert file_paths(tmp_path, ".npy", ["a", "b.jpg"]) == [tmp_path / "a.npy", tmp_path / "b.npy"]
    with pytest.raises(InputError, match=r"no .npy file for training image\(s\) c$"):
        file_paths(tmp_path, ".npy", ["a", "b", "c"])
    with pytest.raises(InputError, match=r"b.npy belong\(s\) to no training image of the data set"):
        file_paths(tmp_path, ".npy", ["a"])
    with pytest.raises(InputError, match="share the file stem 'a'"):
        file_paths(tmp_path, ".npy", ["a.jpg", "a.png", "b"])
    with pytest.raises(InputError, match="cue folder not found"):
        file_paths(tmp_path / "none", ".npy", ["a"])


def test_block_constant_maps_come_back_exactly_on_the_grid() -> None:
    grid_maps = np.random.default_rng(2).random((3, 4, 4)).astype(np.float32)
    for factor in (1, 2, 3, 4):  # each cell's value over its factor x factor pixels
        blocks = grid_maps.repeat(factor, axis=1).repeat(factor, axis=2)
        assert np.array_equal(cams_on_grid(blocks, 4), grid_maps)


def test_a_cell_takes_the_most_frequent_seed_and_thin_scribbles_survive() -> None:
    seeds = np.full((8, 8), 255, np.uint8)
    seeds[0, 0] = 2  # one pixel of cell (0, 0): still a cue
    seeds[4:6, 4:8] = 1
    seeds[6, 4:6] = 3  # cell (1, 1): 8 pixels of class 1 against 2 of class 3
    seeds[4:8, 0:4] = 255
    seeds[4, 0], seeds[4, 1] = 1, 2  # a tie: the lower class
    cues = seeds_on_grid(seeds, 4, 2)
    assert cues.shape == (4, 2, 2) and cues.dtype == np.uint8 and cues.sum(axis=0).max() == 1
    assert cues[2, 0, 0] == 1 and cues[1, 1, 1] == 1 and cues[1, 1, 0] == 1
    assert cues[:, 0, 1].sum() == 0

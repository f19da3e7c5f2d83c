"""Damaged stores never pass for data: flipped bits and missing shards are StoreErrors naming store and shard; stores
record their provenance, dimension names and layout, and find images by id."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr

from dgcn.cues import CueStore, write_cue_store
from dgcn.data.palette import voc_palette
from dgcn.errors import StoreError
from dgcn.storage import Evidence, EvidenceStore, EvidenceStoreWriter, LabelStore, write_label_store
from dgcn.storage.zarr_store import NamedImageStore, shard_keys

PROVENANCE = {"stage": "test", "params_sha256": "0" * 64}
CLASSES = ["background", "disc", "square"]
NAMES = [f"img_{i}" for i in range(5)]
RNG = np.random.default_rng(0)
LABELS = [RNG.integers(0, 3, size=(4 + i, 6), dtype=np.uint8) for i in range(5)]
CUES = (RNG.random((5, 3, 4, 4)) < 0.3).astype(np.uint8)


def _evidence(i: int) -> Evidence:
    probs = RNG.random((3, 3, 2 + i % 2)).astype(np.float16)
    return Evidence(probs, (probs > 0.5).astype(np.uint8), np.ones(3, bool))


EVIDENCE = [_evidence(i) for i in range(5)]


def _write_labels(path: Path) -> None:
    write_label_store(path, NAMES, LABELS, CLASSES, voc_palette(), shard_images=2, provenance=PROVENANCE)


def _write_evidence(path: Path) -> None:
    with EvidenceStoreWriter(path, NAMES, CLASSES, (3, 3), shard_images=2, provenance=PROVENANCE) as writer:
        for start in range(0, 5, 2):
            writer.write(start, EVIDENCE[start : start + 2])


def _write_cues(path: Path) -> None:
    write_cue_store(path, NAMES, CUES, np.ones((5, 3), np.uint8), CLASSES, shard_images=2, provenance=PROVENANCE)


# each kind of store: (writer, reader, one image's content as bytes)
KINDS: dict[str, tuple[Callable[[Path], None], type[NamedImageStore], Callable[[object], bytes]]] = {
    "labels": (_write_labels, LabelStore, lambda item: item.tobytes()),
    "evidence": (_write_evidence, EvidenceStore, lambda item: item.probs.tobytes() + item.grown.tobytes()),
    "cues": (_write_cues, CueStore, lambda item: item.tobytes()),
}


def _data_files(store: Path) -> list[Path]:
    """Every chunk and shard file of a store (not its metadata)."""
    return sorted(p for p in store.rglob("*") if p.is_file() and p.name != "zarr.json")


def _read_everything(path: Path, reader: type[NamedImageStore], content: Callable[[object], bytes]) -> list[bytes]:
    store = reader(path)
    return [content(item) for item in store] + [content(store[name]) for name in store.names]


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_flipped_bit_is_a_store_error_naming_store_and_shard(tmp_path: Path, kind: str) -> None:
    write, reader, content = KINDS[kind]
    path = tmp_path / f"{kind}.zarr"
    write(path)
    intact = _read_everything(path, reader, content)
    files = _data_files(path)
    assert len(files) >= 4  # names + at least one more array, three shards of 2, 2, 1 images
    rng = np.random.default_rng(12)
    for _ in range(50):
        file = files[rng.integers(len(files))]
        original = file.read_bytes()
        damaged = bytearray(original)
        bit = int(rng.integers(8 * len(damaged)))
        damaged[bit // 8] ^= 1 << (bit % 8)
        file.write_bytes(bytes(damaged))
        shard = file.relative_to(path).as_posix()
        with pytest.raises(StoreError, match=f"^{path}: damaged shard {shard}[ :]"):
            _read_everything(path, reader, content)
        file.write_bytes(original)
    assert _read_everything(path, reader, content) == intact


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_a_missing_shard_is_found_on_open(tmp_path: Path, kind: str, damage: str) -> None:
    write, reader, _ = KINDS[kind]
    path = tmp_path / f"{kind}.zarr"
    write(path)
    for file in _data_files(path):
        original = file.read_bytes()
        file.unlink() if damage == "deleted" else file.write_bytes(b"")
        shard = file.relative_to(path).as_posix()
        with pytest.raises(StoreError, match=f"^{path}: shard {shard} is missing or empty; rerun the stage"):
            reader(path)
        file.write_bytes(original)
    reader(path)


def test_a_shard_of_fill_values_is_still_written(tmp_path: Path) -> None:
    # all-255 label maps equal the fill value: zarr would skip their shard, which would then read as missing
    path = tmp_path / "l.zarr"
    write_label_store(path, ["a", "b"], [np.full((2, 3), 255, np.uint8)] * 2, CLASSES, voc_palette(), shard_images=1,
                      provenance=PROVENANCE)
    assert (path / "labels/c/0/0/0").is_file() and (path / "labels/c/1/0/0").is_file()
    assert (LabelStore(path)["b"] == 255).all()


@pytest.mark.parametrize("kind", list(KINDS))
def test_store_records_provenance_layout_and_dimension_names(tmp_path: Path, kind: str) -> None:
    write, reader, content = KINDS[kind]
    path = tmp_path / f"{kind}.zarr"
    write(path)
    store = reader(path)
    assert store.provenance == PROVENANCE
    group = zarr.open_group(path, mode="r")
    layout = group.attrs["layout"]
    assert set(layout) == set(group.array_keys())
    for name, array in group.arrays():
        assert array.metadata.dimension_names[0] == "image"
        assert len(array.metadata.dimension_names) == array.ndim
        assert layout[name]["shape"] == list(array.shape)
    image_array = {"labels": "labels", "evidence": "probs", "cues": "cues"}[kind]
    assert layout[image_array]["shard_files"] == 3 and layout["names"]["shard_files"] == 1
    assert content(store["img_3"]) == content(store[3]) and content(store["img_0"]) != content(store[3])
    with pytest.raises(KeyError, match="no image named 'img_9'"):
        store["img_9"]


def test_provenance_must_be_given_as_strings(tmp_path: Path) -> None:
    for bad in ({}, {"stage": 1}, {"": "x"}):
        with pytest.raises(ValueError, match="provenance must map non-empty strings to strings"):
            write_label_store(tmp_path / "l.zarr", ["a"], [LABELS[0]], CLASSES, voc_palette(), provenance=bad)
    assert list(tmp_path.iterdir()) == []


def test_an_older_format_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "l.zarr"
    _write_labels(path)
    zarr.open_group(path, mode="r+").attrs["format_version"] = 1
    with pytest.raises(StoreError, match="l.zarr: dgcn-labels format version 1 is older than this code's 3 .*rerun"):
        LabelStore(path)


def test_a_layout_that_disagrees_with_the_arrays_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.zarr"
    _write_labels(path)
    group = zarr.open_group(path, mode="r+")
    layout = group.attrs["layout"]
    group.attrs["layout"] = {**layout, "labels": {**layout["labels"], "shard_files": 2}}
    with pytest.raises(StoreError, match="wrong Zarr layout: array 'labels' is .* in 3 shard files, recorded as"):
        LabelStore(path)
    group.attrs["layout"] = {**layout, "extra": {"shape": [1], "shard_files": 1}}
    with pytest.raises(StoreError, match="array 'extra' is missing"):
        LabelStore(path)
    del group.attrs["layout"]
    with pytest.raises(StoreError, match="wrong Zarr layout: the 'layout' attribute does not list"):
        LabelStore(path)


def _chunk_spans(shard: Path, chunks: int) -> list[tuple[int, int]]:
    """(offset, length) of each of a shard file's `chunks` inner chunks, from its index at the end: (offset, length)
    uint64 pairs, then the index's CRC-32C."""
    index = shard.read_bytes()[-(16 * chunks + 4):-4]
    pairs = np.frombuffer(index, dtype="<u8").reshape(chunks, 2)
    return [(int(offset), int(length)) for offset, length in pairs]


# the sharded per-image arrays of each kind of store (evidence: both are read a shard at a time)
IMAGE_ARRAYS = {"labels": ["labels"], "evidence": ["probs", "grown"], "cues": ["cues"]}


@pytest.mark.parametrize(("kind", "array_name"), [(kind, name) for kind, names in IMAGE_ARRAYS.items()
                                                  for name in names])
def test_a_damaged_image_in_a_block_is_named_not_the_blocks_first(tmp_path: Path, kind: str, array_name: str) -> None:
    write, reader, content = KINDS[kind]
    path = tmp_path / f"{kind}.zarr"
    write(path)
    array = zarr.open_group(path, mode="r")[array_name]
    keys = shard_keys(array)
    for i, name in enumerate(NAMES):  # shards of 2, 2 and 1 images: each image of each shard in turn
        shard = path / keys[i // 2]
        original = shard.read_bytes()
        offset, length = _chunk_spans(shard, 2)[i % 2]
        damaged = bytearray(original)
        damaged[offset + length // 2] ^= 0xFF
        shard.write_bytes(bytes(damaged))
        with pytest.raises(StoreError, match=f"^{path}: damaged shard {keys[i // 2]} \\(image '{name}'\\): "):
            [content(item) for item in reader(path)]  # read a shard at a time
        shard.write_bytes(original)

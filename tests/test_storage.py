"""Atomic publishing and the Zarr v3 label store: round trip, byte determinism, atomicity, clear errors."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import zarr

from dgcn.data.palette import voc_palette
from dgcn.storage import LabelStore, LabelStoreWriter, atomic_output, labels, staged_directory, write_label_store
from dgcn.storage.zarr_store import record_layout

PROVENANCE = {"stage": "test"}  # what a stage would record

CLASSES = ["background", "disc", "square"]


def _labels(count: int, seed: int = 0) -> tuple[list[str], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    names = [f"img_{i:04d}" for i in range(count)]
    maps = []
    for _ in names:
        label = rng.integers(0, len(CLASSES), size=tuple(rng.integers(5, 17, size=2)), dtype=np.uint8)
        label[0, 0] = 255
        maps.append(label)
    return names, maps


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


# atomic_output


def test_atomic_output_publishes_file_and_keeps_suffix(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "metrics.json"
    with atomic_output(target) as temporary:
        assert temporary.suffix == ".json" and temporary.parent == target.parent and temporary != target
        temporary.write_text("{}")
    assert target.read_text() == "{}"
    assert _siblings(target) == ["metrics.json"]


def test_atomic_output_replaces_directory(tmp_path: Path) -> None:
    target = tmp_path / "out.d"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_output(target) as temporary:
        temporary.mkdir()
        (temporary / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert _siblings(target) == ["out.d"]


def test_atomic_output_error_keeps_old_and_removes_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.d"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_output(target) as temporary:
        temporary.mkdir()
        (temporary / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert (target / "old.txt").read_text() == "old"
    assert _siblings(target) == ["out.d"]


def test_atomic_output_requires_something_written(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_output(tmp_path / "x.npy"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_staged_directory_publishes_every_entry_and_keeps_others(tmp_path: Path) -> None:
    target = tmp_path / "artifacts" / "stage"
    target.mkdir(parents=True)
    (target / "metrics.json").write_text("old")
    (target / "labels.zarr").mkdir()
    (target / "labels.zarr" / "old").write_text("old")
    (target / "notes.txt").write_text("kept")
    (tmp_path / "artifacts" / ".stage.staging").mkdir()  # left behind by a killed run
    with staged_directory(target) as staging:
        assert staging.parent == target.parent and list(staging.iterdir()) == []
        (staging / "metrics.json").write_text("new")
        (staging / "labels.zarr").mkdir()
        (staging / "labels.zarr" / "new").write_text("new")
        assert (target / "metrics.json").read_text() == "old"  # nothing published before the block ends
    assert (target / "metrics.json").read_text() == "new"
    assert sorted(p.name for p in (target / "labels.zarr").iterdir()) == ["new"]
    assert (target / "notes.txt").read_text() == "kept"
    assert sorted(p.name for p in target.parent.iterdir()) == ["stage"]


def test_staged_directory_failure_publishes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "stage"
    with pytest.raises(RuntimeError, match="boom"), staged_directory(target) as staging:
        (staging / "model.pt").write_text("whole file")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_staged_directory_keeps_others_as_links_and_their_kinds(tmp_path: Path) -> None:
    target = tmp_path / "stage"
    (target / "kept.d" / "sub").mkdir(parents=True)
    (target / "kept.d" / "sub" / "deep.txt").write_text("deep")
    (target / ".gitignore").write_text("/model.pt\n")
    (target / "link").symlink_to("kept.d")
    with staged_directory(target) as staging:
        (staging / "model.pt").write_text("new")
    assert (target / "kept.d" / "sub" / "deep.txt").read_text() == "deep"
    assert (target / ".gitignore").stat().st_nlink == 1  # the old folder's link is gone with it
    assert (target / "link").is_symlink() and os.readlink(target / "link") == "kept.d"
    assert _siblings(target) == ["stage"]


def test_staged_directory_publishes_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Putting the new metrics.json in place fails (as for a metrics.json nobody may replace), by itself or in its
    folder: none of the new outputs appears, the old ones stay, no temporary folder is left."""
    target = tmp_path / "stage"
    (target / "labels.zarr").mkdir(parents=True)
    (target / "labels.zarr" / "old").write_text("old")
    (target / "metrics.json").write_text("old")
    before = _files(target)
    replace = os.replace

    def refuse(source: str | Path, destination: str | Path) -> None:
        staged = Path(source).relative_to(tmp_path).parts[0].startswith(".stage.staging-")
        if staged and Path(destination) in (target, target / "metrics.json"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(destination))
        replace(source, destination)

    monkeypatch.setattr(os, "replace", refuse)
    monkeypatch.setattr(os, "rename", refuse)
    with pytest.raises(PermissionError), staged_directory(target) as folder:
        (folder / "labels.zarr").mkdir()
        (folder / "labels.zarr" / "new").write_text("new")
        (folder / "metrics.json").write_text("new")
    assert _files(target) == before
    assert _siblings(target) == ["stage"]


# label store: content


def test_round_trip(tmp_path: Path) -> None:
    names, maps = _labels(40)
    path = tmp_path / "labels.zarr"
    write_label_store(path, names, maps, CLASSES, voc_palette(), shard_images=16, provenance=PROVENANCE)
    store = LabelStore(path)
    assert len(store) == 40 and list(store.names) == names
    assert store.class_names == CLASSES
    assert store.palette.tolist() == voc_palette()[:3].tolist()
    assert store.shapes.tolist() == [list(m.shape) for m in maps]
    for i in (0, 17, 39):
        assert store[i].dtype == np.uint8 and np.array_equal(store[i], maps[i])
    assert np.array_equal(store[-1], maps[-1])
    assert all(np.array_equal(a, b) for a, b in zip(store, maps, strict=True))
    assert store.index("img_0017") == 17
    with pytest.raises(KeyError, match="nope"):
        store.index("nope")
    with pytest.raises(IndexError):
        store[40]


def test_padding_is_ignore_index(tmp_path: Path) -> None:
    names, maps = _labels(5)
    write_label_store(tmp_path / "l.zarr", names, maps, CLASSES, voc_palette(), provenance=PROVENANCE)
    padded = zarr.open_group(tmp_path / "l.zarr", mode="r")["labels"][...]
    h, w = maps[0].shape
    assert (padded[0, h:, :] == 255).all() and (padded[0, :, w:] == 255).all()


def test_bytes_depend_only_on_content_and_few_files(tmp_path: Path) -> None:
    names, maps = _labels(600)
    first, second = tmp_path / "a" / "labels.zarr", tmp_path / "b" / "labels.zarr"
    write_label_store(first, names, maps, CLASSES, voc_palette(), provenance=PROVENANCE)
    write_label_store(second, names, maps, CLASSES, voc_palette(), provenance=PROVENANCE)
    files = _files(first)
    assert files == _files(second)
    assert len(files) <= 10  # 3 label shards + names + shapes + 4 zarr.json
    metadata = "".join(content.decode() for name, content in files.items() if name.endswith("zarr.json"))
    for leak in (str(tmp_path), "tmp-", socket.gethostname()):
        assert leak not in metadata
    changed = [m.copy() for m in maps]
    changed[300][1, 1] = (changed[300][1, 1] + 1) % len(CLASSES)
    write_label_store(second, names, changed, CLASSES, voc_palette(), provenance=PROVENANCE)
    assert _files(first) != _files(second)


# label store: atomicity


def test_exception_leaves_no_store_and_no_temporary(tmp_path: Path) -> None:
    names, maps = _labels(10)
    path = tmp_path / "labels.zarr"
    shapes = [m.shape for m in maps]
    writer = LabelStoreWriter(path, names, shapes, CLASSES, voc_palette(), 4, provenance=PROVENANCE)
    with pytest.raises(RuntimeError), writer:
        writer.write(0, maps[:4])
        raise RuntimeError("crash mid-export")
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_old_store(tmp_path: Path) -> None:
    names, maps = _labels(10)
    path = tmp_path / "labels.zarr"
    write_label_store(path, names, maps, CLASSES, voc_palette(), provenance=PROVENANCE)
    before = _files(path)
    with (
        pytest.raises(ValueError, match="never written"),
        LabelStoreWriter(path, names, [m.shape for m in maps], CLASSES, voc_palette(), shard_images=4,
                         provenance=PROVENANCE) as writer,
    ):
        writer.write(0, maps[:4])
    assert _files(path) == before
    assert _siblings(path) == ["labels.zarr"]
    _, other = _labels(10, seed=1)
    write_label_store(path, names, other, CLASSES, voc_palette(), provenance=PROVENANCE)
    assert np.array_equal(LabelStore(path)[3], other[3])


# label store: bad input


def test_writer_rejects_bad_batches(tmp_path: Path) -> None:
    names, maps = _labels(10)
    shapes = [m.shape for m in maps]
    path = tmp_path / "l.zarr"
    writer = LabelStoreWriter(path, names, shapes, CLASSES, voc_palette(), shard_images=4, provenance=PROVENANCE)
    with pytest.raises(ValueError, match="never written"), writer as w:
        with pytest.raises(ValueError, match="shard boundary"):
            w.write(2, maps[2:6])
        with pytest.raises(ValueError, match="needs 4 label maps"):
            w.write(0, maps[:3])
        with pytest.raises(ValueError, match="img_0001"):
            w.write(0, [maps[0], maps[1][:-1], *maps[2:4]])
        with pytest.raises(ValueError, match="img_0005.*outside the classes"):
            w.write(4, [maps[4], np.full(maps[5].shape, 7, np.uint8), *maps[6:8]])
        with pytest.raises(ValueError, match="uint8"):
            w.write(8, [m.astype(np.int64) for m in maps[8:10]])
        w.write(8, maps[8:10])
        with pytest.raises(ValueError, match="already written"):
            w.write(8, maps[8:10])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="duplicate"):
        LabelStoreWriter(tmp_path / "l.zarr", ["a", "a"], [(2, 2)] * 2, CLASSES, voc_palette(), provenance=PROVENANCE)
    with pytest.raises(ValueError, match="palette"):
        LabelStoreWriter(tmp_path / "l.zarr", ["a"], [(2, 2)], CLASSES, [[0, 0, 0]], provenance=PROVENANCE)


def test_reader_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.zarr"):
        LabelStore(tmp_path / "missing.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: wrong Zarr layout"):
        LabelStore(tmp_path / "empty")
    bare = zarr.create_group(str(tmp_path / "bare.zarr"), zarr_format=3)
    bare.attrs.update({"format": "dgcn-labels", "format_version": labels.FORMAT_VERSION})
    with pytest.raises(ValueError, match="bare.zarr: wrong Zarr layout.*'names' is missing"):
        LabelStore(tmp_path / "bare.zarr")


def test_reader_detects_inconsistent_shapes(tmp_path: Path) -> None:
    names, maps = _labels(6)
    path = tmp_path / "l.zarr"
    write_label_store(path, names, maps, CLASSES, voc_palette(), provenance=PROVENANCE)
    group = zarr.open_group(path, mode="r+")
    group["shapes"][0] = [100, 100]
    with pytest.raises(ValueError, match="damaged shard shapes/c/0/0: "):  # an edit is damage
        LabelStore(path)
    record_layout(group, path)  # as a writer would have recorded it: the shapes disagree with the labels
    with pytest.raises(ValueError, match="wrong Zarr layout.*padding"):
        LabelStore(path)

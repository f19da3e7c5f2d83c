"""Shared pieces of the Zarr v3 stores: deterministic creation, layout checks and the named-image read side.

Determinism: codecs are spelled out (not zarr's defaults, which may change between releases), attributes hold only
content, and sharded arrays are written one whole shard at a time, so a store's bytes depend on its content only.

Integrity: every chunk ends with a CRC-32C of its compressed bytes and every shard index with its own (zarr's default
index codecs, spelled out), so a flipped bit anywhere in a shard file fails its read. Every chunk and shard is written,
fill value or not, and the group's `layout` attribute records each array's shape and number of shard files, so a
missing or emptied shard is found when the store is opened instead of reading as the fill value. Each group records
its `provenance` (given by the writer's caller, e.g. the producing stage and digests of its params and inputs) and
each array its dimension names.

Identity: the layout also records a SHA-256 of each shard file that covers the store's identity (its format and every
other attribute: provenance, class names ...) besides the shard's key and bytes, so a shard copied from another store
(whose chunk checksums are valid) or an edited attribute fails like damage, naming store and shard. A reader checks a
shard's digest the first time it reads from it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec

from dgcn.errors import StoreError
from dgcn.storage.atomic import atomic_output

_COMPRESSORS = (ZstdCodec(level=3, checksum=False), Crc32cCodec())
_INDEX_CODECS = (BytesCodec(endian="little"), Crc32cCodec())
# A chunk or shard equal to the fill value is written too: a missing file is then always damage.
_CONFIG = {"write_empty_chunks": True}


def check_names(names: Sequence[str], where: str) -> list[str]:
    """Image ids as a list: non-empty strings, unique; ValueError naming `where` otherwise."""
    names = list(names)
    if not names:
        raise ValueError(f"{where}: no images (names is empty)")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: image names must be non-empty strings, got {name!r}")
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"{where}: duplicate image names {duplicates[:5]}")
    return names


def check_class_names(class_names: Sequence[str], where: str) -> list[str]:
    """Class names as a list: at least two non-empty unique strings (background first by convention)."""
    class_names = list(class_names)
    if len(class_names) < 2 or not all(isinstance(name, str) and name for name in class_names):
        raise ValueError(f"{where}: class_names must be at least two non-empty strings, got {class_names!r}")
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"{where}: duplicate class names in {class_names!r}")
    return class_names


def check_provenance(provenance: Mapping[str, str], where: str) -> dict[str, str]:
    """Provenance as a dict: a non-empty mapping of non-empty strings to strings."""
    if not provenance or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in provenance.items()):
        raise ValueError(f"{where}: provenance must map non-empty strings to strings, got {provenance!r}")
    return dict(provenance)


def create_store_group(path: Path, format_name: str, format_version: int, attributes: Mapping[str, Any],
                       provenance: Mapping[str, str]) -> zarr.Group:
    """Create a new Zarr v3 group at `path` with `format`/`format_version`, `provenance` and the given JSON
    attributes."""
    header = {"format": format_name, "format_version": format_version,
              "provenance": check_provenance(provenance, str(path))}
    return zarr.create_group(zarr.storage.LocalStore(path), zarr_format=3, attributes={**header, **attributes})


def write_whole_array(group: zarr.Group, name: str, values: np.ndarray, dimension_names: Sequence[str]) -> None:
    """Store `values` as one single-chunk array; numpy unicode arrays become Zarr's spec'd `string` type."""
    dtype: Any = str if values.dtype.kind == "U" else values.dtype
    array = group.create_array(name, shape=values.shape, dtype=dtype, chunks=values.shape, compressors=_COMPRESSORS,
                               dimension_names=dimension_names, config=_CONFIG)
    array[...] = values


def create_image_array(
    group: zarr.Group,
    name: str,
    shape: tuple[int, ...],
    shard_images: int,
    fill_value: float,
    dimension_names: Sequence[str],
    dtype: str = "uint8",
) -> zarr.Array:
    """`dtype` array `shape` = (N, ...): inner chunk one image, shard `shard_images` images (clipped to N)."""
    if shard_images < 1:
        raise ValueError(f"shard_images must be >= 1, got {shard_images}")
    image_shape = tuple(shape[1:])
    return group.create_array(
        name,
        shape=shape,
        dtype=dtype,
        chunks=(min(shard_images, shape[0]), *image_shape),  # a shard: one file
        fill_value=fill_value,
        serializer=ShardingCodec(chunk_shape=(1, *image_shape), codecs=(BytesCodec(), *_COMPRESSORS),
                                 index_codecs=_INDEX_CODECS, index_location="end"),
        compressors=None,
        dimension_names=dimension_names,
        config=_CONFIG,
    )


def shard_keys(array: zarr.Array) -> list[str]:
    """The store keys of `array`'s shard files (its chunk files when unsharded), e.g. `labels/c/0/0/0`."""
    grid = [math.ceil(size / step) for size, step in zip(array.shape, array.shards or array.chunks, strict=True)]
    return [f"{array.path}/{array.metadata.encode_chunk_key(coords)}"
            for coords in itertools.product(*(range(count) for count in grid))]


def store_identity(attributes: Mapping[str, Any]) -> bytes:
    """What each shard digest of a store covers besides the shard: every attribute but the `layout` (which holds the
    digests), as canonical JSON."""
    content = {key: value for key, value in attributes.items() if key != "layout"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).digest()


def shard_digest(identity: bytes, key: str, data: bytes) -> str:
    """SHA-256 (hex) of a shard file's bytes `data` at `key` in the store of `identity`."""
    return hashlib.sha256(identity + key.encode() + b"\0" + data).hexdigest()


def record_layout(group: zarr.Group, root: Path) -> None:
    """Record in the group's `layout` attribute each array's shape, number of shard files and their digests (see
    NamedImageStore); `root` is the group's folder. Called once every attribute and shard is written."""
    identity = store_identity(group.attrs.asdict())
    layout = {}
    for name, array in sorted(group.arrays()):
        keys = shard_keys(array)
        layout[name] = {"shape": list(array.shape), "shard_files": len(keys),
                        "sha256": [shard_digest(identity, key, (root / key).read_bytes()) for key in keys]}
    group.attrs.update({"layout": layout})


class ShardedStoreWriter:
    """Base of the store writers: a Zarr group built in a temporary directory beside `path`, written one whole shard
    of `shard_images` images at a time (each shard once, in any order), and published atomically on a clean exit of
    the `with` block once every shard was written. On an exception the temporary directory is deleted and a previous
    `path` stays intact.

    Subclasses create their group in `_create(temporary)` (kept as `_group`), call `_claim_shard` then
    `_shard_written` around storing a shard, and may complete the group in `_finish()` (arrays known only once every
    image was written); the group's layout is recorded last.
    """

    _group: zarr.Group
    _temporary: Path  # the folder the group is built in

    kind = "store"  # how errors name the store

    def __init__(self, path: str | Path, names: Sequence[str], shard_images: int,
                 provenance: Mapping[str, str]) -> None:
        self.path = Path(path)
        self.names = check_names(names, self.where)
        self.provenance = check_provenance(provenance, self.where)
        if shard_images < 1:
            raise ValueError(f"{self.where}: shard_images must be >= 1, got {shard_images}")
        self.shard_images = shard_images
        self._pending = set(range(0, len(self.names), shard_images))
        self._output = atomic_output(self.path)

    @property
    def where(self) -> str:
        return f"{self.kind} {self.path}"

    def _create(self, temporary: Path) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Called once every shard was written, before publishing."""

    def __enter__(self) -> Any:
        temporary = self._temporary = self._output.__enter__()
        try:
            self._create(temporary)
        except BaseException as error:
            self._output.__exit__(type(error), error, error.__traceback__)
            raise
        return self

    def _claim_shard(self, start: int, given: int, what: str) -> int:
        """The number of images of the shard at `start` (the last may be shorter), after checking that `start` is an
        unwritten shard boundary and that `given` items of `what` were passed for it."""
        count = min(self.shard_images, len(self.names) - start)
        if start % self.shard_images or not 0 <= start < len(self.names):
            raise ValueError(f"{self.path}: start {start} is not a shard boundary (shard_images={self.shard_images})")
        if start not in self._pending:
            raise ValueError(f"{self.path}: shard starting at {start} was already written")
        if given != count:
            raise ValueError(f"{self.path}: shard starting at {start} needs {count} {what}, got {given}")
        return count

    def _shard_written(self, start: int) -> None:
        self._pending.discard(start)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> bool | None:
        if exc is None and self._pending:
            missing = [self.names[start] for start in sorted(self._pending)]
            exc = ValueError(f"{self.path}: shards starting at images {missing} were never written")
            self._output.__exit__(ValueError, exc, None)
            raise exc
        if exc is None:
            try:
                self._finish()
                record_layout(self._group, self._temporary)
            except BaseException as error:
                self._output.__exit__(type(error), error, error.__traceback__)
                raise
        return self._output.__exit__(exc_type, exc, traceback)


def wrong_layout(path: Path, what: str) -> StoreError:
    """The error for a directory that is a Zarr store of the wrong shape."""
    return StoreError(f"{path}: wrong Zarr layout: {what}")


class NamedImageStore:
    """Read side shared by the stores: opens and checks the group, holds `names` and finds images by name.

    `arrays` maps each required array name to its (ndim, numpy dtype kind such as "i", or exact dtype such as
    "uint8"); `image_array` is the sharded per-image array whose first axis must match the number of names. A store
    of an older format version, damaged metadata (naming its zarr.json), a recorded layout that disagrees with the
    arrays or lacks a shard file, and a shard that fails its digest or checksums are StoreErrors naming the store (and
    the shard).
    """

    def __init__(
        self,
        path: str | Path,
        format_name: str,
        format_version: int,
        arrays: Mapping[str, tuple[int, str]],
        image_array: str,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such store")
        self._check_metadata("")
        try:
            group = zarr.open_group(zarr.storage.LocalStore(self.path, read_only=True), mode="r", zarr_format=3)
            self.attributes: dict[str, Any] = group.attrs.asdict()
        except Exception as error:  # zarr raises many types for metadata it cannot parse (ValueError, TypeError ...)
            raise wrong_layout(self.path, f"not a Zarr v3 group ({type(error).__name__}: {error})") from error
        self._group = group
        self._check_format(format_name, format_version)
        provenance = self.attributes.get("provenance")
        self.provenance: dict[str, str] = dict(provenance) if isinstance(provenance, dict) else {}
        required = {"names": (1, "T"), **arrays}
        for name, (ndim, kind) in required.items():
            array = self._array(name, missing=wrong_layout(self.path, f"array {name!r} is missing"))
            expected = f"of kind {kind!r}" if len(kind) == 1 else kind
            if array.ndim != ndim or (array.dtype.kind if len(kind) == 1 else str(array.dtype)) != kind:
                found_type = f"{array.ndim}-d {array.dtype}"
                raise wrong_layout(self.path, f"array {name!r} is {found_type}, expected {ndim}-d {expected}")
        self._digests = self._check_files(required)
        self._verified: set[str] = set()
        self.names: tuple[str, ...] = tuple(str(name) for name in self._whole("names"))
        self._images: zarr.Array = self._array(image_array)
        if self._images.shape[0] != len(self.names):
            counts = f"{self._images.shape[0]} images but {len(self.names)} names"
            raise wrong_layout(self.path, f"{image_array!r} holds {counts}")
        self._positions = {name: i for i, name in enumerate(self.names)}

    def _check_metadata(self, node: str) -> None:
        """The zarr.json of `node` ("" for the group) is a UTF-8 JSON object; else a StoreError naming the file."""
        file = self.path / node / "zarr.json"
        try:
            document = json.loads(file.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise wrong_layout(self.path, f"{file.relative_to(self.path)} is missing") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise StoreError(f"{file}: damaged Zarr metadata ({type(error).__name__}: {error}); rerun the stage that "
                             "wrote the store") from error
        if not isinstance(document, dict):
            raise StoreError(f"{file}: damaged Zarr metadata (a JSON {type(document).__name__}, not an object); rerun "
                             "the stage that wrote the store")

    def _array(self, name: str, missing: StoreError | None = None) -> zarr.Array:
        """The array `name`, its metadata checked; `missing` (default: a StoreError) when the store has none."""
        if not (self.path / name / "zarr.json").is_file():
            raise missing or StoreError(f"{self.path}: array {name!r} is missing; rerun the stage that wrote the store")
        self._check_metadata(name)
        try:
            array = self._group[name]
        except Exception as error:  # as for the group: zarr's many error types for metadata it cannot parse
            raise StoreError(f"{self.path / name / 'zarr.json'}: damaged Zarr metadata ({type(error).__name__}: "
                             f"{error}); rerun the stage that wrote the store") from error
        if not isinstance(array, zarr.Array):
            raise wrong_layout(self.path, f"{name!r} is not an array")
        return array

    def _check_format(self, format_name: str, format_version: int) -> None:
        """The group's format is (`format_name`, `format_version`); an older version is named as such."""
        found = (self.attributes.get("format"), self.attributes.get("format_version"))
        if found[0] == format_name and isinstance(found[1], int) and found[1] < format_version:
            raise StoreError(f"{self.path}: {format_name} format version {found[1]} is older than this code's "
                             f"{format_version} (no checksums, or none that cover the store); rerun the stage that "
                             "wrote it")
        if found != (format_name, format_version):
            raise wrong_layout(self.path, f"format {found} is not ({format_name!r}, {format_version})")

    def _check_files(self, required: Mapping[str, Any]) -> dict[str, str]:
        """Each array of the `layout` attribute (the `required` ones among them) has the recorded shape and number
        of shard files, and each of those files is there and not empty. Returns each shard key's recorded digest."""
        layout = self.attributes.get("layout")
        if not isinstance(layout, dict) or not set(required) <= set(layout):
            raise wrong_layout(self.path, f"the 'layout' attribute does not list the arrays {sorted(required)}")
        digests = {}
        for name, recorded in sorted(layout.items()):
            array = self._array(name)
            keys = shard_keys(array)
            found = {"shape": list(array.shape), "shard_files": len(keys)}
            recorded_digests = recorded.get("sha256") if isinstance(recorded, dict) else None
            if (not isinstance(recorded, dict) or {key: recorded.get(key) for key in found} != found
                    or not isinstance(recorded_digests, list) or len(recorded_digests) != len(keys)):
                raise wrong_layout(self.path, f"array {name!r} is {array.shape} in {len(keys)} shard files, "
                                              f"recorded as {recorded}")
            for key in keys:
                file = self.path / key
                if not file.is_file() or file.stat().st_size == 0:
                    raise StoreError(f"{self.path}: shard {key} is missing or empty; rerun the stage that wrote "
                                     "the store")
            digests |= dict(zip(keys, recorded_digests, strict=True))
        return digests

    def _verify(self, array: zarr.Array, selection: Any) -> None:
        """Check the digest of each shard file of `array` that `selection` (on the first axis) reads, once per store
        object: damage, or a shard of another store, is a StoreError naming store and shard."""
        keys = shard_keys(array)
        step = (array.shards or array.chunks)[0]
        first = selection[0] if isinstance(selection, tuple) else selection
        if isinstance(first, int | np.integer):
            indices = range(first // step, first // step + 1)
        elif isinstance(first, slice):
            start, stop, _ = first.indices(array.shape[0])
            indices = range(start // step, max(start, stop - 1) // step + 1)
        else:
            indices = range(len(keys))
        identity = None
        for index in indices:
            key = keys[index]
            if key in self._verified:
                continue
            identity = identity or store_identity(self.attributes)
            if shard_digest(identity, key, (self.path / key).read_bytes()) != self._digests[key]:
                raise self._mismatch(array, key, range(index * step, min((index + 1) * step, array.shape[0])))
            self._verified.add(key)

    def _mismatch(self, array: zarr.Array, key: str, images: range) -> StoreError:
        """The error for shard `key` of `array` (holding `images`) whose digest differs: the first image whose chunk
        fails its checksum (damage), else a shard that is intact but not this store's (copied from another store, or
        the store's attributes were edited)."""
        for i in images if array.shards else [Ellipsis]:
            try:
                array[i]
            except (ValueError, RuntimeError) as error:  # the codecs' errors: checksum mismatch, undecodable bytes
                which = "" if i is Ellipsis else f" (image {self.names[i]!r})"
                return StoreError(f"{self.path}: damaged shard {key}{which}: {error}")
        return StoreError(f"{self.path}: damaged shard {key}: intact, but not the shard written to this store (one "
                          "copied from another store, or the store's attributes were edited); rerun the stage that "
                          "wrote the store")

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of the image called `name`; KeyError naming the store if absent."""
        try:
            return self._positions[name]
        except KeyError:
            raise KeyError(f"{self.path}: no image named {name!r}") from None

    def _position(self, i: int | str) -> int:
        """The position of image `i`: an id, or a (possibly negative) integer index; KeyError for an unknown id,
        IndexError when out of range."""
        if isinstance(i, str):
            return self.index(i)
        n = len(self.names)
        if not -n <= i < n:
            raise IndexError(f"{self.path}: index {i} out of range for {n} images")
        return i % n

    @property
    def shard_images(self) -> int:
        """Images per shard file (what a writer of a same-layout store should use)."""
        return self._images.shards[0] if self._images.shards else self._images.chunks[0]

    def _blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(start, block) over the image array, one shard per block: one file read and decoded at a time."""
        step = self.shard_images
        for start in range(0, len(self.names), step):
            yield start, self._read(slice(start, start + step))

    def _read(self, selection: int | slice | tuple) -> np.ndarray:
        """`self._images[selection]` (first axis: images); a damaged shard is a StoreError naming store and shard."""
        first = selection[0] if isinstance(selection, tuple) else selection
        image = first.start if isinstance(first, slice) else first
        return self._decode(self._images, selection, image)

    def _whole(self, name: str) -> np.ndarray:
        """All of the array `name`; a damaged file is a StoreError naming store and file."""
        return self._decode(self._group[name], Ellipsis, None)

    def _decode(self, array: zarr.Array, selection: Any, image: int | None) -> np.ndarray:
        """`array[selection]`, where `image` (if not None) is the first image selected (it names the shard)."""
        self._verify(array, selection)
        try:
            return array[selection]
        except (ValueError, RuntimeError) as error:  # the codecs' errors: checksum mismatch, undecodable bytes
            if isinstance(selection, slice) and image is not None:  # a block: name its damaged image, not its first
                image = next((i for i in range(*selection.indices(array.shape[0])) if _fails(array, i)), image)
            index = 0 if image is None else image // (array.shards or array.chunks)[0]
            key = array.metadata.encode_chunk_key((index,) + (0,) * (array.ndim - 1))
            which = "" if image is None else f" (image {self.names[image]!r})"
            raise StoreError(f"{self.path}: damaged shard {array.path}/{key}{which}: {error}") from error


def _fails(array: zarr.Array, i: int) -> bool:
    """Whether image `i` of `array` fails to decode on its own (every image of a shard with a damaged index does)."""
    try:
        array[i]
    except (ValueError, RuntimeError):
        return True
    return False

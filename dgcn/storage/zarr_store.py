"""Shared pieces of the Zarr v3 stores: deterministic creation, layout checks and the named-image read side.

Determinism: codecs are spelled out (not zarr's defaults, which may change between releases), attributes hold only
content, and sharded arrays are written one whole shard at a time, so a store's bytes depend on its content only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BytesCodec, ZstdCodec

from dgcn.errors import StoreError

_COMPRESSOR = ZstdCodec(level=3, checksum=False)


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


def create_store_group(path: Path, format_name: str, format_version: int, attributes: Mapping[str, Any]) -> zarr.Group:
    """Create a new Zarr v3 group at `path` with `format`/`format_version` and the given JSON attributes."""
    header = {"format": format_name, "format_version": format_version}
    return zarr.create_group(zarr.storage.LocalStore(path), zarr_format=3, attributes={**header, **attributes})


def write_whole_array(group: zarr.Group, name: str, values: np.ndarray) -> None:
    """Store `values` as one single-chunk array; numpy unicode arrays become Zarr's spec'd `string` type."""
    dtype: Any = str if values.dtype.kind == "U" else values.dtype
    array = group.create_array(name, shape=values.shape, dtype=dtype, chunks=values.shape, compressors=_COMPRESSOR)
    array[...] = values


def create_image_array(
    group: zarr.Group, name: str, shape: tuple[int, ...], shard_images: int, fill_value: int
) -> zarr.Array:
    """uint8 array `shape` = (N, ...): inner chunk one image, shard `shard_images` images (clipped to N)."""
    if shard_images < 1:
        raise ValueError(f"shard_images must be >= 1, got {shard_images}")
    image_shape = tuple(shape[1:])
    return group.create_array(
        name,
        shape=shape,
        dtype="uint8",
        chunks=(1, *image_shape),
        shards=(min(shard_images, shape[0]), *image_shape),
        fill_value=fill_value,
        serializer=BytesCodec(),
        compressors=_COMPRESSOR,
    )


def wrong_layout(path: Path, what: str) -> StoreError:
    """The error for a directory that is a Zarr store of the wrong shape."""
    return StoreError(f"{path}: wrong Zarr layout: {what}")


class NamedImageStore:
    """Read side shared by the stores: opens and checks the group, holds `names` and finds images by name.

    `arrays` maps each required array name to its (ndim, numpy dtype kind such as "i", or exact dtype such as
    "uint8"); `image_array` is the sharded per-image array whose first axis must match the number of names.
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
        try:
            group = zarr.open_group(zarr.storage.LocalStore(self.path, read_only=True), mode="r", zarr_format=3)
        except (ValueError, OSError, KeyError) as error:
            raise wrong_layout(self.path, f"not a Zarr v3 group ({error})") from error
        self._group = group
        self.attributes: dict[str, Any] = group.attrs.asdict()
        found = (self.attributes.get("format"), self.attributes.get("format_version"))
        if found != (format_name, format_version):
            raise wrong_layout(self.path, f"format {found} is not ({format_name!r}, {format_version})")
        present = set(group.array_keys())
        for name, (ndim, kind) in {"names": (1, "T"), **arrays}.items():
            if name not in present:
                raise wrong_layout(self.path, f"array {name!r} is missing")
            array = group[name]
            expected = f"of kind {kind!r}" if len(kind) == 1 else kind
            if array.ndim != ndim or (array.dtype.kind if len(kind) == 1 else str(array.dtype)) != kind:
                found_type = f"{array.ndim}-d {array.dtype}"
                raise wrong_layout(self.path, f"array {name!r} is {found_type}, expected {ndim}-d {expected}")
        self.names: tuple[str, ...] = tuple(str(name) for name in group["names"][...])
        self._images: zarr.Array = group[image_array]
        if self._images.shape[0] != len(self.names):
            counts = f"{self._images.shape[0]} images but {len(self.names)} names"
            raise wrong_layout(self.path, f"{image_array!r} holds {counts}")
        self._positions = {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of the image called `name`; KeyError naming the store if absent."""
        try:
            return self._positions[name]
        except KeyError:
            raise KeyError(f"{self.path}: no image named {name!r}") from None

    def _position(self, i: int) -> int:
        """Normalise a (possibly negative) integer index; IndexError when out of range."""
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
        try:
            return self._images[selection]
        except (ValueError, RuntimeError) as error:  # the codecs' errors: checksum mismatch, undecodable bytes
            first = selection[0] if isinstance(selection, tuple) else selection
            image = first.start if isinstance(first, slice) else first
            key = self._images.metadata.encode_chunk_key((image // self.shard_images,) + (0,) * (self._images.ndim - 1))
            shard = f"{self._images.path}/{key}"
            raise StoreError(f"{self.path}: damaged shard {shard} (image {self.names[image]!r}): {error}") from error

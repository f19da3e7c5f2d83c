"""Seeds and CAMs written by other methods, one file per image: read, checked and brought onto the cue grid.

Three formats, each a folder of `<stem of id>.<ext>` files (the stem as the generic data set's masks use it):
- IRN-style CAM dicts (`.npy`, pickled): `keys` (the image's foreground classes, 0-based), `high_res` (float
  (K, H, W) at the image's size, one map per key), usually `cam` (strided maps, often torch tensors: not used);
- plain CAM arrays (`.npy`, no pickle): float (C', H, W), one map per class of the file's class list, or (K, H, W),
  one per class of the image that the list holds, in list order;
- seed maps (`.png`, palette or grey): class indices at the image's size, 0 = background, 255 = no cue.
Class indices in the files index a class list, `(background,) + names`, by default the data set's own. Pickled files
are untrusted: read by a restricted unpickler that admits containers and numpy arrays; a torch tensor is rebuilt as a
numpy array from its bytes by torch.load(weights_only=True), so no callable named in the file runs.
"""

from __future__ import annotations

import collections
import io
import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dgcn.cues import ArrayUnpickler
from dgcn.data.files import file_stems, listing, read_mask
from dgcn.data.palette import IGNORE_INDEX
from dgcn.errors import InputError

# exceptions a damaged or crafted pickle raises while loading (the restricted unpickler's refusal among them)
_UNPICKLING_ERRORS = (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError,
                      ValueError, KeyError, RuntimeError)


def class_indices(file_classes: Sequence[str], class_names: Sequence[str], where: str) -> np.ndarray:
    """(len(file_classes),) int64: the data set's index of each foreground class the files index (file class k + 1 is
    data set class result[k]); an InputError naming `where` for a class the data set lacks."""
    unknown = [name for name in file_classes if name not in class_names[1:]]
    if unknown:
        raise InputError(f"{where}: class {unknown[0]!r} is not a class of the data set ({', '.join(class_names[1:])})")
    return np.array([list(class_names).index(name) for name in file_classes], dtype=np.int64)


def file_paths(folder: Path, suffix: str, names: Sequence[str]) -> list[Path]:
    """`folder/<stem of id><suffix>` of each image id, after checking that the folder's `*<suffix>` files are exactly
    those: an InputError names the first missing id or the first file of no image."""
    if not folder.is_dir():
        raise InputError(f"cue folder not found: {folder}")
    stems = file_stems(names, str(folder))
    present = {path.name for path in folder.iterdir() if path.name.endswith(suffix)}
    wanted = [f"{stem}{suffix}" for stem in stems]
    missing = [name for name, file in zip(names, wanted, strict=True) if file not in present]
    if missing:
        raise InputError(f"{folder}: no {suffix} file for training image(s) {listing(missing, 3)}")
    extra = sorted(present - set(wanted))
    if extra:
        raise InputError(f"{folder}: {listing(extra, 3)} belong(s) to no training image of the data set")
    return [folder / file for file in wanted]


class _CamDictUnpickler(ArrayUnpickler):
    """ArrayUnpickler plus what an IRN-style dict holds besides: torch tensors (rebuilt as numpy arrays, see the
    module's docstring) and the OrderedDict of a tensor's hooks."""

    def find_class(self, module: str, name: str) -> Any:
        replacement = {("torch._utils", "_rebuild_tensor_v2"): _tensor_as_array,
                       ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
                       ("collections", "OrderedDict"): collections.OrderedDict}.get((module, name))
        return super().find_class(module, name) if replacement is None else replacement

    def _allocate(self, shape: Any, dtype: Any) -> None:
        """ArrayUnpickler's check, but for np.save's 0-d object array that holds the dict (its content is unpickled
        by the same restricted rules)."""
        if not (shape == () and isinstance(dtype, np.dtype) and dtype.hasobject):
            super()._allocate(shape, dtype)


def _storage_from_bytes(data: bytes) -> torch.storage.TypedStorage:
    """A tensor's storage from the bytes torch pickles it as, by the weights-only loader (torch's own
    `_load_from_bytes` would load them with weights_only=False)."""
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError(f"a tensor's storage must be bytes, got {type(data).__name__}")
    with warnings.catch_warnings():  # TypedStorage's deprecation warning: the storage is only read
        warnings.simplefilter("ignore")
        try:
            storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:  # torch's message is a page of advice to load it unsafely
            raise pickle.UnpicklingError("a tensor's bytes hold more than a tensor (refused by the weights-only "
                                         "loader)") from error
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError(f"expected a tensor's storage, got {type(storage).__name__}")
    return storage


def _tensor_as_array(storage: torch.storage.TypedStorage, offset: int, size: tuple, stride: tuple,
                     *_: object) -> np.ndarray:
    """The numpy copy of a pickled tensor (storage, offset, size, stride; requires_grad and hooks ignored)."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError("a tensor without a storage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tensor = torch.empty(0, dtype=storage.dtype).set_(storage.untyped(), offset, size, stride)
    return tensor.numpy().copy()


def load_npy(path: Path) -> Any:
    """The content of a .npy file: a plain array as np.load reads it without pickles; a pickled object (an object
    array of shape ()) unpickled by the restricted unpickler. An InputError names the file when it is neither."""
    try:
        with path.open("rb") as file:
            version = np.lib.format.read_magic(file)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            shape, _, dtype = read_header(file) if read_header else ((), False, None)
            if dtype is None or dtype.kind != "O":  # a plain array (or a header version np.save writes for no pickle)
                return np.load(path, allow_pickle=False)
            content = _CamDictUnpickler(file, path.stat().st_size).load()
    except _UNPICKLING_ERRORS as error:
        raise InputError(f"{path}: not a readable .npy file: {type(error).__name__}: {error}") from error
    if not (isinstance(content, np.ndarray) and content.dtype == object and content.shape == shape == ()):
        raise InputError(f"{path}: a pickled .npy file must hold one object (np.save of a dict)")
    return content.item()


def _float_maps(maps: Any, size: tuple[int, int], path: Path) -> np.ndarray:
    """(K, H, W) float32 CAMs checked: three axes, float, finite, H x W the image's size."""
    maps = np.asarray(maps)
    if maps.ndim != 3 or maps.dtype.kind != "f":
        raise InputError(f"{path}: CAMs must be a float (K, H, W) array, got {maps.shape} {maps.dtype}")
    if maps.shape[1:] != tuple(size):
        raise InputError(f"{path}: CAMs are {maps.shape[1]}x{maps.shape[2]}, the image {size[0]}x{size[1]}")
    if not np.isfinite(maps).all():
        raise InputError(f"{path}: CAMs hold NaN or infinite values")
    return maps.astype(np.float32, copy=False)


def read_irn_cams(path: Path, classes: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An IRN-style CAM dict -> (its classes (K,) int64 as data set indices, its maps (K, H, W) float32).

    classes: the data set index of each file class (class_indices); size: the image's (height, width).
    """
    content = load_npy(path)
    if not isinstance(content, dict) or not {"keys", "high_res"} <= set(content):
        found = sorted(map(str, content)) if isinstance(content, dict) else type(content).__name__
        raise InputError(f"{path}: not an IRN-style CAM dict with 'keys' and 'high_res' (found {found})")
    keys = np.asarray(content["keys"]).reshape(-1)
    keys = keys.astype(np.int64) if keys.size == 0 else keys  # no object: [] reads as float
    if keys.dtype.kind not in "iu" or (keys.size and (keys.min() < 0 or keys.max() >= len(classes))):
        raise InputError(f"{path}: keys {keys.tolist()} are not class indices 0..{len(classes) - 1} (0 = the first "
                         "object class)")
    if len(set(keys.tolist())) < keys.size:
        raise InputError(f"{path}: keys {keys.tolist()} repeat a class")
    maps = _float_maps(content["high_res"], size, path)
    if maps.shape[0] != keys.size:
        raise InputError(f"{path}: {maps.shape[0]} maps in high_res for {keys.size} keys")
    return classes[keys], maps


def read_cam_array(path: Path, classes: np.ndarray, present: Sequence[int],
                   size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A plain CAM array -> (its classes (K,) int64 as data set indices, its maps (K, H, W) float32).

    One map per file class, or one per class of the image (`present`, data set indices) that the file classes hold,
    in their order.
    """
    maps = load_npy(path)
    if not isinstance(maps, np.ndarray):
        raise InputError(f"{path}: a plain CAM array must be a float array, not a pickled {type(maps).__name__}")
    maps = _float_maps(maps, size, path)
    if maps.shape[0] == len(classes):
        return classes, maps
    own = classes[np.isin(classes, np.asarray(present, dtype=np.int64))]
    if maps.shape[0] != own.size:
        raise InputError(f"{path}: {maps.shape[0]} maps; expected one per class of the class list ({len(classes)}) "
                         f"or one per class of the image ({own.size})")
    return own, maps


def read_seed_map(path: Path, classes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A seed PNG -> (H, W) uint8 data set class indices, 255 where no cue."""
    values = read_mask(path, len(classes) + 1)
    if values.shape != tuple(size):
        raise InputError(f"{path}: seeds are {values.shape[0]}x{values.shape[1]}, the image {size[0]}x{size[1]}")
    lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lookup[0], lookup[1 : len(classes) + 1] = 0, classes
    return lookup[values]


def cams_on_grid(maps: np.ndarray, grid: int) -> np.ndarray:
    """(K, H, W) CAMs over the whole image -> (K, grid, grid) float32, bilinear (align_corners False): the resize our
    classifier's CAMs get (dgcn.cam.compute_cams). Exact where H and W are multiples of grid and each grid cell's
    pixels hold one value."""
    if len(maps) == 0:  # a background-only image: interpolate refuses empty tensors
        return np.zeros((0, grid, grid), dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[None]
    return F.interpolate(tensor, size=(grid, grid), mode="bilinear", align_corners=False)[0].numpy()


def seeds_on_grid(seeds: np.ndarray, num_classes: int, grid: int) -> np.ndarray:
    """(H, W) uint8 seed map (255 = no cue) -> (num_classes, grid, grid) uint8 cues, at most one per cell.

    The grid's cells split the image evenly; a cell holding any seeded pixel takes the class most of them carry (ties:
    the lower class), so that thin scribbles survive the coarser grid.
    """
    height, width = seeds.shape
    rows = np.arange(height) * grid // height
    cols = np.arange(width) * grid // width
    cell = (rows[:, None] * grid + cols[None, :]).ravel()
    labels = seeds.ravel().astype(np.int64)
    seeded = labels != IGNORE_INDEX
    counts = np.bincount(cell[seeded] * num_classes + labels[seeded], minlength=grid * grid * num_classes)
    counts = counts.reshape(grid * grid, num_classes)
    cues = np.zeros((grid * grid, num_classes), dtype=np.uint8)
    has = counts.any(axis=1)
    cues[np.flatnonzero(has), counts[has].argmax(axis=1)] = 1
    return np.ascontiguousarray(cues.T.reshape(num_classes, grid, grid))

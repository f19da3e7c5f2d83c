"""Training samples read and augmented one at a time: torch Datasets of random crops of native-size images, and of
whole images resized to the classifier's square input.

A sample is addressed by a SampleKey: its randomness comes from numpy's Generator seeded with (seed, epoch, index), and
its mirror flag from the epoch's batch plan, so a sample's bytes do not depend on the DataLoader's worker count, on
which other samples were read, or on whether the run was resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from dgcn.data.augment import MEAN_RGB, Crop, CropGeometry, remap_cues
from dgcn.data.loading import normalize, resize_image, resize_labels
from dgcn.data.palette import IGNORE_INDEX
from dgcn.errors import InputError


class Indexed(Protocol):
    """Anything holding per-sample arrays by position: a numpy array, a list, a store."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> np.ndarray: ...


class SampleKey(NamedTuple):
    """What a Dataset of this module is indexed with: the sample `index`, the `seed` and `epoch` that seed its
    augmentation, and whether to mirror it."""

    seed: int
    epoch: int
    index: int
    flip: bool


class NamedFiles:
    """Position i -> load(names[i]); picklable (for DataLoader workers) whenever `load` is, e.g. a bound method of a
    VOCDataset."""

    def __init__(self, load: Callable[[str], np.ndarray], names: Sequence[str]) -> None:
        self.load = load
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.load(self.names[i])


class LazyStore:
    """opener(path)[i], the store opened on first use in each process: an open Zarr store is never pickled into a
    DataLoader worker. `opener` is a store class such as CueStore or LabelStore."""

    def __init__(self, opener: Callable[[Path], Indexed], path: Path) -> None:
        self.opener = opener
        self.path = Path(path)
        self._store: Indexed | None = None

    def _open(self) -> Indexed:
        if self._store is None:
            self._store = self.opener(self.path)
        return self._store

    def __len__(self) -> int:
        return len(self._open())

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self._open()[i])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None}


def normalized_window(image: np.ndarray, crop: Crop) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, S, S) float32 normalised crop, 0 (the mean) where the window leaves the image."""
    part = image[crop.top:crop.top + crop.size, crop.left:crop.left + crop.size]
    out = torch.zeros(3, crop.size, crop.size)
    out[:, :part.shape[0], :part.shape[1]] = normalize(torch.from_numpy(np.array(part))[None])[0]  # a writable copy
    return out


class CropDataset(Dataset):
    """The shared machinery: key -> (seeded Generator, native image) -> resized, jittered image and crop; subclasses
    cut their targets with the same crop and mirror everything together."""

    def __init__(self, images: Indexed, geometry: CropGeometry) -> None:
        self.images = images
        self.geometry = geometry

    def __len__(self) -> int:
        return len(self.images)

    def _place(self, key: SampleKey) -> tuple[np.ndarray, np.ndarray, Crop]:
        """(native image, resized + jittered image, crop), drawn from the key's own Generator."""
        native = np.asarray(self.images[key.index])
        image, crop = self.geometry.place(native, np.random.default_rng([key.seed, key.epoch, key.index]))
        return native, image, crop


def _mirror(values: np.ndarray, flip: bool, axis: int = -1) -> np.ndarray:
    """Flip `axis` (the width) when `flip`; a writable contiguous copy either way (torch refuses read-only arrays)."""
    return np.array(np.flip(values, axis) if flip else values)


def _mirror_tensor(values: torch.Tensor, flip: bool) -> torch.Tensor:
    """Flip the last axis (the width) when `flip`."""
    return torch.flip(values, dims=[-1]) if flip else values


class CueCrops(CropDataset):
    """DGCN training samples (spec 2.6): a crop of the image, its cues remapped to the crop's grid, the crop at the
    grid for the training CRF, and which grid pixels are image rather than padding.

    images: (H_i, W_i, 3) uint8 per sample; cues: (C, G, G) uint8 per sample over the whole image; grid: the network's
    output side for a crop_size input; masks: None, or per sample the (H_i, W_i) uint8 ground truth (or None), for
    scoring only. An item is (image (3, S, S) float32, grid_image (g, g, 3) uint8, cues (C, g, g) uint8, valid (g, g)
    bool, mask_grid (g, g) uint8: the mask at the pixels the cues sample (Crop.on_grid), IGNORE_INDEX on padding and
    where there is no mask, index).
    """

    def __init__(self, images: Indexed, cues: Indexed, geometry: CropGeometry, grid: int,
                 masks: Indexed | None = None) -> None:
        super().__init__(images, geometry)
        if len(cues) != len(images) or (masks is not None and len(masks) != len(images)):
            raise ValueError(f"{len(cues)} cue maps and {'no' if masks is None else len(masks)} masks for "
                             f"{len(images)} images")
        self.cues = cues
        self.grid = grid
        self.masks = masks

    def __getitem__(self, key: SampleKey) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        _, image, crop = self._place(key)
        # The CRF's colours: the crop padded with the mean colour, zoomed to the grid (spec 2.5).
        grid_image = resize_image(crop.window(image, MEAN_RGB), (self.grid, self.grid))
        cues = remap_cues(np.asarray(self.cues[key.index]), crop, self.grid)
        mask = None if self.masks is None else self.masks[key.index]
        if mask is None:
            mask_grid = np.full((self.grid, self.grid), IGNORE_INDEX, np.uint8)
        else:
            mask_grid = crop.on_grid(resize_labels(np.asarray(mask), image.shape[:2]), self.grid, IGNORE_INDEX)
        return (_mirror_tensor(normalized_window(image, crop), key.flip), _mirror(grid_image, key.flip, axis=1),
                _mirror(cues, key.flip), _mirror(crop.valid_grid(self.grid), key.flip), _mirror(mask_grid, key.flip),
                key.index)


class LabelCrops(CropDataset):
    """Retraining samples (spec 5): the image and its dense label map rescaled together (labels by nearest
    neighbour), cropped with 0 (the mean) padding of the image and IGNORE_INDEX padding of the labels, mirrored.

    labels: (H_i, W_i) uint8 per sample, the size of its image. An item is (image (3, S, S) float32, labels (S, S)
    int64).
    """

    def __init__(self, images: Indexed, labels: Indexed, geometry: CropGeometry) -> None:
        super().__init__(images, geometry)
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} label maps for {len(images)} images")
        self.labels = labels

    def __getitem__(self, key: SampleKey) -> tuple[torch.Tensor, torch.Tensor]:
        native, image, crop = self._place(key)
        labels = np.asarray(self.labels[key.index])
        if labels.shape != native.shape[:2]:
            raise InputError(f"sample {key.index}: label map {labels.shape} differs from its image {native.shape[:2]}")
        labels = crop.window(resize_labels(labels, image.shape[:2]), IGNORE_INDEX)
        return _mirror_tensor(normalized_window(image, crop), key.flip), torch.from_numpy(_mirror(labels, key.flip)).long()


class SquareImages(Dataset):
    """Classifier samples: the image resized to size x size (bilinear, dgcn.data.loading.resize_image), mirrored as
    the key says, with its row of image labels.

    images: (H_i, W_i, 3) uint8 per sample; labels: (N, K) {0,1} image labels. An item is (image (size, size, 3)
    uint8, labels (K,) float32): the batch stays uint8 until it is on the network's device (normalize there).
    """

    def __init__(self, images: Indexed, labels: np.ndarray, size: int) -> None:
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} label rows for {len(images)} images")
        self.images = images
        self.labels = labels
        self.size = size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: SampleKey) -> tuple[torch.Tensor, torch.Tensor]:
        image = resize_image(np.asarray(self.images[key.index]), (self.size, self.size))
        labels = np.asarray(self.labels[key.index], dtype=np.float32)
        return torch.from_numpy(_mirror(image, key.flip, axis=1)), torch.from_numpy(labels)


class LabelCounts(NamedTuple):
    """Pixels per class over label maps (IGNORE_INDEX apart) and all their pixels."""

    per_class: np.ndarray  # (C,) int64
    pixels: int

    @classmethod
    def of(cls, labels: Iterable[np.ndarray], num_classes: int) -> LabelCounts:
        """Count every pixel of every map, each at its own size; a label >= num_classes (other than ignore) is an
        error naming the map."""
        per_class, pixels = np.zeros(num_classes, dtype=np.int64), 0
        for i, label in enumerate(labels):
            counts = np.bincount(label.ravel(), minlength=256)
            if counts[num_classes:IGNORE_INDEX].any():
                raise InputError(f"label map {i} holds a class >= {num_classes}")
            per_class += counts[:num_classes]
            pixels += label.size
        return cls(per_class, pixels)

    @property
    def labelled_fraction(self) -> float:
        """Fraction of the pixels that carry a class."""
        return float(self.per_class.sum() / self.pixels) if self.pixels else 0.0

    def inverse_sqrt_frequency(self) -> np.ndarray:
        """(C,) float64 class weights proportional to 1 / sqrt(the class's share of the labelled pixels), 0 for an
        absent class, scaled so that the mean weight over the labelled pixels is 1."""
        share = self.per_class / max(int(self.per_class.sum()), 1)
        weights = np.divide(1.0, np.sqrt(share), out=np.zeros_like(share), where=share > 0)
        mean = float((share * weights).sum())
        return weights / mean if mean > 0 else weights

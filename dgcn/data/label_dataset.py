"""A torch Dataset over a label store and the images it labels: train a segmentation network of your own on the
pipeline's pseudo-labels.

    from torch.utils.data import DataLoader
    from dgcn.data.label_dataset import LabelDataset

    data = LabelDataset("artifacts/synthetic/crf/crf_labels.zarr", "data/synthetic/JPEGImages", suffix=".jpg")
    image, labels = data[0]   # (3, H, W) uint8 and (H, W) int64, 255 = no label
    loader = DataLoader(data, batch_size=16, shuffle=True, num_workers=2)  # images of one size, or a transform

Images of different sizes need a `transform(image, labels) -> (image, labels)` that crops or resizes both to one size
before batching (or batch_size=1).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dgcn.data.crops import LazyStore
from dgcn.data.files import DatasetError, read_rgb
from dgcn.storage import LabelStore

Transform = Callable[[torch.Tensor, torch.Tensor], Any]


class LabelDataset(Dataset):
    """(image, labels) pairs: item i is the image `images / (id + suffix)` of the store's image i as a (3, H, W)
    uint8 tensor (RGB) and its label map as an (H, W) int64 tensor (class indices, 255 = no label), or what
    `transform(image, labels)` makes of them.

    labels: a label store (pseudo_labels.zarr, crf_labels.zarr, cam_labels.zarr); images: the folder of its images
    (data/<name>/JPEGImages with suffix ".jpg" for the VOC layout; the images folder with suffix "" for a data set of
    your own, whose ids are file names). `class_names` and `palette` ((C, 3) uint8) come from the store. The store is
    opened in each DataLoader worker on first use.
    """

    def __init__(self, labels: str | Path, images: str | Path, suffix: str = ".jpg",
                 transform: Transform | None = None) -> None:
        store = LabelStore(labels)
        self.names: list[str] = list(store.names)
        self.class_names: list[str] = store.class_names
        self.palette: np.ndarray = store.palette
        self.images, self.suffix, self.transform = Path(images), suffix, transform
        self._labels = LazyStore(LabelStore, Path(labels))

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> Any:
        path = self.images / f"{self.names[i]}{self.suffix}"
        image, labels = read_rgb(path), self._labels[i]
        if image.shape[:2] != labels.shape:
            raise DatasetError(f"{path} is {image.shape[0]}x{image.shape[1]}, its label map {labels.shape[0]}x"
                               f"{labels.shape[1]}: labels of another data set?")
        pair = (torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.from_numpy(labels.astype(np.int64)))
        return pair if self.transform is None else self.transform(*pair)

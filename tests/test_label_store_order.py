"""A label store keeps its images in the order it was given: names, shapes and maps stay aligned."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dgcn.data.palette import voc_palette
from dgcn.storage import LabelStore, write_label_store


def test_unsorted_names_keep_their_order_and_their_maps(tmp_path: Path) -> None:
    names = ["c_img", "a_img", "b_img"]  # not sorted: a writer that sorted them would pair them with the wrong maps
    maps = [np.full((3 + i, 4 + 2 * i), i, np.uint8) for i in range(len(names))]
    write_label_store(tmp_path / "labels.zarr", names, maps, ["background", "a", "b"], voc_palette(),
                      provenance={"stage": "test"})
    store = LabelStore(tmp_path / "labels.zarr")
    assert list(store.names) == names
    for i, label in enumerate(maps):
        assert np.array_equal(store[i], label)
    assert all(np.array_equal(a, b) for a, b in zip(store, maps, strict=True))

"""Fixtures shared by several test modules, and one torch thread for the whole session."""

import os
from pathlib import Path

import pytest
import torch

# One torch thread here, in the stages run in-process (stages.runtime.set_threads keeps a pinned OMP_NUM_THREADS) and
# in the processes the tests start: two OpenMP threads stall at every barrier when other processes share the two
# cores (ResNet forward 3 s vs 0.1 s; test_training_loop.py 23 s vs 10 s).
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def voc_mini() -> Path:
    """10 real PASCAL VOC 2012 photos with masks, vendored in the repository (tests/data/voc-mini/README.md)."""
    return Path(__file__).resolve().parent / "data" / "voc-mini"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests first, each module's tests in their order: `make test` hands whole modules to two
    workers in this order (pytest-xdist --dist loadfile), so the long runs start at once and the short modules even
    out the end."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)

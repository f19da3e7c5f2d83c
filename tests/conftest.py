"""Fixtures shared by several test modules."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a module's big networks on one thread: two OpenMP threads stall at every barrier when other processes share
    the two cores (ResNet forward 3 s vs 0.1 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def voc_mini() -> Path:
    """10 real PASCAL VOC 2012 photos with masks, vendored in the repository (tests/data/voc-mini/README.md)."""
    return Path(__file__).resolve().parent / "data" / "voc-mini"

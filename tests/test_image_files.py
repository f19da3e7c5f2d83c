"""Reading a data set's pictures: every mode comes out 8-bit RGB with the picture's own values (16-bit grey scaled
to 8 bits, not clipped to white)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dgcn.cues import load_saliency
from dgcn.data.files import image_size, read_rgb

GREY = np.random.default_rng(0).integers(0, 256, (12, 17), dtype=np.uint8)
GREY[0, :2] = (0, 255)  # both extremes


def save_sixteen_bit(path: Path, grey: np.ndarray, low_bytes: np.ndarray | None = None) -> Path:
    """`grey` (uint8) as a 16-bit grey PNG: each value v as 257 v (0 -> 0, 255 -> 65535), or 256 v + a low byte."""
    values = grey.astype(np.uint16) * (257 if low_bytes is None else 256) + (0 if low_bytes is None else low_bytes)
    Image.fromarray(values.astype(np.uint16)).save(path)
    with Image.open(path) as image:
        assert image.mode == "I;16"  # what Pillow reads it as: converted to RGB by Pillow, it clips at 255
    return path


def test_a_16_bit_grey_png_reads_as_its_8_bit_picture(tmp_path: Path) -> None:
    expected = np.repeat(GREY[..., None], 3, axis=2)
    Image.fromarray(GREY).save(tmp_path / "eight.png")
    assert np.array_equal(read_rgb(tmp_path / "eight.png"), expected)
    assert np.array_equal(read_rgb(save_sixteen_bit(tmp_path / "sixteen.png", GREY)), expected)
    # the low byte is below 8-bit precision: it changes nothing (the top byte, as Pillow keeps of 16-bit colour)
    low = np.random.default_rng(1).integers(0, 256, GREY.shape, dtype=np.uint16)
    assert np.array_equal(read_rgb(save_sixteen_bit(tmp_path / "noisy.png", GREY, low)), expected)
    assert image_size(tmp_path / "sixteen.png") == GREY.shape


def test_a_16_bit_saliency_map_reads_as_its_8_bit_map(tmp_path: Path) -> None:
    Image.fromarray(GREY).save(tmp_path / "eight.png")
    save_sixteen_bit(tmp_path / "sixteen.png", GREY)
    eight, sixteen = (load_saliency(tmp_path / name, GREY.shape, grid=5) for name in ("eight.png", "sixteen.png"))
    assert np.array_equal(sixteen, eight) and 0.3 < eight.mean() < 0.7  # clipped, it would be near 1 everywhere

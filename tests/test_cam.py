"""CAMs at each image's own aspect ratio, resized to the square cue grid; scales and batching by image size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dgcn.cam import cam_grid, compute_cams
from dgcn.data.loading import long_side_shape, normalize
from dgcn.models.registry import build_classifier


class PooledMeans(nn.Module):
    """A stand-in classifier at output stride 4: CAM 0 is the input's channel mean pooled 4x4, CAM 1 its negative.
    It records the size of every input it sees; its output does not depend on the batch it is in."""

    num_foreground = 2

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))
        self.seen: list[tuple[int, int]] = []

    def cams(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape[-2:]))
        pooled = F.avg_pool2d(x.mean(dim=1, keepdim=True), 4)
        return torch.cat([pooled, -pooled], dim=1) * self.gain


def _halves(height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8: dark left half, bright right half."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, width // 2:] = 255
    return image


def test_long_side_shape_keeps_the_aspect_ratio() -> None:
    assert long_side_shape((375, 500), 321) == (241, 321)
    assert long_side_shape((500, 375), 321) == (321, 241)
    assert long_side_shape((96, 96), 96) == (96, 96)
    assert long_side_shape((20, 10), 64) == (64, 32)  # small images are enlarged
    with pytest.raises(ValueError, match="positive"):
        long_side_shape((0, 10), 64)


def test_cams_see_the_image_at_its_own_aspect_ratio_then_cover_the_square_grid() -> None:
    model = PooledMeans()
    cams = compute_cams(model, lambda name: _halves(40, 80), ["a"], input_size=64)
    assert model.seen[0] == (64, 64)  # the grid probe: G = 64 / 4
    assert model.seen[1:] == [(32, 64), (32, 64)]  # the image and its mirror image, long side 64, aspect 1:2 kept
    assert cams.shape == (1, 2, 16, 16) and cams.dtype == np.float32
    # The 16 x 16 grid spans the whole image: dark (0 after ReLU) on the left, bright on the right, in every row.
    assert np.all(cams[0, 0, :, :7] == 0) and np.all(cams[0, 0, :, 9:] > 1)
    assert np.all(cams[0, 1, :, 9:] == 0) and np.all(cams[0, 1, :, :7] > 1)  # the negative CAM, mirrored


def test_square_images_at_input_size_give_the_classifier_cams_unchanged() -> None:
    """The synthetic default (square images of input_size pixels) goes through the same code and gets exactly the
    mirror-averaged, ReLU'd CAMs of the whole batch."""
    torch.manual_seed(0)
    model = build_classifier("small", 3, width=8).eval()
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    cams = compute_cams(model, lambda name: images[int(name)], [str(i) for i in range(5)], input_size=32)
    with torch.no_grad():
        x = normalize(torch.from_numpy(images))
        expected = F.relu(0.5 * (model.cams(x) + model.cams(x.flip(-1)).flip(-1))).numpy()
    assert cams.shape == (5, 3, 8, 8) and cam_grid(model, 32) == 8
    assert np.array_equal(cams, expected)


def test_scales_average_and_images_of_different_sizes_batch_apart() -> None:
    rng = np.random.default_rng(1)
    sizes = {"a": (40, 80), "b": (40, 80), "c": (64, 48), "d": (40, 80)}
    images = {name: rng.integers(0, 256, (*size, 3), dtype=np.uint8) for name, size in sizes.items()}
    model = PooledMeans()
    both = compute_cams(model, images.__getitem__, list(images), input_size=64, scales=(0.5, 1.0), flip=False)
    assert model.seen[1:] == [(16, 32), (32, 64), (32, 24), (64, 48), (16, 32), (32, 64)]  # a+b, c, d
    single = [compute_cams(PooledMeans(), images.__getitem__, list(images), input_size=64, scales=(scale,),
                           flip=False) for scale in (0.5, 1.0)]
    assert np.allclose(both, (single[0] + single[1]) / 2, atol=1e-6)
    one_by_one = compute_cams(PooledMeans(), images.__getitem__, list(images), input_size=64, scales=(0.5, 1.0),
                              flip=False, batch_size=1)
    assert np.array_equal(both, one_by_one)
    with pytest.raises(ValueError, match="scales must be positive"):
        compute_cams(model, images.__getitem__, ["a"], input_size=64, scales=())

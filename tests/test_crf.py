"""Dense CRF: probabilities out, edge-aware smoothing, parallel map equal to the serial one."""

from __future__ import annotations

import numpy as np
import pytest

from dgcn.crf import dense_crf, dense_crf_many


def two_region_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A dark/bright image split by a vertical edge, its true labels, and noisy (3, H, W) probabilities."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((30, 40), np.int64)
    truth[:, 17:] = 1
    image = np.where(truth[..., None] == 1, 200, 40).astype(np.uint8).repeat(3, axis=2)
    image = np.clip(image + rng.integers(-10, 11, image.shape), 0, 255).astype(np.uint8)
    noisy = np.where(rng.random(truth.shape) < 0.3, 1 - truth, truth)
    probs = np.full((3, *truth.shape), 0.05, np.float32)
    np.put_along_axis(probs, noisy[None], 0.9, axis=0)
    return image, probs, truth


def test_output_is_a_distribution_and_input_untouched():
    image, probs, _ = two_region_scene()
    probs[0, 0, 0] = 0.0  # below min_prob: must not be clipped in place
    before = probs.copy()
    out = dense_crf(image, probs, scale=1 / 12)
    assert out.shape == probs.shape and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=0), 1.0, atol=1e-5)
    assert np.array_equal(probs, before)


def test_noisy_labelling_moves_toward_the_image_edge():
    image, probs, truth = two_region_scene()
    before = (probs.argmax(0) == truth).mean()
    after = (dense_crf(image, probs, bilateral_sxy=20.0).argmax(0) == truth).mean()
    assert before < 0.75 and after > 0.97


def test_parallel_map_equals_serial_and_streams_iterators():
    scenes = [two_region_scene(seed) for seed in range(4)]
    serial = [dense_crf(image, probs, iterations=5) for image, probs, _ in scenes]
    parallel = dense_crf_many((s[0] for s in scenes), (s[1] for s in scenes), workers=2, iterations=5)
    assert len(parallel) == len(serial)
    for a, b in zip(parallel, serial, strict=True):
        assert np.array_equal(a, b)


def test_bad_inputs_raise():
    image, probs, _ = two_region_scene()
    with pytest.raises(ValueError, match="image"):
        dense_crf(image[..., :2], probs)
    with pytest.raises(ValueError, match="probs"):
        dense_crf(image, probs[:, :10])
    with pytest.raises(ValueError, match="workers"):
        dense_crf_many([image], [probs], workers=-1)


def test_read_only_image_is_accepted() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    image.setflags(write=False)
    probs = np.full((2, 8, 8), 0.5, np.float32)
    assert dense_crf(image, probs, iterations=1).shape == (2, 8, 8)


def test_bilateral_sxy_is_spatial_and_srgb_is_colour() -> None:
    # On a black image the bilateral kernel is spatial only (colour features all 0, whatever their width, so even
    # the permutohedral lattice is the same): its colour width cannot matter, its spatial width must
    _, probs, _ = two_region_scene()
    flat = np.zeros((*probs.shape[1:], 3), np.uint8)
    narrow, wide = (dense_crf(flat, probs, gaussian_compat=0.0, bilateral_srgb=s) for s in (3.0, 60.0))
    assert np.array_equal(narrow, wide)
    assert not np.allclose(narrow, dense_crf(flat, probs, gaussian_compat=0.0, bilateral_sxy=2.0), atol=1e-3)


def test_scale_multiplies_both_spatial_widths_only() -> None:
    image, probs, _ = two_region_scene()
    scaled = dense_crf(image, probs, gaussian_sxy=6.0, bilateral_sxy=20.0, bilateral_srgb=13.0, scale=0.5)
    assert np.array_equal(scaled, dense_crf(image, probs, gaussian_sxy=3.0, bilateral_sxy=10.0, bilateral_srgb=13.0))


def test_iterations_are_run() -> None:
    image, probs, _ = two_region_scene()
    probs[0, 0, 0] = 0.0
    floored = np.maximum(probs, 1e-4)
    # no iteration: the distribution of the unary alone, the floored input renormalised
    np.testing.assert_allclose(dense_crf(image, probs, iterations=0), floored / floored.sum(0), rtol=1e-5)
    one, five = (dense_crf(image, probs, iterations=n) for n in (1, 5))
    assert not np.allclose(one, five, atol=1e-3)

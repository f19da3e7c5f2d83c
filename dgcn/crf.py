"""Fully connected CRF (Kraehenbuehl & Koltun) over class probabilities, single image or a parallel stream of images."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from functools import partial

import numpy as np
import pydensecrf.densecrf as dcrf

from dgcn.workers import process_pool


def dense_crf(
    image: np.ndarray,
    probs: np.ndarray,
    *,
    gaussian_sxy: float = 3.0,
    gaussian_compat: float = 3.0,
    bilateral_sxy: float = 80.0,
    bilateral_srgb: float = 13.0,
    bilateral_compat: float = 10.0,
    iterations: int = 10,
    scale: float = 1.0,
    min_prob: float = 1e-4,
) -> np.ndarray:
    """Mean-field dense CRF; defaults are the published full-resolution parameters (spec section 4).

    image: (H, W, 3) uint8 RGB; probs: (C, H, W) probabilities (never modified: the unary is built from a copy).
    scale multiplies both sxy values (1/12 for the training-time CRF on the 41x41 feature grid); probabilities are
    floored at min_prob before the unary -log(P), as in the published CRF layer.
    Returns (C, H, W) float32 probabilities summing to 1 over C.
    """
    image = np.asarray(image)
    probs = np.asarray(probs)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if probs.ndim != 3 or probs.shape[1:] != image.shape[:2]:
        raise ValueError(f"probs must be (C, H, W) matching image {image.shape[:2]}, got {probs.shape}")
    if scale <= 0 or iterations < 0:
        raise ValueError(f"scale must be > 0 and iterations >= 0, got scale={scale}, iterations={iterations}")
    num_classes, height, width = probs.shape
    unary = -np.log(np.maximum(probs.reshape(num_classes, -1), min_prob, dtype=np.float32))
    crf = dcrf.DenseCRF2D(width, height, num_classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    crf.addPairwiseGaussian(sxy=gaussian_sxy * scale, compat=gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=bilateral_sxy * scale, srgb=bilateral_srgb, rgbim=_writable(image), compat=bilateral_compat
    )
    return np.asarray(crf.inference(iterations), dtype=np.float32).reshape(num_classes, height, width)


def iter_dense_crf(
    images: Iterable[np.ndarray], probs_list: Iterable[np.ndarray], workers: int = 2, **params: float
) -> Iterator[np.ndarray]:
    """Yield dense_crf(image, probs, **params) for each pair, in order, with `workers` processes (0 = in-process).

    Streams: at most 2 * workers pairs are in flight, so arbitrarily long iterators fit in memory. The workers die
    with this process (dgcn.workers); iterate from the main thread.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    pairs = zip(images, probs_list, strict=True)
    run = partial(_crf_pair, params=params)
    if workers == 0:
        yield from map(run, pairs)
        return
    pending: deque[Future[np.ndarray]] = deque()
    with process_pool(workers) as pool:
        for pair in pairs:
            pending.append(pool.submit(run, pair))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def dense_crf_many(
    images: Iterable[np.ndarray], probs_list: Iterable[np.ndarray], workers: int = 2, **params: float
) -> list[np.ndarray]:
    """List of dense_crf results for each (image, probs) pair, in input order; see iter_dense_crf."""
    return list(iter_dense_crf(images, probs_list, workers, **params))


def _writable(image: np.ndarray) -> np.ndarray:
    """pydensecrf's typed buffers refuse read-only arrays (e.g. np.asarray of a PIL image): copy those."""
    image = np.ascontiguousarray(image)
    return image if image.flags.writeable else image.copy()


def _crf_pair(pair: tuple[np.ndarray, np.ndarray], params: dict[str, float]) -> np.ndarray:
    return dense_crf(pair[0], pair[1], **params)

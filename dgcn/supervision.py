"""Per-batch DGCN targets (graph-cut supervision and training-time CRF), computed in worker processes.

Processes, not threads: PyMaxflow's maxflow() and pydensecrf's inference() hold the GIL (two threads measured no faster
than one), so threads could not overlap them with each other or with the training step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

import numpy as np
import torch

from dgcn.crf import dense_crf_many
from dgcn.graphcut import grow_supervision, knn_edges_batch
from dgcn.workers import process_pool

# Training-time CRF at the feature grid: both sxy values divided by 12 (spec 2.5).
TRAINING_CRF_PARAMS: Mapping[str, float] = {"scale": 1 / 12}
# The constrain loss's target: the training CRF's Q floored at this, then renormalised (published train.py:169-170).
CRF_TARGET_FLOOR = 1e-4
_T = TypeVar("_T")
_C = TypeVar("_C")


def grow_images(
    cues: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[np.ndarray],
    edges: Sequence[tuple[np.ndarray, np.ndarray]],
    threshold: float,
    seed_capacity: float,
    valid: np.ndarray | None = None,
    network_seeds: float | None = None,
) -> np.ndarray:
    """grow_supervision of each image of a chunk: (b, C, h, w) cues and probs -> (b, C, h, w) uint8 supervision;
    valid: None or the (b, h, w) bool node masks; network_seeds: grow_supervision's."""
    masks = [None] * len(cues) if valid is None else valid
    return np.stack([
        grow_supervision(*image, threshold=threshold, seed_capacity=seed_capacity, valid=mask,
                         network_seeds=network_seeds)
        for *image, mask in zip(cues, probs, classes, edges, masks, strict=True)
    ])


def floored_target(q: np.ndarray, floor: float = CRF_TARGET_FLOOR) -> np.ndarray:
    """(..., C, h, w) CRF probabilities Q -> the constrain loss's target, float32: max(Q, floor) renormalised over C
    (in float64), so that no class's target is 0."""
    kept = np.maximum(np.asarray(q, dtype=np.float64), floor)
    return (kept / kept.sum(axis=-3, keepdims=True)).astype(np.float32)


def crf_images(images: np.ndarray, probs: np.ndarray, crf_params: Mapping[str, float]) -> np.ndarray:
    """The constrain targets of a chunk: floored_target of each image's dense_crf, (b, h, w, 3) uint8 and (b, C, h, w)
    probs -> (b, C, h, w) float32."""
    return floored_target(np.stack(dense_crf_many(images, probs, workers=0, **crf_params)))


def supervise_images(cues: np.ndarray, probs: np.ndarray, classes: Sequence[np.ndarray],
                     edges: Sequence[tuple[np.ndarray, np.ndarray]], threshold: float, seed_capacity: float,
                     valid: np.ndarray | None, network_seeds: float | None, images: np.ndarray,
                     crf_params: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Both targets of a chunk of images: (grow_images(...), crf_images(images, probs, crf_params))."""
    return (grow_images(cues, probs, classes, edges, threshold, seed_capacity, valid, network_seeds),
            crf_images(images, probs, crf_params))


class ChunkedFuture(Generic[_C, _T]):
    """Pending result of one batch, computed in chunks of images; result() joins the chunks' results in batch order."""

    def __init__(self, parts: list[Future[_C]], join: Callable[[list[_C]], _T]) -> None:
        self._parts = parts
        self._join = join

    def done(self) -> bool:
        return all(part.done() for part in self._parts)

    def result(self, timeout: float | None = None) -> _T:
        """The joined result; re-raises a worker's exception."""
        return self._join([part.result(timeout) for part in self._parts])


def _join_pairs(results: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Chunks' (supervision, crf_probs) pairs -> one pair of (B, C, h, w) arrays."""
    return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])


class SupervisionFuture(ChunkedFuture[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]):
    """Pending targets of one batch: result() is ((B, C, h, w) uint8 supervision, (B, C, h, w) float32 crf_probs, the
    floored CRF probabilities: floored_target)."""

    def __init__(self, parts: list[Future[tuple[np.ndarray, np.ndarray]]]) -> None:
        super().__init__(parts, _join_pairs)


class SupervisionPool:
    """Computes a batch's supervision and CRF targets (submit), or its supervision alone (grow, for export), in
    `workers` processes while the caller carries on.

    Use as a context manager, from the main thread; the workers die with this process, even when it is killed
    (see dgcn.workers). workers=0 computes in-process inside submit / grow (tests, debugging). kNN graphs are
    built on the features' device in submit / grow; only index arrays and copies of the other inputs reach the workers,
    so results are deterministic and independent of the worker count.
    """

    def __init__(
        self,
        workers: int = 2,
        k: int = 10,
        threshold: float = 0.7,
        seed_capacity: float = 10.0,
        crf_params: Mapping[str, float] | None = None,
        network_seeds: float | None = None,
    ) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.workers = workers
        self.k = k
        self.threshold = threshold
        self.seed_capacity = seed_capacity
        self.network_seeds = network_seeds
        self.crf_params = dict(TRAINING_CRF_PARAMS if crf_params is None else crf_params)
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> SupervisionPool:
        if self.workers > 0:
            self._executor = process_pool(self.workers)
            # Start the processes (and their imports) now rather than on the first training step.
            for _ in range(self.workers):
                self._executor.submit(_ready)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers, dropping queued work."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def submit(self, features: torch.Tensor, probs: torch.Tensor | np.ndarray, cues: torch.Tensor | np.ndarray,
               classes: Sequence[Sequence[int] | np.ndarray], images_small: torch.Tensor | np.ndarray,
               valid: torch.Tensor | np.ndarray | None = None, grow: bool = True) -> SupervisionFuture:
        """Queue one batch: features (B, D, h, w) float tensor, probs (B, C, h, w) smoothed probabilities, cues
        (B, C, h, w) {0,1}, classes B arrays of the classes to cut (background included), images_small (B, h, w, 3)
        uint8 RGB, valid None or the (B, h, w) bool masks of the graph nodes (False: padding, left out of the kNN
        graph and the cut; its supervision is its cues). grow=False: the supervision is the cues alone (no cut, no
        network seeds; the CRF target as ever). probs is copied before anything reads it, so the caller's autograd
        tensor is never touched.
        """
        return SupervisionFuture([self._run(supervise_images, *chunk, self.crf_params)
                                  for chunk in self._chunks(features, probs, cues, classes, valid, images_small,
                                                            grow=grow)])

    def grow(self, features: torch.Tensor, probs: torch.Tensor | np.ndarray, cues: torch.Tensor | np.ndarray,
             classes: Sequence[Sequence[int] | np.ndarray], valid: torch.Tensor | np.ndarray | None = None
             ) -> ChunkedFuture[np.ndarray, np.ndarray]:
        """Queue the graph-cut growth alone (no CRF) of one batch, inputs as for submit; result() is the (B, C, h, w)
        uint8 supervision: grow_supervision of each image with this pool's k, threshold, seed_capacity and
        network_seeds."""
        return ChunkedFuture([self._run(grow_images, *chunk)
                              for chunk in self._chunks(features, probs, cues, classes, valid)], np.concatenate)

    def _chunks(self, features: torch.Tensor, probs: torch.Tensor | np.ndarray, cues: torch.Tensor | np.ndarray,
                classes: Sequence[Sequence[int] | np.ndarray], valid: torch.Tensor | np.ndarray | None,
                images: torch.Tensor | np.ndarray | None = None, grow: bool = True) -> list[tuple[object, ...]]:
        """Check the batch, build its kNN graphs here on all threads, then split it into one chunk of images per
        worker: per chunk the arguments of grow_images (valid and network_seeds included), followed by its images when
        given. grow=False: no kNN graphs, threshold 1 and no network seeds, so that no pixel is grown (P_c > 1
        nowhere)."""
        if self.workers > 0 and self._executor is None:
            raise RuntimeError("SupervisionPool must be entered (`with SupervisionPool(...) as pool:`) before use")
        probs_np = _host_copy(probs, np.float32)
        cues_np = _host_copy(cues, np.uint8)
        if probs_np.ndim != 4 or cues_np.shape != probs_np.shape:
            raise ValueError(f"probs and cues must both be (B, C, h, w); got {probs_np.shape} and {cues_np.shape}")
        batch, _, h, w = probs_np.shape
        if features.ndim != 4 or features.shape[0] != batch or tuple(features.shape[2:]) != (h, w):
            raise ValueError(f"features must be (B={batch}, D, {h}, {w}), got {tuple(features.shape)}")
        images_np = None if images is None else _host_copy(images, np.uint8)
        if images_np is not None and images_np.shape != (batch, h, w, 3):
            raise ValueError(f"images_small must be ({batch}, {h}, {w}, 3) uint8, got {images_np.shape}")
        if len(classes) != batch:
            raise ValueError(f"classes must hold one array per image ({batch}), got {len(classes)}")
        valid_np = None if valid is None else _host_copy(valid)
        if valid_np is not None and (valid_np.shape != (batch, h, w) or valid_np.dtype != np.bool_):
            raise ValueError(f"valid must be ({batch}, {h}, {w}) bool, got {valid_np.shape} {valid_np.dtype}")
        # The kNN first, on all threads; then one chunk of images per worker. (Queuing the CRFs before the kNN, or
        # several chunks per worker, measured slower on 2 cores: the workers then compete with the kNN's threads.)
        # Without growth nothing is cut, so no graph is built (a warm-up's steps skip the kNN).
        no_edges = (np.empty(0, np.int64), np.empty(0, np.int64))
        edges = (knn_edges_batch(features, self.k, None if valid_np is None else torch.from_numpy(valid_np)) if grow
                 else [no_edges] * batch)
        chunks = np.array_split(np.arange(batch), min(batch, max(1, self.workers)))
        return [(cues_np[chunk], probs_np[chunk], [np.asarray(classes[b], dtype=np.int64) for b in chunk],
                 [edges[b] for b in chunk], self.threshold if grow else 1.0, self.seed_capacity,
                 None if valid_np is None else valid_np[chunk], self.network_seeds if grow else None,
                 *(() if images_np is None else (images_np[chunk],)))
                for chunk in chunks]

    def _run(self, function: Callable[..., _T], *args: object) -> Future[_T]:
        """function(*args) on a worker, or now in this process when workers=0."""
        if self._executor is not None:
            return self._executor.submit(function, *args)
        done: Future[_T] = Future()
        done.set_result(function(*args))
        return done


def _host_copy(values: torch.Tensor | np.ndarray, dtype: type[np.generic] | None = None) -> np.ndarray:
    """A CPU numpy copy, in dtype (None: the input's), that shares no memory with the input (a .numpy() view would
    alias autograd storage)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.array(values, dtype=dtype, copy=True)


def _ready() -> None:
    """No-op task that makes a worker process start."""

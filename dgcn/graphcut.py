"""DGCN seed growth: a kNN graph on network features and one s-t min cut per present class (spec section 2.3-2.4)."""

from __future__ import annotations

from collections.abc import Sequence

import maxflow
import numpy as np
import torch

# Pairs whose exact distances are computed per batch; bounds the (pairs, D) float64 difference buffer.
_EXACT_CHUNK = 1024
# Floor for P and 1 - P inside -log10: smaller than any smoothed probability (>= ~1e-7 / (1 + C * 1e-7)), so it only
# acts on exact 0 or 1 and keeps the terminal capacities finite.
_PROB_FLOOR = np.float32(1e-8)


def knn_edges(features: torch.Tensor, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Directed kNN pairs i -> j over the h*w grid nodes (row-major), the published rule with ties included.

    j is a neighbour of i when d(i, j) <= the k-th smallest of d(i, .) over all nodes, the node itself counted among the
    k and then removed; d is the squared Euclidean distance between feature vectors.

    features: (D, h, w) float tensor on any device; the distance work stays there and only index pairs reach the host.
    Returns (src, dst): int64 arrays sorted by (src, dst). See `knn_edges_batch` for how ties are kept exact.
    """
    if not isinstance(features, torch.Tensor) or features.ndim != 3:
        raise ValueError(f"features must be a (D, h, w) tensor, got {getattr(features, 'shape', type(features))}")
    return knn_edges_batch(features[None], k)[0]


def knn_edges_batch(features: torch.Tensor, k: int = 10) -> list[tuple[np.ndarray, np.ndarray]]:
    """`knn_edges` of every image of a batch, in one pass of batched tensor operations: (B, D, h, w) -> B pairs.

    Exactness: the |a|^2 + |b|^2 - 2ab expansion is fast but rounds. With B a rigorous bound on its error, a pair whose
    expanded distance is below (row's expanded k-th value - 2B) is certainly a neighbour; pairs within 2B of that k-th
    value are re-measured as sum((a - b)^2) in float64 and the rule is applied to those values. That distance is
    symmetric, exactly 0 on the diagonal and equal for truly equidistant small-integer/dyadic features, so ties are
    found exactly. The expansion runs in float64 when TF32/bf16 float32 matmuls are enabled (the bound needs IEEE).
    """
    if not isinstance(features, torch.Tensor) or features.ndim != 4:
        raise ValueError(f"features must be a (B, D, h, w) tensor, got {getattr(features, 'shape', type(features))}")
    if not features.is_floating_point():
        raise ValueError(f"features must be a float tensor, got dtype {features.dtype}")
    batch, dim, h, w = features.shape
    n = h * w
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, h*w = {n}], got {k}")
    with torch.no_grad():
        points = features.detach().reshape(batch, dim, n).transpose(1, 2)
        wide = points.dtype == torch.float64 or not _ieee_float32_matmul(points.device)
        fast = points.to(torch.float64 if wide else torch.float32).contiguous()
        norms = (fast * fast).sum(dim=2)
        approx = norms[:, :, None] + norms[:, None, :] - 2.0 * torch.bmm(fast, fast.transpose(1, 2))
        kth_approx = torch.topk(approx, k, dim=2, largest=False, sorted=True).values[..., -1]
        # |expanded - exact| <= (D + 2) * eps * (|a|^2 + |b|^2) for dot products and norms accumulated in this dtype.
        bound = (dim + 2) * torch.finfo(fast.dtype).eps * (norms + norms.amax(dim=1, keepdim=True))
        images, rows, cols = torch.nonzero(approx <= (kth_approx + 2.0 * bound)[..., None], as_tuple=True)
        band = approx[images, rows, cols] >= (kth_approx - 2.0 * bound)[images, rows]
        del approx
        # Nodes numbered across the batch (image * n + node): one ragged k-th value per node of every image.
        first, second = images * n + rows, images * n + cols
        # Certain neighbours stand in as -inf: below every re-measured value, they still count towards the k.
        distances = torch.full(rows.shape, float("-inf"), dtype=torch.float64, device=rows.device)
        distances[band] = _pair_distances(points.reshape(batch * n, dim).to(torch.float64), first[band], second[band])
        keep = (distances <= _row_kth(distances, first, batch * n, k)[first]) & (rows != cols)
        counts = torch.bincount(images[keep], minlength=batch).tolist()
        src = rows[keep].cpu().numpy().astype(np.int64)
        dst = cols[keep].cpu().numpy().astype(np.int64)
    splits = np.cumsum(counts)[:-1]
    return list(zip(np.split(src, splits), np.split(dst, splits), strict=True))


def _ieee_float32_matmul(device: torch.device) -> bool:
    """Whether float32 matmuls on device's backend run in full IEEE precision (no TF32/bf16 shortcuts)."""
    backend = torch.backends.cuda.matmul if device.type == "cuda" else torch.backends.mkldnn.matmul
    return {torch.backends.fp32_precision, backend.fp32_precision} <= {"none", "ieee"}


def _pair_distances(points: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(P,) float64 sum((points[rows] - points[cols])^2), computed in chunks to bound memory."""
    parts = [
        (points[rows[start : start + _EXACT_CHUNK]] - points[cols[start : start + _EXACT_CHUNK]]).square().sum(dim=1)
        for start in range(0, rows.numel(), _EXACT_CHUNK)
    ]
    return torch.cat(parts)


def _row_kth(values: torch.Tensor, rows: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """(n,) k-th smallest of the ragged per-row values; rows sorted ascending, each row holding >= k values."""
    counts = torch.bincount(rows, minlength=n)
    starts = torch.cumsum(counts, dim=0) - counts
    position = torch.arange(rows.numel(), device=rows.device) - starts[rows]
    padded = torch.full((n, int(counts.max())), float("inf"), dtype=values.dtype, device=values.device)
    padded[rows, position] = values
    return torch.kthvalue(padded, k, dim=1).values


def seed_labels(cues: np.ndarray) -> np.ndarray:
    """(C, h, w) {0,1} cues -> (h*w,) int64: the highest seeded class index per node, -1 where unseeded."""
    flat = np.asarray(cues).reshape(cues.shape[0], -1) != 0
    highest = flat.shape[0] - 1 - np.argmax(flat[::-1], axis=0)
    return np.where(flat.any(axis=0), highest, -1)


def terminal_capacities(
    labels: np.ndarray, probs_c: np.ndarray, c: int, seed_capacity: float
) -> tuple[np.ndarray, np.ndarray]:
    """Published terminal weights of class c's graph: (source, sink) float32 (n,) capacities.

    labels: (n,) from seed_labels; probs_c: (n,) float32 P_c. Seeded with c -> (0, cap); seeded with another class ->
    (cap, 0); unseeded -> (-log10 P_c, -log10(1 - P_c)) in float32, P and 1 - P floored at 1e-8 (exact 0/1 stay finite).
    """
    p = np.asarray(probs_c, dtype=np.float32)
    source = -np.log10(np.maximum(p, _PROB_FLOOR))
    sink = -np.log10(np.maximum(np.float32(1) - p, _PROB_FLOOR))
    seeded = labels >= 0
    own = labels == c
    cap = np.float32(seed_capacity)
    source[seeded] = np.where(own[seeded], np.float32(0), cap)
    sink[seeded] = np.where(own[seeded], cap, np.float32(0))
    return source, sink


def class_graph(
    labels: np.ndarray, probs_c: np.ndarray, c: int, edges: tuple[np.ndarray, np.ndarray], seed_capacity: float
) -> tuple[maxflow.GraphFloat, np.ndarray]:
    """Class c's s-t graph, unsolved: (graph, (n,) node ids). Terminals from terminal_capacities; each directed pair
    (i, j) of edges adds one edge of capacity 1 both ways. Built with array calls only.
    """
    src, dst = edges
    graph = maxflow.Graph[float](labels.size, src.size)
    nodes = graph.add_nodes(labels.size)
    graph.add_grid_tedges(nodes, *terminal_capacities(labels, probs_c, c, seed_capacity))
    unit = np.ones(src.size, dtype=np.float64)
    graph.add_edges(src, dst, unit, unit)
    return graph, nodes


def grow_supervision(
    cues: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[int] | np.ndarray,
    edges: tuple[np.ndarray, np.ndarray],
    threshold: float = 0.7,
    seed_capacity: float = 10.0,
) -> np.ndarray:
    """DGCN supervision of one image: grow each class's cues by a graph cut, keep the growth where P_c > threshold.

    cues: (C, h, w) {0,1} seeds; probs: (C, h, w) smoothed softmax probabilities (losses.smoothed_softmax);
    classes: the classes to cut, background included; edges: (src, dst) from knn_edges.
    Returns (C, h, w) uint8 multi-hot supervision: for c in classes, the sink side of c's cut where probs[c] > threshold
    and cues[c] elsewhere; other channels are cues[c] unchanged (the published code cuts present classes only).
    Each directed pair adds one edge of capacity 1 both ways (a mutual pair carries 2); a node seeded with several
    classes takes the highest one for the terminal weights.
    """
    cues = np.asarray(cues)
    probs = np.asarray(probs)
    if cues.ndim != 3 or probs.shape != cues.shape:
        raise ValueError(f"cues and probs must both be (C, h, w); got cues {cues.shape}, probs {probs.shape}")
    num_classes = cues.shape[0]
    n = cues.shape[1] * cues.shape[2]
    classes = np.unique(np.asarray(classes, dtype=np.int64))
    if classes.size and (classes[0] < 0 or classes[-1] >= num_classes):
        raise ValueError(f"classes must lie in [0, {num_classes}), got {classes.tolist()}")
    src, dst = (np.ascontiguousarray(e, dtype=np.int64) for e in edges)
    if src.ndim != 1 or src.shape != dst.shape:
        raise ValueError(f"edges must be two equal-length 1-D arrays, got {src.shape} and {dst.shape}")
    if src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
        raise ValueError(f"edges index nodes outside [0, {n})")

    labels = seed_labels(cues)
    flat_probs = probs.reshape(num_classes, n).astype(np.float32, copy=False)
    supervision = (cues != 0).astype(np.uint8)
    for c in classes:
        graph, nodes = class_graph(labels, flat_probs[c], int(c), (src, dst), seed_capacity)
        graph.maxflow()
        grown = graph.get_grid_segments(nodes)
        confident = flat_probs[c] > threshold
        channel = supervision[c].reshape(n)
        channel[confident] = grown[confident]
    return supervision

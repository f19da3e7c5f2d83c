"""DGCN seed growth: a kNN graph on network features and one s-t min cut per present class (spec section 2.3-2.4)."""

from __future__ import annotations

from collections.abc import Sequence

import maxflow
import numpy as np
import torch

# Entries of the score matrix of one kNN pass (float32: 512 MiB).
_MAX_SCORES = 1 << 27
# Column blocks whose minima bound each row's k-th score (at least k are used).
_COLUMN_BLOCKS = 32
# Elements of the (pairs, D) float64 difference buffer of one chunk of exact distances (2 MiB: reused, cache-sized).
_EXACT_ELEMENTS = 1 << 18
# Floor for P and 1 - P inside -log10: smaller than any smoothed probability (>= ~1e-7 / (1 + C * 1e-7)), so it only
# acts on exact 0 or 1 and keeps the terminal capacities finite.
_PROB_FLOOR = np.float32(1e-8)


# Default cap on a node's neighbours, per unit of k: ties at the k-th distance beyond it are dropped (see knn_edges).
MAX_NEIGHBOURS_PER_K = 2


def knn_edges(
    features: torch.Tensor,
    k: int = 10,
    valid: torch.Tensor | np.ndarray | None = None,
    max_neighbours: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Directed kNN pairs i -> j over the h*w grid nodes (row-major): the published rule, its ties bounded.

    j is a neighbour of i when d(i, j) <= the k-th smallest of d(i, .) over all nodes, the node itself counted among the
    k and then removed; d is the squared Euclidean distance between feature vectors. Without exact ties that is k - 1
    neighbours. Exact ties at the k-th distance (a constant region: every member ties with every other) are kept up to
    `max_neighbours` per node, the lowest node indices first, so an image yields at most max_neighbours * h * w pairs.

    features: (D, h, w) float tensor on any device; the distance work stays there and only index pairs reach the host.
    valid: optional (h, w) bool mask of the graph's nodes (False: padding). Other nodes get no pairs and are nobody's
    neighbour: the result is knn_edges of the valid nodes alone, in grid numbering; with fewer than k valid nodes, each
    valid node is paired with every other (up to max_neighbours).
    max_neighbours: cap on each node's neighbours, >= k - 1; None: MAX_NEIGHBOURS_PER_K * k.
    Returns (src, dst): int64 arrays sorted by (src, dst). See `knn_edges_batch` for how ties are kept exact.
    """
    if not isinstance(features, torch.Tensor) or features.ndim != 3:
        raise ValueError(f"features must be a (D, h, w) tensor, got {getattr(features, 'shape', type(features))}")
    if valid is not None:
        if tuple(valid.shape) != tuple(features.shape[1:]):
            raise ValueError(f"valid must be an (h, w) = {tuple(features.shape[1:])} mask, got {tuple(valid.shape)}")
        valid = valid[None]
    return knn_edges_batch(features[None], k, valid, max_neighbours)[0]


def knn_edges_batch(
    features: torch.Tensor,
    k: int = 10,
    valid: torch.Tensor | np.ndarray | None = None,
    max_neighbours: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`knn_edges` of every image of a batch, in one pass of batched tensor operations: (B, D, h, w) -> B pairs;
    valid: optional (B, h, w) bool node mask.

    Exactness: rows are ranked by the score |b|^2 - 2ab (the distance less the row's constant |a|^2), fast but
    rounded. With B a rigorous bound on its error, a pair scoring below (row's k-th score - 2B) is certainly a
    neighbour; pairs within 2B of that k-th score are re-measured as sum((a - b)^2) in float64 and the rule is applied
    to those values. That distance is symmetric, exactly 0 on the diagonal and equal for truly equidistant
    small-integer/dyadic features, so ties are found exactly. The scores run in float64 when TF32/bf16 float32 matmuls
    are enabled (the bound needs IEEE).
    Bounded ties: before re-measuring, a row keeps at most max_neighbours + 1 columns (the lowest indices) of each set
    of identical feature vectors; those share one distance, so the cap would drop the others anyway and the k-th
    distance is unchanged. A constant region thus costs O(max_neighbours) re-measured pairs per node, not O(n).
    Speed: no full sort or top-k of the n x n scores; the k-th smallest of strided column-block minima bounds each
    row's k-th score from above, and only the few scores under that bound are gathered and ranked.
    """
    if not isinstance(features, torch.Tensor) or features.ndim != 4:
        raise ValueError(f"features must be a (B, D, h, w) tensor, got {getattr(features, 'shape', type(features))}")
    if not features.is_floating_point():
        raise ValueError(f"features must be a float tensor, got dtype {features.dtype}")
    batch, dim, h, w = features.shape
    n = h * w
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, h*w = {n}], got {k}")
    cap = MAX_NEIGHBOURS_PER_K * k if max_neighbours is None else max_neighbours
    if isinstance(cap, bool) or not isinstance(cap, int | np.integer) or cap < k - 1:
        raise ValueError(f"max_neighbours must be an integer >= k - 1 = {k - 1}, got {max_neighbours}")
    mask = None if valid is None else _node_mask(valid, (batch, h, w), features.device)
    # Images per pass, so that the (images, n, n) score matrix stays bounded (HRNet grids have thousands of nodes).
    step = max(1, _MAX_SCORES // (n * n))
    if mask is None:
        return [edges for start in range(0, batch, step)
                for edges in _knn_pass(features[start : start + step], k, int(cap))]
    counts = mask.view(batch, n).sum(dim=1).tolist()
    result = [(np.zeros(0, np.int64), np.zeros(0, np.int64)) for _ in range(batch)]
    full = [b for b in range(batch) if counts[b] >= k]
    for start in range(0, len(full), step):
        images = torch.tensor(full[start : start + step], device=features.device)
        for b, edges in zip(images.tolist(), _knn_pass(features[images], k, int(cap), mask[images]), strict=True):
            result[b] = edges
    for b in (b for b in range(batch) if 0 < counts[b] < k):
        # Fewer than k valid nodes: the kNN of those alone, with k clamped to their number.
        nodes = torch.nonzero(mask[b].view(n)).squeeze(1)
        src, dst = _knn_pass(features[b].reshape(dim, 1, n)[None, :, :, nodes], counts[b], int(cap))[0]
        index = nodes.cpu().numpy().astype(np.int64)
        result[b] = (index[src], index[dst])
    return result


def _node_mask(valid: torch.Tensor | np.ndarray, shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """The (B, h, w) bool node mask as a tensor on device; one clear error for any other shape or dtype."""
    mask = torch.as_tensor(np.ascontiguousarray(valid) if isinstance(valid, np.ndarray) else valid)
    if mask.dtype != torch.bool or tuple(mask.shape) != shape:
        raise ValueError(f"valid must be a {shape} bool mask, got {tuple(mask.shape)} {mask.dtype}")
    return mask.to(device)


def _knn_pass(
    features: torch.Tensor, k: int, max_neighbours: int, mask: torch.Tensor | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """knn_edges_batch on a batch small enough for one (B, n, n) score matrix; mask: None, or (B, h, w) bool with at
    least k True per image."""
    batch, dim, h, w = features.shape
    n = h * w
    with torch.no_grad():
        points = features.detach().reshape(batch, dim, n).transpose(1, 2)
        wide = points.dtype == torch.float64 or not _ieee_float32_matmul(points.device)
        # Exact copies of the features (float32 or wider), contiguous per node.
        fast = points.to(torch.float64 if wide else torch.float32).contiguous()
        norms = (fast * fast).sum(dim=2)
        blocks = max(k, _COLUMN_BLOCKS)
        if mask is None:
            scores = _padded_scores(fast, norms, blocks)
            largest = norms.amax(dim=1, keepdim=True)
        else:
            # Masked columns score +inf like the padding columns; the error bound only needs the valid norms.
            mask = mask.reshape(batch, n)
            scores = _padded_scores(fast, norms.masked_fill(~mask, float("inf")), blocks)
            largest = norms.masked_fill(~mask, 0).amax(dim=1, keepdim=True)
        m = scores.shape[2]
        ceiling = _kth_block_minimum(scores, k, blocks)
        # |score - exact score| <= (D + 2) * eps * (|a|^2 + |b|^2) for dot products and norms in this dtype.
        bound = (dim + 2) * torch.finfo(fast.dtype).eps * (norms + largest)
        limit = ceiling + 2.0 * bound
        if mask is not None:
            # Fewer than k blocks holding valid columns give an infinite ceiling: keep the +inf columns out anyway.
            limit = limit.clamp(max=torch.finfo(limit.dtype).max).masked_fill(~mask, float("-inf"))
        # Flat positions in the (B, n, m) scores; nodes numbered across the batch (image * n + node), so each node of
        # every image gets one ragged k-th value.
        flat = torch.nonzero((scores <= limit[..., None]).view(-1)).squeeze(1)
        first, cols = flat // m, flat % m
        images, rows = first // n, first % n
        second = images * n + cols
        # A row's surplus copies of one feature vector could only be dropped by the cap: drop them before re-measuring.
        kept = _drop_duplicate_surplus(first, second, fast.view(batch * n, dim), max_neighbours + 1)
        flat, first, cols, images, rows, second = (t[kept] for t in (flat, first, cols, images, rows, second))
        values = scores.view(-1)[flat]
        del scores
        kth = _row_kth(values, first, batch * n, k)[first]
        margin = 2.0 * bound.view(-1)[first]
        near = torch.nonzero(values <= kth + margin).squeeze(1)
        band = (values >= kth - margin)[near]
        images, rows, cols, first, second = (t[near] for t in (images, rows, cols, first, second))
        # A row with one pair in the band has k - 1 certain neighbours below it, so that pair is its k-th: certain too.
        band &= torch.bincount(first[band], minlength=batch * n)[first] > 1
        # Certain neighbours stand in as -inf: below every re-measured value, they still count towards the k.
        distances = torch.full(rows.shape, float("-inf"), dtype=torch.float64, device=rows.device)
        distances[band] = _pair_distances(fast.view(batch * n, dim), first[band], second[band])
        kth = _row_kth(distances, first, batch * n, k)[first]
        keep = (distances <= kth) & (rows != cols)
        # The cap: every neighbour nearer than the k-th distance (at most k - 1), then its ties, lowest index first.
        nearer = torch.bincount(first[keep & (distances < kth)], minlength=batch * n)
        keep &= _first_ties(keep & (distances == kth), first, max_neighbours - nearer)
        counts = torch.bincount(images[keep], minlength=batch).tolist()
        src = rows[keep].cpu().numpy().astype(np.int64)
        dst = cols[keep].cpu().numpy().astype(np.int64)
    splits = np.cumsum(counts)[:-1]
    return list(zip(np.split(src, splits), np.split(dst, splits), strict=True))


def _drop_duplicate_surplus(rows: torch.Tensor, cols: torch.Tensor, points: torch.Tensor, most: int) -> torch.Tensor:
    """(P,) bool: which candidate pairs to keep so that no row holds more than `most` columns with identical feature
    vectors, the lowest column indices kept. rows, cols: (P,) node ids, pairs sorted by (row, col); points (N, D).

    Only rows with more than `most` candidates can hold such a surplus, so identical vectors are looked for among
    their columns alone: nothing is spent on rows without a large tie.
    """
    keep = torch.ones(rows.shape, dtype=torch.bool, device=rows.device)
    heavy = torch.nonzero((torch.bincount(rows, minlength=points.shape[0]) > most)[rows]).squeeze(1)
    if heavy.numel() == 0:
        return keep
    nodes, node_of_pair = torch.unique(cols[heavy], return_inverse=True)
    _, group_of_node = torch.unique(points[nodes], dim=0, return_inverse=True)
    # Stable sort by (row, group): within each run the pairs stay in column order, so the rank is the index order.
    key = rows[heavy] * nodes.numel() + group_of_node[node_of_pair]
    key, order = torch.sort(key, stable=True)
    run_start = torch.ones_like(key, dtype=torch.bool)
    run_start[1:] = key[1:] != key[:-1]
    position = torch.arange(key.numel(), device=key.device)
    rank = position - torch.cummax(torch.where(run_start, position, 0), dim=0).values
    keep[heavy[order[rank >= most]]] = False
    return keep


def _first_ties(ties: torch.Tensor, rows: torch.Tensor, room: torch.Tensor) -> torch.Tensor:
    """(P,) bool: False for the ties beyond the first room[row] of their row, True elsewhere. ties, rows: (P,) over
    pairs sorted by (row, col), so a row's first ties are its lowest column indices; room: (N,) per row."""
    before = torch.cumsum(ties, dim=0) - ties.long()
    counts = torch.bincount(rows, minlength=room.numel())
    row_start = torch.cumsum(counts, dim=0) - counts
    # Ties of the same row before this pair: the running count less the count before the row's first pair.
    rank = before - before[row_start[rows]]
    return ~ties | (rank < room[rows])


def _padded_scores(points: torch.Tensor, norms: torch.Tensor, blocks: int) -> torch.Tensor:
    """(B, n, m) scores |b|^2 - 2ab of every row point a against every column point b, m = n rounded up to a multiple
    of `blocks`; the padding columns score +inf (zero points of infinite norm), so they never rank."""
    batch, n, dim = points.shape
    pad = -n % blocks
    if pad:
        points_t = torch.cat([points, points.new_zeros(batch, pad, dim)], dim=1).transpose(1, 2)
        norms = torch.cat([norms, norms.new_full((batch, pad), float("inf"))], dim=1)
    else:
        points_t = points.transpose(1, 2)
    return torch.baddbmm(norms[:, None, :], points, points_t, alpha=-2.0)


def _kth_block_minimum(scores: torch.Tensor, k: int, blocks: int) -> torch.Tensor:
    """(B, n) upper bound of each row's k-th smallest score: the k-th smallest of the minima of `blocks` strided
    column blocks (column j in block j mod blocks). Those minima are k distinct entries of the row, so their k-th
    smallest is >= the row's; striding puts a node's grid neighbours, usually its nearest, in different blocks.
    """
    batch, n, m = scores.shape
    minima = scores.reshape(batch, n, m // blocks, blocks).amin(dim=2)
    return torch.kthvalue(minima, k, dim=2).values


def _ieee_float32_matmul(device: torch.device) -> bool:
    """Whether float32 matmuls on device's backend run in full IEEE precision (no TF32/bf16 shortcuts)."""
    backend = torch.backends.cuda.matmul if device.type == "cuda" else torch.backends.mkldnn.matmul
    return {torch.backends.fp32_precision, backend.fp32_precision} <= {"none", "ieee"}


def _pair_distances(points: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(P,) float64 sum((points[rows] - points[cols])^2), computed in float64 in chunks to bound memory."""
    chunk = max(1, _EXACT_ELEMENTS // points.shape[1])
    parts = []
    for start in range(0, rows.numel(), chunk):
        difference = points[rows[start : start + chunk]].double() - points[cols[start : start + chunk]].double()
        parts.append(difference.square_().sum(dim=1))
    return torch.cat(parts) if parts else points.new_zeros(0, dtype=torch.float64)


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
    valid: np.ndarray | None = None,
    network_seeds: float | None = None,
) -> np.ndarray:
    """DGCN supervision of one image: grow each class's cues by a graph cut, keep the growth where P_c > threshold.

    cues: (C, h, w) {0,1} seeds; probs: (C, h, w) smoothed softmax probabilities (losses.smoothed_softmax);
    classes: the classes to cut, background included; edges: (src, dst) from knn_edges.
    valid: optional (h, w) bool mask of the graph's nodes (False: padding). Other nodes are left out of the cut: pairs
    touching them are dropped and their supervision is their cues.
    Returns (C, h, w) uint8 multi-hot supervision: for c in classes, the sink side of c's cut where probs[c] > threshold
    and cues[c] elsewhere; other channels are cues[c] unchanged (the published code cuts present classes only).
    Each directed pair adds one edge of capacity 1 both ways (a mutual pair carries 2); a node seeded with several
    classes takes the highest one for the terminal weights.
    network_seeds: None (the published seeds: the cues), or a probability: the seeds of each class in `classes` are
    then its cues plus the valid nodes where probs[c] > network_seeds (growth from the network's own confident pixels
    as well as the cues); "cues" above then means these seeds.
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
    if valid is not None:
        valid = np.asarray(valid)
        if valid.dtype != np.bool_ or valid.shape != cues.shape[1:]:
            raise ValueError(f"valid must be an {cues.shape[1:]} bool mask, got {valid.shape} {valid.dtype}")
        valid = valid.reshape(n)
        inside = valid[src] & valid[dst]
        src, dst = src[inside], dst[inside]

    seeds = cues != 0
    if network_seeds is not None:
        confident_seeds = probs[classes] > network_seeds
        seeds[classes] |= confident_seeds if valid is None else confident_seeds & valid.reshape(cues.shape[1:])
    labels = seed_labels(seeds)
    flat_probs = probs.reshape(num_classes, n).astype(np.float32, copy=False)
    supervision = seeds.astype(np.uint8)
    for c in classes:
        confident = flat_probs[c] > threshold
        if valid is not None:
            confident &= valid
        if not confident.any():  # the cut could change no pixel (e.g. threshold 1: the cues alone)
            continue
        graph, nodes = class_graph(labels, flat_probs[c], int(c), (src, dst), seed_capacity)
        graph.maxflow()
        grown = graph.get_grid_segments(nodes)
        channel = supervision[c].reshape(n)
        channel[confident] = grown[confident]
    return supervision

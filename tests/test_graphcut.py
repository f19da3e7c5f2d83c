"""Graph-cut seed growth: hand-worked cuts, the published loop construction, exact kNN ties."""

from __future__ import annotations

import maxflow
import numpy as np
import pytest
import torch

from dgcn import graphcut
from dgcn.crf import dense_crf
from dgcn.graphcut import grow_supervision, knn_edges, knn_edges_batch
from dgcn.losses import smoothed_softmax
from dgcn.supervision import SupervisionPool, floored_target

NO_EDGES = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def reference_knn(points: np.ndarray, k: int, max_neighbours: int | None = None) -> set[tuple[int, int]]:
    """Brute-force published rule on float64 direct distances; points (n, D). With max_neighbours, each node keeps
    only its first max_neighbours neighbours in (distance, index) order."""
    dist = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    kth = np.sort(dist, axis=1)[:, k - 1]
    if max_neighbours is None:
        rows, cols = np.nonzero(dist <= kth[:, None])
        return {(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if i != j}
    order = np.argsort(dist, axis=1, kind="stable")  # by distance, ties by node index
    rows = np.arange(len(points))[:, None]
    ranked = (dist[rows, order] <= kth[:, None]) & (order != rows)
    ranked &= np.cumsum(ranked, axis=1) <= max_neighbours
    kept_rows, places = np.nonzero(ranked)
    return {(int(i), int(j)) for i, j in zip(kept_rows, order[kept_rows, places], strict=True)}


def pair_set(edges: tuple[np.ndarray, np.ndarray]) -> set[tuple[int, int]]:
    return set(zip(edges[0].tolist(), edges[1].tolist(), strict=True))


def reference_cut(cues, probs, classes, edges, threshold=0.7, cap=10.0):
    """Per-node / per-edge construction as in the published code."""
    num_classes, h, w = cues.shape
    n = h * w
    flat_cues = cues.reshape(num_classes, n)
    flat_probs = probs.reshape(num_classes, n)
    label = np.full(n, -1)
    for c in range(num_classes):
        label[flat_cues[c] == 1] = c
    out = flat_cues.copy()
    for c in classes:
        graph = maxflow.Graph[float]()
        nodes = graph.add_nodes(n)
        for i in range(n):
            if label[i] == c:
                graph.add_tedge(nodes[i], 0.0, cap)
            elif label[i] >= 0:
                graph.add_tedge(nodes[i], cap, 0.0)
            else:
                p = np.float32(flat_probs[c, i])
                graph.add_tedge(nodes[i], float(-np.log10(p)), float(-np.log10(np.float32(1) - p)))
        for i, j in zip(*edges, strict=True):
            graph.add_edge(nodes[i], nodes[j], 1.0, 1.0)
        graph.maxflow()
        for i in range(n):
            if flat_probs[c, i] > threshold:
                out[c, i] = graph.get_segment(nodes[i])
    return out.reshape(num_classes, h, w)


def test_knn_ties_on_a_line():
    line = torch.arange(5, dtype=torch.float32).reshape(1, 1, 5)
    src, dst = knn_edges(line, k=2)
    pairs = set(zip(src.tolist(), dst.tolist(), strict=True))
    assert pairs == {(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (3, 4), (4, 3)}
    assert src.dtype == np.int64 and dst.dtype == np.int64


@pytest.mark.parametrize("k", [2, 5, 6, 10])
def test_knn_ties_on_grid_coordinates_with_large_offset(k):
    # Coordinates + 3000 in float32: the |a|^2+|b|^2-2ab expansion rounds by more than the tie spacing of 1.
    rows, cols = torch.meshgrid(torch.arange(6.0), torch.arange(7.0), indexing="ij")
    features = torch.stack([rows, cols]) + 3000.0
    src, dst = knn_edges(features, k=k)
    expected = reference_knn(features.reshape(2, -1).t().double().numpy(), k)
    assert set(zip(src.tolist(), dst.tolist(), strict=True)) == expected
    assert len(src) == len(expected)
    if k == 5:  # self + 4 equidistant neighbours: interior nodes get exactly the 4-neighbourhood
        assert sorted(dst[src == 8].tolist()) == [1, 7, 9, 15]


def test_knn_random_features_match_reference_and_order():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(64, 8, 9, generator=gen)
    features[:, 2, 3] = features[:, 5, 5]  # a duplicate: distance 0 ties with the node itself
    src, dst = knn_edges(features, k=10)
    assert set(zip(src.tolist(), dst.tolist(), strict=True)) == reference_knn(
        features.reshape(64, -1).t().double().numpy(), 10
    )
    assert (2 * 9 + 3, 5 * 9 + 5) in set(zip(src.tolist(), dst.tolist(), strict=True))
    order = np.lexsort((dst, src))
    assert np.array_equal(order, np.arange(len(src)))


@pytest.mark.parametrize("shape", [(24, 24), (41, 41), (5, 3)])
def test_knn_matches_reference_on_smooth_quantised_and_constant_features(shape):
    # Smooth features (grid neighbours nearest, as from a trained network) on a dyadic grid (many exact ties, at most
    # 2k per node: all kept), and constant features (every pair tied): the published rule when the cap is lifted
    # (max_neighbours = n - 1), the default cap's 2k lowest indices otherwise. Grid sizes with and without padding to
    # whole column blocks.
    generator = torch.Generator().manual_seed(1)
    smooth = torch.randn(4, *shape, generator=generator).cumsum(1).cumsum(2)
    smooth = torch.round(smooth * 4) / 4
    constant = torch.full((4, *shape), 7.0)
    n = shape[0] * shape[1]
    for features, cap, reference_cap in ((smooth, None, None), (constant, n - 1, None), (constant, None, 20)):
        src, dst = knn_edges(features, k=10, max_neighbours=cap)
        expected = reference_knn(features.reshape(4, -1).t().double().numpy(), 10, reference_cap)
        assert set(zip(src.tolist(), dst.tolist(), strict=True)) == expected
        assert len(src) == len(expected)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_knn_pairs_within_rounding_of_the_kth_are_re_measured(k):
    # Gaps 1, 2, 3, ... at offset 3000 in float32: the expansion's error bound spans several distinct distances, so a
    # row's band holds a few pairs of which only the truly nearest may be kept.
    line = (torch.tensor([0, 1, 3, 6, 10, 15, 21, 28], dtype=torch.float32) + 3000.0).reshape(1, 1, 8)
    src, dst = knn_edges(line, k=k)
    expected = reference_knn(line.reshape(1, -1).t().double().numpy(), k)
    assert set(zip(src.tolist(), dst.tolist(), strict=True)) == expected


def test_knn_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be"):
        knn_edges(torch.zeros(3, 2, 2), k=5)


def test_isolated_nodes_follow_seeds_and_the_threshold_rule():
    # No edges: unseeded nodes go to "is c" iff P > 0.5; supervision keeps that only where P > 0.7.
    cues = np.zeros((3, 1, 4), np.uint8)
    cues[1, 0, 0] = 1  # seeded with class 1
    cues[2, 0, 1] = 1  # seeded with another class
    probs = np.zeros((3, 1, 4), np.float32)
    probs[1, 0] = [0.2, 0.9, 0.71, 0.69]
    probs[0] = 1 - probs[1] - probs[2]
    sup = grow_supervision(cues, probs, [0, 1], NO_EDGES)
    # node 0 keeps its cue (P <= 0.7); node 1 is seeded with class 2 -> "not 1"; node 2 grows; node 3 is below 0.7.
    assert sup[1, 0].tolist() == [1, 0, 1, 0]
    assert sup[2, 0].tolist() == cues[2, 0].tolist()  # class 2 not cut: its cue channel unchanged
    assert sup.dtype == np.uint8 and sup.shape == cues.shape


def test_network_seeds_add_the_confident_pixels_of_the_cut_classes_to_the_cues():
    # No edges, threshold 1 (no growth): the supervision is the seeds, so it shows them directly.
    cues = np.zeros((3, 2, 4), np.uint8)
    cues[1, 0, 0] = 1
    probs = np.zeros((3, 2, 4), np.float32)
    probs[1] = [[0.2, 0.95, 0.91, 0.9], [0.95, 0.95, 0.1, 0.1]]
    probs[2, 1, 2:] = 0.95  # class 2 is confident too, but not cut
    probs[0] = 1 - probs[1] - probs[2]
    valid = np.ones((2, 4), bool)
    valid[1, 1] = False  # padding: never a seed
    published = grow_supervision(cues, probs, [0, 1], NO_EDGES, threshold=1.0, valid=valid)
    assert np.array_equal(published, cues)
    sup = grow_supervision(cues, probs, [0, 1], NO_EDGES, threshold=1.0, valid=valid, network_seeds=0.9)
    assert sup[1].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]  # strict: 0.9 is no seed
    assert not sup[2].any() and not sup[0].any()
    # A network seed holds against the graph: node 1 (P_1 0.95) is tied to node 0, seeded with class 0, by two pairs
    # (capacity 2 each way). Unseeded, the cut gives it to class 0 (1.30 < 2.02); seeded, it stays class 1.
    edges = (np.array([0, 1]), np.array([1, 0]))
    chain_cues = np.zeros((2, 1, 2), np.uint8)
    chain_cues[0, 0, 0] = 1
    chain_probs = np.zeros((2, 1, 2), np.float32)
    chain_probs[1, 0] = [0.1, 0.95]
    chain_probs[0] = 1 - chain_probs[1]
    assert grow_supervision(chain_cues, chain_probs, [1], edges)[1, 0].tolist() == [0, 0]
    assert grow_supervision(chain_cues, chain_probs, [1], edges, network_seeds=0.9)[1, 0].tolist() == [0, 1]


def test_the_threshold_is_strict_at_exactly_float32_0_7():
    # float32(0.7) > 0.7 is False in float32 arithmetic, >= would be True: the node must keep its (empty) cue
    cues = np.zeros((2, 1, 2), np.uint8)
    probs = np.zeros((2, 1, 2), np.float32)
    probs[1, 0] = [np.float32(0.7), np.nextafter(np.float32(0.7), np.float32(1))]
    probs[0] = 1 - probs[1]
    assert grow_supervision(cues, probs, [1], NO_EDGES, threshold=0.7)[1, 0].tolist() == [0, 1]


@pytest.mark.parametrize(("seed_capacity", "kept"), [(10.0, 1), (7.0, 1), (5.0, 0)])
def test_seed_capacity_decides_whether_a_seed_can_be_overruled(seed_capacity: float, kept: int):
    # Node 0 is seeded with class 1 and tied by one mutual pair (capacity 2) to each of 3 nodes seeded with class 2:
    # keeping its seed cuts 6; overruling it costs its seed capacity; flipping the three costs 3 seed capacities.
    cues = np.zeros((3, 1, 4), np.uint8)
    cues[1, 0, 0] = 1
    cues[2, 0, 1:] = 1
    probs = np.full((3, 1, 4), 0.05, np.float32)
    probs[1, 0, 0] = 0.9
    edges = (np.array([0, 1, 0, 2, 0, 3]), np.array([1, 0, 2, 0, 3, 0]))
    supervision = grow_supervision(cues, probs, [1], edges, seed_capacity=seed_capacity)
    assert supervision[1, 0, 0] == kept


def test_neighbours_outweigh_a_confident_unary():
    # Chain 0 - 1 - 2 - 3. Node 1: P_1 = 0.8 (unary cost "is 1" 0.097, "not 1" 0.699), but its mutual pair with node 0
    # (seeded with class 2) carries 2 against the single pair to node 2 (seeded with class 1): it ends "not 1".
    cues = np.zeros((3, 1, 4), np.uint8)
    cues[2, 0, 0] = 1
    cues[1, 0, 2] = 1
    probs = np.full((3, 1, 4), 0.1, np.float32)
    probs[1, 0, 1] = 0.8
    edges = (np.array([0, 1, 1, 2]), np.array([1, 0, 2, 3]))
    sup = grow_supervision(cues, probs, [1], edges)
    assert sup[1, 0, 1] == 0
    edges_single = (np.array([0, 1, 2]), np.array([1, 2, 3]))  # now 1 vs 1: the unary decides
    assert grow_supervision(cues, probs, [1], edges_single)[1, 0, 1] == 1


def test_overlapping_seeds_use_highest_class_for_terminals_only():
    cues = np.zeros((3, 1, 2), np.uint8)
    cues[1, 0, 0] = cues[2, 0, 0] = 1  # claimed by classes 1 and 2
    probs = np.zeros((3, 1, 2), np.float32)
    probs[:, 0, 0] = [0.05, 0.9, 0.05]
    probs[:, 0, 1] = [0.9, 0.05, 0.05]
    sup = grow_supervision(cues, probs, [0, 1, 2], NO_EDGES)
    assert sup[1, 0, 0] == 0  # counted as seeded by class 2 -> "not 1", and P_1 > 0.7 keeps the cut
    assert sup[2, 0, 0] == 1  # P_2 <= 0.7 keeps the original cue
    assert sup[0, 0].tolist() == [0, 1]


def test_class_without_seed_and_exact_zero_one_probabilities():
    cues = np.zeros((2, 2, 2), np.uint8)
    probs = np.zeros((2, 2, 2), np.float32)
    probs[1] = [[1.0, 0.0], [1.0, 0.0]]
    probs[0] = 1 - probs[1]
    edges = (np.array([0, 1]), np.array([2, 3]))
    with np.errstate(all="raise"):
        sup = grow_supervision(cues, probs, [0, 1], edges)
    assert sup[1].tolist() == [[1, 0], [1, 0]]
    assert sup[0].tolist() == [[0, 1], [0, 1]]


def test_bad_inputs_raise():
    cues = np.zeros((2, 2, 2), np.uint8)
    with pytest.raises(ValueError, match="classes"):
        grow_supervision(cues, cues.astype(np.float32), [2], NO_EDGES)
    with pytest.raises(ValueError, match="edges"):
        grow_supervision(cues, cues.astype(np.float32), [0], (np.array([0]), np.array([4])))
    with pytest.raises(ValueError, match="cues and probs"):
        grow_supervision(cues, np.zeros((3, 2, 2), np.float32), [0], NO_EDGES)


@pytest.mark.parametrize(("seed", "threshold"), [(0, 0.7), (1, 0.7), (2, 0.7), (3, 0.0), (4, 0.95), (5, 1.0)])
def test_vectorised_cut_equals_loop_reference(seed, threshold):
    rng = np.random.default_rng(seed)
    num_classes, h, w = 6, 9, 10
    features = torch.from_numpy(rng.normal(size=(16, h, w)).astype(np.float32))
    edges = knn_edges(features, k=10)
    scores = rng.normal(scale=3.0, size=(num_classes, h, w))
    probs = np.exp(scores) / np.exp(scores).sum(0)
    probs = ((probs + 1e-7) / (1 + num_classes * 1e-7)).astype(np.float32)
    classes = np.concatenate([[0], rng.choice(np.arange(1, num_classes), 2, replace=False)])
    cues = np.zeros((num_classes, h, w), np.uint8)
    cues[classes] = rng.random((len(classes), h, w)) < 0.15
    got = grow_supervision(cues, probs, classes, edges, threshold)
    assert np.array_equal(got, reference_cut(cues, probs, classes, edges, threshold))
    assert np.array_equal(got, grow_supervision(cues, probs, classes, edges, threshold))
    if threshold == 1.0:  # no probability exceeds 1: the cues alone, whatever the cut (which is skipped)
        assert np.array_equal(got, cues)


@pytest.fixture(scope="module")
def spawned_pool():
    """A SupervisionPool with 2 worker processes, shared by this module's tests (starting workers takes seconds)."""
    with SupervisionPool(workers=2) as pool:
        yield pool


def test_pool_workers_match_in_process_and_direct_calls(spawned_pool):
    rng = np.random.default_rng(3)
    batch, num_classes, h, w = 3, 5, 9, 10
    features = torch.from_numpy(rng.normal(size=(batch, 16, h, w)).astype(np.float32))
    scores = torch.from_numpy(rng.normal(scale=3.0, size=(batch, num_classes, h, w)))
    probs = smoothed_softmax(scores).float()
    cues = (rng.random((batch, num_classes, h, w)) < 0.1).astype(np.uint8)
    classes = [np.array([0, 1 + b]) for b in range(batch)]
    images = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    with SupervisionPool(workers=0) as pool:
        serial = pool.submit(features, probs, cues, classes, images).result()
    future = spawned_pool.submit(features, probs, cues, classes, images)
    parallel = future.result(timeout=120)
    assert future.done()
    for got, ref in zip(parallel, serial, strict=True):
        assert np.array_equal(got, ref)
    supervision, crf_probs = serial
    assert supervision.shape == (batch, num_classes, h, w) and supervision.dtype == np.uint8
    assert crf_probs.shape == (batch, num_classes, h, w) and crf_probs.dtype == np.float32
    edges = knn_edges(features[1], k=10)
    assert np.array_equal(supervision[1], grow_supervision(cues[1], probs[1].numpy(), classes[1], edges))
    assert np.array_equal(crf_probs[1], floored_target(dense_crf(images[1], probs[1].numpy(), scale=1 / 12)))


def test_constrain_target_is_the_crf_floored_at_1e_4_and_renormalised():
    """As published (train.py:169-170): Q below 1e-4 is raised to it, then each pixel renormalised over classes."""
    q = np.array([[1.0, 0.0, 3e-5], [0.5, 0.5, 0.0]], np.float32).T[:, :, None]  # (C=3, h=2, w=1)
    expected = np.array([[1.0, 1e-4, 1e-4], [0.5, 0.5, 1e-4]]) / np.array([[1.0002], [1.0001]])
    np.testing.assert_allclose(floored_target(q)[:, :, 0].T, expected, rtol=1e-6)
    # Through the pool: a confident network leaves CRF probabilities far below the floor, the target has none.
    rng = np.random.default_rng(5)
    scores = torch.zeros(1, 3, 6, 6)
    scores[:, 0] = 30.0
    probs = smoothed_softmax(scores)
    images = rng.integers(0, 256, (1, 6, 6, 3), dtype=np.uint8)
    with SupervisionPool(workers=0) as pool:
        _, target = pool.submit(torch.randn(1, 4, 6, 6), probs, np.zeros((1, 3, 6, 6), np.uint8), [np.array([0, 1])],
                                images).result()
    raw = dense_crf(images[0], probs[0].numpy(), scale=1 / 12)
    assert raw.min() < 1e-5 and target.min() >= 1e-4 / 1.0003
    np.testing.assert_allclose(target.sum(axis=1), 1.0, rtol=1e-6)


def test_pool_grows_nothing_when_told_not_to():
    rng = np.random.default_rng(4)
    batch, num_classes, h, w = 2, 3, 6, 6
    features = torch.from_numpy(rng.normal(size=(batch, 8, h, w)).astype(np.float32))
    probs = smoothed_softmax(torch.from_numpy(rng.normal(scale=3.0, size=(batch, num_classes, h, w)))).float()
    cues = (rng.random((batch, num_classes, h, w)) < 0.1).astype(np.uint8)
    classes = [np.array([0, 1, 2])] * batch
    images = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    with SupervisionPool(workers=0, threshold=0.0, network_seeds=0.5) as pool:
        grown, _ = pool.submit(features, probs, cues, classes, images).result()
        held, _ = pool.submit(features, probs, cues, classes, images, grow=False).result()
    assert np.array_equal(held, cues) and not np.array_equal(grown, cues)


def test_pool_rejects_mismatched_batch():
    with SupervisionPool(workers=0) as pool, pytest.raises(ValueError, match="classes"):
        pool.submit(
            torch.zeros(1, 2, 3, 3), np.full((1, 2, 3, 3), 0.5), np.zeros((1, 2, 3, 3)), [], np.zeros((1, 3, 3, 3))
        )


def test_knn_exact_when_reduced_precision_float32_matmul_is_enabled():
    rows, cols = torch.meshgrid(torch.arange(5.0), torch.arange(6.0), indexing="ij")
    features = torch.stack([rows, cols, rows * 0.5]) + 3000.0
    saved = torch.backends.mkldnn.matmul.fp32_precision
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        src, dst = knn_edges(features, k=6)
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = saved
    expected = reference_knn(features.reshape(3, -1).t().double().numpy(), 6)
    assert set(zip(src.tolist(), dst.tolist(), strict=True)) == expected


def test_knn_batch_equals_per_image_knn_and_reference():
    generator = torch.Generator().manual_seed(3)
    random = torch.randn(3, 16, 6, 7, generator=generator)
    rows, cols = torch.meshgrid(torch.arange(6.0), torch.arange(7.0), indexing="ij")
    ties = torch.zeros(16, 6, 7)
    ties[:3] = torch.stack([rows, cols, rows * 0.5]) + 3000.0  # equidistant grid points: many exact ties
    features = torch.cat([random, ties[None]])
    batched = knn_edges_batch(features, k=10)
    assert len(batched) == 4
    for image, (src, dst) in zip(features, batched, strict=True):
        single_src, single_dst = knn_edges(image, k=10)
        assert np.array_equal(src, single_src) and np.array_equal(dst, single_dst)
        expected = reference_knn(image.reshape(16, -1).t().double().numpy(), 10)
        assert set(zip(src.tolist(), dst.tolist(), strict=True)) == expected


def test_knn_batch_in_several_passes_equals_one_pass(monkeypatch):
    features = torch.randn(5, 8, 6, 7, generator=torch.Generator().manual_seed(4))
    whole = knn_edges_batch(features, k=10)
    monkeypatch.setattr(graphcut, "_MAX_SCORES", 2 * 42 * 42)  # two images per pass, then one
    parts = knn_edges_batch(features, k=10)
    assert len(parts) == 5
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(whole, parts, strict=True))


def test_knn_batch_rejects_a_single_image():
    with pytest.raises(ValueError, match=r"\(B, D, h, w\)"):
        knn_edges_batch(torch.zeros(3, 4, 4), k=2)


def half_constant(dim: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """(dim, h, w) random features whose bottom rows (from h // 2) are all zero, as zero padding of a crop leaves."""
    features = torch.randn(dim, h, w, generator=torch.Generator().manual_seed(seed))
    features[:, h // 2 :] = 0.0
    return features


def tie_heavy(dim: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """(dim, h, w) features on three integer levels: many duplicate vectors and many equidistant distinct ones."""
    return torch.randint(0, 3, (dim, h, w), generator=torch.Generator().manual_seed(seed)).float()


@pytest.mark.parametrize("make", [half_constant, tie_heavy, lambda dim, h, w: torch.full((dim, h, w), 3.0)])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_knn_ties_are_capped_lowest_index_first(make, k):
    # Published rule, then each node's first max_neighbours neighbours in (distance, node index) order.
    features = make(2, 9, 10)
    points = features.reshape(2, -1).t().double().numpy()
    for cap in (k - 1, 2 * k, 3 * k + 1):
        edges = knn_edges(features, k=k, max_neighbours=cap)
        assert pair_set(edges) == reference_knn(points, k, cap)
        assert np.bincount(edges[0], minlength=90).max(initial=0) <= cap
    assert pair_set(knn_edges(features, k=k)) == reference_knn(points, k, 2 * k)  # default: MAX_NEIGHBOURS_PER_K = 2


def test_half_constant_map_edges_are_bounded():
    # 41x41, half of it zero (861 identical nodes), 1280-d, k = 10: every node's 10th distance is a tie with all of
    # the zero nodes. Uncapped that was 1,446,480 pairs and ~17 s on one core; capped: 20 pairs per node (the bound
    # is what keeps it fast: no timing asserted here, on a machine whose load a test cannot know).
    features = half_constant(1280, 41, 41)
    src, dst = knn_edges(features, k=10)
    n, first_zero = 41 * 41, 20 * 41
    assert len(src) <= 20 * n  # the default cap, MAX_NEIGHBOURS_PER_K * k
    # Ties taken lowest index first: the first 20 zero nodes, the node itself left out.
    assert dst[src == 5].tolist() == list(range(first_zero, first_zero + 20))
    assert dst[src == first_zero].tolist() == list(range(first_zero + 1, first_zero + 21))
    assert dst[src == n - 1].tolist() == list(range(first_zero, first_zero + 20))


def test_knn_ties_are_broken_the_same_way_twice_and_in_any_batch(monkeypatch):
    images = torch.stack([half_constant(16, 9, 10), tie_heavy(16, 9, 10), torch.randn(16, 9, 10),
                          torch.zeros(16, 9, 10)])
    alone = [knn_edges(image, k=10) for image in images]
    for image, edges in zip(images, alone, strict=True):  # capped at 2k, lowest indices first
        assert pair_set(edges) == reference_knn(image.reshape(16, -1).t().double().numpy(), 10, 20)
    runs = [knn_edges_batch(images, k=10), knn_edges_batch(images, k=10), knn_edges_batch(images.flip(0), k=10)[::-1],
            [knn_edges_batch(images[[b, 2]], k=10)[0] for b in range(4)]]
    monkeypatch.setattr(graphcut, "_MAX_SCORES", 3 * 90 * 90)  # three images per pass, then one
    runs.append(knn_edges_batch(images, k=10))
    for run in runs:
        assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(run, alone, strict=True))


def crop_masks(h: int, w: int) -> list[np.ndarray]:
    """(h, w) bool node masks: a crop's valid corner, a ragged random mask, everything, 3 nodes (< k), none."""
    corner = np.zeros((h, w), bool)
    corner[: h - 3, : w - 4] = True
    ragged = np.random.default_rng(5).random((h, w)) < 0.6
    few = np.zeros((h, w), bool)
    few[0, :3] = True
    return [corner, ragged, np.ones((h, w), bool), few, np.zeros((h, w), bool)]


def test_knn_valid_nodes_only_equals_knn_of_the_valid_nodes_alone():
    # Dyadic smooth features with ties and a duplicated block inside the valid region; zeros (padding) outside.
    h, w, dim = 9, 10, 4
    smooth = torch.randn(dim, h, w, generator=torch.Generator().manual_seed(6)).cumsum(1).cumsum(2)
    smooth = torch.round(smooth * 2) / 2
    smooth[:, 2:5, 1:4] = smooth[:, 0, 0, None, None]
    masks = crop_masks(h, w)
    batch = knn_edges_batch(torch.stack([smooth * torch.from_numpy(m) for m in masks]), k=10,
                            valid=torch.from_numpy(np.stack(masks)))
    for mask, batched in zip(masks, batch, strict=True):
        features = smooth * torch.from_numpy(mask)
        src, dst = knn_edges(features, k=10, valid=mask)
        assert np.array_equal(src, batched[0]) and np.array_equal(dst, batched[1])
        assert mask.reshape(-1)[src].all() and mask.reshape(-1)[dst].all()
        nodes = np.flatnonzero(mask)
        if len(nodes):
            alone = knn_edges(features.reshape(dim, 1, -1)[:, :, nodes], k=min(10, len(nodes)))
            assert np.array_equal(src, nodes[alone[0]]) and np.array_equal(dst, nodes[alone[1]])
            reference = reference_knn(features.reshape(dim, -1).t()[nodes].double().numpy(), min(10, len(nodes)), 20)
            assert pair_set((src, dst)) == {(int(nodes[i]), int(nodes[j])) for i, j in reference}
        else:
            assert len(src) == 0
    corner = knn_edges(smooth, k=10, valid=masks[0])  # a crop: the kNN of the sub-array, in grid numbering
    sub = knn_edges(smooth[:, : h - 3, : w - 4].contiguous(), k=10)
    assert np.array_equal(corner[0], (sub[0] // (w - 4)) * w + sub[0] % (w - 4))
    assert np.array_equal(corner[1], (sub[1] // (w - 4)) * w + sub[1] % (w - 4))
    plain, everything = knn_edges(smooth, k=10), knn_edges(smooth, k=10, valid=torch.ones(h, w, dtype=torch.bool))
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(plain, everything, strict=True))


def test_knn_rejects_bad_masks_and_caps():
    with pytest.raises(ValueError, match="valid must be"):
        knn_edges(torch.zeros(3, 4, 4), k=2, valid=np.ones((4, 5), bool))
    with pytest.raises(ValueError, match="valid must be"):
        knn_edges_batch(torch.zeros(2, 3, 4, 4), k=2, valid=np.ones((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="max_neighbours"):
        knn_edges(torch.zeros(3, 4, 4), k=5, max_neighbours=3)


def test_grow_supervision_leaves_invalid_nodes_out_of_the_cut():
    rng = np.random.default_rng(7)
    num_classes, h, w = 3, 6, 7
    cues = np.zeros((num_classes, h, w), np.uint8)
    cues[1, :2] = 1  # class 1 seeded at the top: growth reaches confident unseeded nodes through the graph
    cues[0, -1, :2] = 1
    probs = np.full((num_classes, h, w), 0.1, np.float32)
    probs[1] = 0.6 + 0.3 * rng.random((h, w), dtype=np.float32)
    probs[0] = 1 - probs[1] - probs[2]
    valid = np.zeros((h, w), bool)
    valid[:4, :5] = True
    edges = knn_edges(torch.from_numpy(rng.normal(size=(8, h, w)).astype(np.float32)), k=10)  # unmasked: touches all
    classes = [0, 1]
    sup = grow_supervision(cues, probs, classes, edges, valid=valid)
    unmasked = grow_supervision(cues, probs, classes, edges)
    assert not np.array_equal(unmasked[:, ~valid], cues[:, ~valid])  # without the mask the padding would change
    assert np.array_equal(sup[:, ~valid], cues[:, ~valid])
    inside = valid.reshape(-1)[edges[0]] & valid.reshape(-1)[edges[1]]
    only_valid = grow_supervision(cues, probs, classes, (edges[0][inside], edges[1][inside]))
    assert np.array_equal(sup[:, valid], only_valid[:, valid])
    assert np.array_equal(grow_supervision(cues, probs, classes, edges, valid=np.ones((h, w), bool)), unmasked)
    with pytest.raises(ValueError, match="valid must be"):
        grow_supervision(cues, probs, classes, edges, valid=valid[:, :3])


def test_an_edge_into_a_padded_node_is_dropped_when_grow_supervision_is_called_directly():
    # 1 x 3 grid: node 0 seeds class 1, node 1 is confident (P = 0.75 > 0.7) and unseeded, node 2 is padding (valid
    # False, P = 0.01). Alone, node 1 joins class 1 (cutting its source edge costs 0.12 < 0.60); tied to node 2 by a
    # mutual pair (capacity 2) it would follow the padding out of class 1.
    cues = np.zeros((2, 1, 3), np.uint8)
    cues[1, 0, 0] = 1
    probs = np.stack([1 - np.array([[0.9, 0.75, 0.01]]), np.array([[0.9, 0.75, 0.01]])]).astype(np.float32)
    valid = np.array([[True, True, False]])
    into_padding = (np.array([1, 2]), np.array([2, 1]))
    assert grow_supervision(cues, probs, [0, 1], into_padding)[1, 0, 1] == 0  # the padding decides, unmasked
    sup = grow_supervision(cues, probs, [0, 1], into_padding, valid=valid)
    assert sup[1].tolist() == [[1, 1, 0]]
    assert np.array_equal(sup, grow_supervision(cues, probs, [0, 1], NO_EDGES, valid=valid))


def test_pool_with_node_masks_matches_direct_calls_for_any_worker_count(spawned_pool):
    rng = np.random.default_rng(8)
    batch, num_classes, h, w = 3, 4, 9, 10
    valid = np.stack(crop_masks(h, w)[:batch])
    features = torch.from_numpy(rng.normal(size=(batch, 16, h, w)).astype(np.float32) * valid[:, None])
    probs = smoothed_softmax(torch.from_numpy(rng.normal(scale=3.0, size=(batch, num_classes, h, w)))).float()
    cues = (rng.random((batch, num_classes, h, w)) < 0.1).astype(np.uint8)
    classes = [np.array([0, 1 + b]) for b in range(batch)]
    images = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    with SupervisionPool(workers=0) as pool:
        serial = pool.submit(features, probs, cues, classes, images, valid=valid).result()
        grown = pool.grow(features, probs, cues, classes, valid=torch.from_numpy(valid)).result()
        plain = pool.submit(features, probs, cues, classes, images).result()
        everything = pool.submit(features, probs, cues, classes, images, valid=np.ones_like(valid)).result()
        with pytest.raises(ValueError, match="valid must be"):
            pool.grow(features, probs, cues, classes, valid=valid[:, :, :3])
    parallel = spawned_pool.submit(features, probs, cues, classes, images, valid=torch.from_numpy(valid)).result(120)
    assert all(np.array_equal(a, b) for a, b in zip(parallel, serial, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(everything, plain, strict=True))
    assert np.array_equal(grown, serial[0])
    for b in range(batch):
        edges = knn_edges(features[b], k=10, valid=valid[b])
        direct = grow_supervision(cues[b], probs[b].numpy(), classes[b], edges, valid=valid[b])
        assert np.array_equal(serial[0][b], direct)
        assert np.array_equal(serial[0][b][:, ~valid[b]], cues[b][:, ~valid[b]])

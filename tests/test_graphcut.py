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
from dgcn.supervision import SupervisionPool

NO_EDGES = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def reference_knn(points: np.ndarray, k: int) -> set[tuple[int, int]]:
    """Brute-force published rule on float64 direct distances; points (n, D)."""
    dist = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    kth = np.sort(dist, axis=1)[:, k - 1]
    rows, cols = np.nonzero(dist <= kth[:, None])
    return {(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if i != j}


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
    # Smooth features (grid neighbours nearest, as from a trained network) on a dyadic grid (many exact ties), and
    # constant features (every pair tied): grid sizes with and without padding to whole column blocks.
    generator = torch.Generator().manual_seed(1)
    smooth = torch.randn(4, *shape, generator=generator).cumsum(1).cumsum(2)
    smooth = torch.round(smooth * 4) / 4
    constant = torch.full((4, *shape), 7.0)
    for features in (smooth, constant):
        src, dst = knn_edges(features, k=10)
        expected = reference_knn(features.reshape(4, -1).t().double().numpy(), 10)
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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_cut_equals_loop_reference(seed):
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
    got = grow_supervision(cues, probs, classes, edges)
    assert np.array_equal(got, reference_cut(cues, probs, classes, edges))
    assert np.array_equal(got, grow_supervision(cues, probs, classes, edges))


def test_pool_workers_match_in_process_and_direct_calls():
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
    with SupervisionPool(workers=2) as pool:
        future = pool.submit(features, probs, cues, classes, images)
        parallel = future.result(timeout=120)
        assert future.done()
    for got, ref in zip(parallel, serial, strict=True):
        assert np.array_equal(got, ref)
    supervision, crf_probs = serial
    assert supervision.shape == (batch, num_classes, h, w) and supervision.dtype == np.uint8
    assert crf_probs.shape == (batch, num_classes, h, w) and crf_probs.dtype == np.float32
    edges = knn_edges(features[1], k=10)
    assert np.array_equal(supervision[1], grow_supervision(cues[1], probs[1].numpy(), classes[1], edges))
    assert np.array_equal(crf_probs[1], dense_crf(images[1], probs[1].numpy(), scale=1 / 12))


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

"""The published DGCN supervision, ported for a test and a benchmark (not part of the package).

A re-implementation, in this project's words, of `cacul_knn_matrix_` and `generate_supervision` of the published
DGCN code (github.com/Unrealluver/dgcn, tool/dgcnutils.py; the same functions are hustvl/DGCN train.py:188-251),
keeping their construction and their costs:
- kNN: per image, the full n x n squared distances by the norm expansion |a|^2 + |b|^2 - 2ab in the features' dtype
  (absolute value), a top-k (k = 10, the node itself among them) per row, and a dense n x n matrix that marks every
  node at most the row's k-th distance away, less the identity. Exact ties at the k-th distance are all kept; rounding
  decides near-ties (dgcn.graphcut.knn_edges re-measures them exactly and caps ties at 2k neighbours).
- Cut: per image and per class to cut (the published caller's choice: hustvl/DGCN train.py:213 cuts the image labels,
  the extended code the classes with a cue), a fresh PyMaxflow graph of all n nodes, built node by node in three
  passes: the class's own seeds (terminal weights 0 / 10), the unseeded nodes (-log10 P_c / -log10(1 - P_c), no
  floor), the other classes' seeds (10 / 0). Each node's neighbours are found by scanning its dense kNN row, and each
  one is added by its own add_edge with capacity 1 both ways. The sink side of the cut replaces the cue where
  P_c > 0.7. A node seeded with several classes takes the highest one.
tests/test_published_port.py checks that both give dgcn.graphcut's result on inputs without near-ties.
"""

from __future__ import annotations

from collections.abc import Sequence

import maxflow
import numpy as np
import torch


def published_knn_matrix(features: torch.Tensor, k: int = 10) -> np.ndarray:
    """(B, D, h, w) features -> (B, n, n) float32 matrix, n = h * w: 1 where column j is a kNN neighbour of row i,
    0 elsewhere, and -1 on a diagonal entry that rounding left out of its own row's k nearest."""
    batch, dim, h, w = features.shape
    n = h * w
    identity = torch.eye(n, device=features.device)
    matrix = torch.zeros(batch, n, n, device=features.device)
    for b in range(batch):
        points = features[b].reshape(dim, n).t()
        norms = (points**2).sum(dim=1)
        distances = (norms.view(-1, 1) + norms.view(1, -1) - 2.0 * points @ points.t()).abs()
        kth = torch.topk(distances, k, dim=1, largest=False).values[:, -1:]
        matrix[b] = (distances <= kth).float() - identity
    return matrix.cpu().numpy()


def published_supervision(
    cues: np.ndarray, probs: np.ndarray, knn: np.ndarray, threshold: float = 0.7, seed_capacity: float = 10.0,
    classes: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """(B, C, h, w) {0,1} cues, (B, C, h, w) float32 probabilities and the (B, n, n) published_knn_matrix -> the
    (B, C, h, w) float32 supervision: the cues, with the channel of each class to cut replaced by its cut where P_c >
    threshold. classes: per image the classes to cut; None: those with a cue."""
    batch, num_classes, h, w = probs.shape
    n = h * w
    supervision = cues.astype(np.float32)
    for b in range(batch):
        seeded_with = np.full(n, num_classes, dtype=np.float64)  # num_classes: no seed
        channel, row, col = np.nonzero(cues[b] == 1)
        seeded_with[row * w + col] = channel  # fancy assignment: the last (highest) class of a node wins
        cut = np.nonzero(cues[b].sum(axis=(1, 2)) > 0)[0] if classes is None else classes[b]
        for c in cut:
            p = probs[b, c].reshape(n)
            graph = maxflow.Graph[float]()
            nodes = graph.add_nodes(n)
            passes = (
                (seeded_with == c, lambda i: (0, seed_capacity)),
                (seeded_with == num_classes, lambda i, p=p: (-np.log10(p[i]), -np.log10(1 - p[i]))),
                ((seeded_with != num_classes) & (seeded_with != c), lambda i: (seed_capacity, 0)),
            )
            for members, terminals in passes:
                for i in np.nonzero(members)[0]:
                    graph.add_tedge(nodes[i], *terminals(i))
                    for j in np.nonzero(knn[b, i] == 1)[0]:
                        graph.add_edge(nodes[i], nodes[j], 1, 1)
            graph.maxflow()
            sink_side = graph.get_grid_segments(np.arange(n)).astype(int).reshape(h, w)
            supervision[b, c] = np.where(probs[b, c] > threshold, sink_side, supervision[b, c])
    return supervision

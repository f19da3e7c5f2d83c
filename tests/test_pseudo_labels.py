"""iter_pseudo_labels against a straightforward per-image reference (the export stage's former code), with the graph
cuts in-process and in two worker processes; absent classes never appear."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dgcn.data.loading import load_stack, normalize
from dgcn.graphcut import grow_supervision, knn_edges_batch
from dgcn.inference import predict, restrict_to_classes
from dgcn.models.registry import build_segmenter
from dgcn.pseudo_labels import iter_pseudo_labels
from dgcn.supervision import SupervisionPool

NUM_CLASSES = 4
INPUT_SIZE = 32
GRID = INPUT_SIZE // 4  # the small network's output stride
SCALES = (0.75, 1.0, 1.25)
SIZES = [(40, 52), (37, 37), (30, 64), (48, 45), (33, 41), (52, 29), (44, 44)]
GRAPH_CUT = {"k": 6, "threshold": 0.6, "seed_capacity": 5.0}


def _model(favoured: int | None = None) -> torch.nn.Module:
    """A tiny random segmenter; with `favoured`, that class's score is raised everywhere, so it wins every pixel unless
    the pseudo-labels really exclude it."""
    torch.manual_seed(0)
    model = build_segmenter("small", NUM_CLASSES, width=8).eval()
    if favoured is not None:
        with torch.no_grad():
            scores = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            scores.bias[favoured] += 20.0
    return model


def _data(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Images of different sizes, their (N, C) image labels (one image with background only) and (N, C, G, G) cues
    on the present classes."""
    rng = np.random.default_rng(seed)
    images = {f"img{i}": rng.integers(0, 256, (*size, 3), dtype=np.uint8) for i, size in enumerate(SIZES)}
    labels = (rng.random((len(SIZES), NUM_CLASSES)) < 0.5).astype(np.uint8)
    labels[:, 0] = 1
    labels[1, 1:] = 0
    labels[2, 1:] = [1, 0, 1]
    cues = (rng.random((len(SIZES), NUM_CLASSES, GRID, GRID)) < 0.2).astype(np.uint8) * labels[:, :, None, None]
    return images, labels, cues


def _reference(model: torch.nn.Module, images: dict[str, np.ndarray], labels: np.ndarray, cues: np.ndarray,
               batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The export stage's former per-batch code: one serial grow_supervision per image."""
    names = list(images)
    results = []
    for begin in range(0, len(names), batch_size):
        indices = range(begin, min(begin + batch_size, len(names)))
        x = normalize(torch.from_numpy(load_stack(images.__getitem__, names[begin:indices.stop], INPUT_SIZE)))
        prediction = predict(model, x, scales=SCALES, flip=True, size=(GRID, GRID))
        present = torch.from_numpy(labels[indices.start:indices.stop])
        probs = restrict_to_classes(prediction.probs, present)
        edges = knn_edges_batch(prediction.features, k=GRAPH_CUT["k"])
        for row, i in enumerate(indices):
            classes = np.flatnonzero(present[row].numpy())
            grown = grow_supervision(cues[i], probs[row].numpy(), classes, edges[row],
                                     threshold=GRAPH_CUT["threshold"], seed_capacity=GRAPH_CUT["seed_capacity"])
            both = torch.stack([torch.from_numpy(grown).float() + probs[row], probs[row]])
            up = F.interpolate(both, size=SIZES[i], mode="bilinear", align_corners=False)
            up[:, present[row] == 0] = -1.0
            out = up.argmax(dim=1).numpy().astype(np.uint8)
            results.append((out[0], out[1]))
    return results


def _pseudo_labels(model: torch.nn.Module, images: dict[str, np.ndarray], labels: np.ndarray, cues: np.ndarray,
                   workers: int, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    with SupervisionPool(workers=workers, **GRAPH_CUT) as pool:
        return list(iter_pseudo_labels(model, images.__getitem__, list(images), SIZES, list(cues), labels, pool,
                                       input_size=INPUT_SIZE, scales=SCALES, flip=True, batch_size=batch_size))


@pytest.mark.parametrize("workers", [0, 2])
def test_pseudo_labels_equal_the_per_image_reference_byte_for_byte(workers: int) -> None:
    model = _model()
    images, labels, cues = _data()
    reference = _reference(model, images, labels, cues, batch_size=3)
    got = _pseudo_labels(model, images, labels, cues, workers, batch_size=3)  # batches of 3, 3 and 1
    assert len(got) == len(SIZES)
    for (pseudo, network), (ref_pseudo, ref_network), size in zip(got, reference, SIZES, strict=True):
        assert pseudo.dtype == network.dtype == np.uint8 and pseudo.shape == network.shape == size
        assert pseudo.tobytes() == ref_pseudo.tobytes() and network.tobytes() == ref_network.tobytes()
    # The graph cut really changed some pixels, so the comparison covers the grown masks too.
    assert any(not np.array_equal(pseudo, network) for pseudo, network in got)


def test_absent_classes_never_appear_even_when_the_network_prefers_them() -> None:
    favoured = 3
    model = _model(favoured)
    images, labels, cues = _data(seed=1)
    assert 0 < labels[:, favoured].sum() < len(SIZES)
    got = _pseudo_labels(model, images, labels, cues, workers=0, batch_size=4)
    for (pseudo, network), present in zip(got, labels, strict=True):
        allowed = set(np.flatnonzero(present).tolist())
        assert set(np.unique(pseudo).tolist()) <= allowed and set(np.unique(network).tolist()) <= allowed
        if present[favoured]:
            assert (network == favoured).any()  # the bias does dominate where the class is allowed
    assert set(np.unique(got[1][0]).tolist()) == set(np.unique(got[1][1]).tolist()) == {0}  # background only


def test_mismatched_inputs_raise() -> None:
    images, labels, cues = _data()
    with SupervisionPool(workers=0) as pool, pytest.raises(ValueError, match="same images"):
        next(iter_pseudo_labels(_model(), images.__getitem__, list(images), SIZES[:-1], list(cues), labels, pool,
                                input_size=INPUT_SIZE, scales=SCALES, flip=True, batch_size=2))

"""iter_pseudo_labels against a straightforward per-image reference at each image's own aspect ratio, with the graph
cuts in-process and in two worker processes; absent classes never appear; the evidence gives back the labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dgcn.data.loading import normalize, resize_image
from dgcn.evidence import evidence_labels
from dgcn.graphcut import grow_supervision, knn_edges
from dgcn.inference import predict, restrict_to_classes
from dgcn.models.registry import build_segmenter
from dgcn.pseudo_labels import cues_on_grid, iter_pseudo_labels, network_grid
from dgcn.supervision import SupervisionPool

NUM_CLASSES = 4
INPUT_SIZE = 32
GRID = INPUT_SIZE // 4  # the small network's output stride: the cues' square grid
SCALES = (0.75, 1.0, 1.25)
# At a longer side of 32: (25, 32), (32, 32), (15, 32), (32, 30), (26, 32), (32, 18), (32, 32): in batches of 3, no two
# images of a batch share a shape, so every forward pass holds one image, as in the per-image reference.
SIZES = [(40, 52), (37, 37), (30, 64), (48, 45), (33, 41), (52, 29), (44, 44)]
RESIZED = [(25, 32), (32, 32), (15, 32), (32, 30), (26, 32), (32, 18), (32, 32)]
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


def _reference(model: torch.nn.Module, images: dict[str, np.ndarray], labels: np.ndarray,
               cues: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image: resized to its longer side INPUT_SIZE, multi-scale probabilities on the scale-1 grid, cues zoomed to
    that grid and grown by one serial grow_supervision, probabilities rounded to float16 as stored, upsampled."""
    results = []
    for i, (image, resized) in enumerate(zip(images.values(), RESIZED, strict=True)):
        x = normalize(torch.from_numpy(np.array(resize_image(image, resized)[None])))
        prediction = predict(model, x, scales=SCALES, flip=True)
        grid = tuple(prediction.probs.shape[-2:])
        assert grid == tuple(-(-side // 4) for side in resized) == tuple(prediction.features.shape[-2:])
        present = torch.from_numpy(labels[i])
        probs = restrict_to_classes(prediction.probs, present[None])[0]
        grown = grow_supervision(cues_on_grid(cues[i], grid), probs.numpy(), np.flatnonzero(labels[i]),
                                 knn_edges(prediction.features[0], k=GRAPH_CUT["k"]),
                                 threshold=GRAPH_CUT["threshold"], seed_capacity=GRAPH_CUT["seed_capacity"])
        stored = probs.half().float()
        both = torch.stack([torch.from_numpy(grown).float() + stored, stored])
        up = F.interpolate(both, size=SIZES[i], mode="bilinear", align_corners=False)
        up[:, present == 0] = -1.0
        out = up.argmax(dim=1).numpy().astype(np.uint8)
        results.append((out[0], out[1]))
    return results


def _exported(model: torch.nn.Module, images: dict[str, np.ndarray], labels: np.ndarray, cues: np.ndarray,
              workers: int, batch_size: int) -> list:
    with SupervisionPool(workers=workers, **GRAPH_CUT) as pool:
        return list(iter_pseudo_labels(model, images.__getitem__, list(images), list(cues), labels, pool,
                                       input_size=INPUT_SIZE, scales=SCALES, flip=True, batch_size=batch_size))


def _pseudo_labels(model: torch.nn.Module, images: dict[str, np.ndarray], labels: np.ndarray, cues: np.ndarray,
                   workers: int, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(item.pseudo_label, item.network_argmax) for item in _exported(model, images, labels, cues, workers,
                                                                              batch_size)]


@pytest.mark.parametrize("workers", [0, 2])
def test_pseudo_labels_equal_the_per_image_reference_byte_for_byte(workers: int) -> None:
    model = _model()
    images, labels, cues = _data()
    reference = _reference(model, images, labels, cues)
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


def test_evidence_is_on_the_native_grid_and_gives_back_the_labels() -> None:
    model = _model()
    images, labels, cues = _data()
    assert network_grid(model, (INPUT_SIZE, INPUT_SIZE)) == (GRID, GRID)
    for item, size, resized, present in zip(_exported(model, images, labels, cues, 0, 3), SIZES, RESIZED, labels,
                                            strict=True):
        evidence = item.evidence
        assert evidence.grid == tuple(-(-side // 4) for side in resized)  # e.g. (30, 64) -> (15, 32) -> (4, 8)
        assert evidence.probs.dtype == np.float16 and evidence.grown.dtype == np.uint8
        assert evidence.present.tolist() == present.astype(bool).tolist()
        assert not evidence.probs[present == 0].any() and not evidence.grown[present == 0].any()
        np.testing.assert_allclose(evidence.probs.astype(np.float32).sum(0), 1.0, atol=2e-3)
        pseudo, network = evidence_labels(evidence, size)
        assert pseudo.tobytes() == item.pseudo_label.tobytes() and network.tobytes() == item.network_argmax.tobytes()


def test_images_of_the_same_shape_share_a_forward_pass() -> None:
    model = _model()
    images, labels, cues = _data()
    batches: list[int] = []
    model.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    _exported(model, images, labels, cues, 0, batch_size=len(SIZES))
    # 6 shapes, images 1 and 6 both (32, 32); each forward holds the images and their mirrors.
    assert sorted(batches) == sorted([2] * 3 * 5 + [4] * 3)


def test_images_sharing_a_forward_pass_keep_their_own_results() -> None:
    # images 1 and 6 share a shape, so one batch of all images puts them in one group: each keeps its own evidence
    model = _model()
    images, labels, cues = _data()
    alone = _exported(model, images, labels, cues, 0, batch_size=1)
    together = _exported(model, images, labels, cues, 0, batch_size=len(SIZES))
    for a, b in zip(alone, together, strict=True):
        assert a.pseudo_label.tobytes() == b.pseudo_label.tobytes()
        assert a.evidence.probs.tobytes() == b.evidence.probs.tobytes()
        assert a.evidence.grown.tobytes() == b.evidence.grown.tobytes()
    assert not np.array_equal(together[1].evidence.grown, together[6].evidence.grown)


def test_cues_on_grid_zooms_by_cell_centres() -> None:
    cues = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    assert np.array_equal(cues_on_grid(cues, (4, 4)), cues)
    assert np.array_equal(cues_on_grid(cues, (2, 4)), cues[:, [1, 3]])
    assert np.array_equal(cues_on_grid(cues, (8, 3)), cues[:, [0, 0, 1, 1, 2, 2, 3, 3]][:, :, [0, 2, 3]])


def test_mismatched_inputs_raise() -> None:
    images, labels, cues = _data()
    with SupervisionPool(workers=0) as pool, pytest.raises(ValueError, match="same images"):
        next(iter_pseudo_labels(_model(), images.__getitem__, list(images), list(cues)[:-1], labels, pool,
                                input_size=INPUT_SIZE, scales=SCALES, flip=True, batch_size=2))

"""The export at the training scale: with `export.input_size: null` (the VOC recipe, as published) each photo runs at
its native size, so a 500x375 VOC photo gets a 63x47 evidence grid from the VOC network; an integer input_size still
resizes the longer side first (the synthetic set's 96). The crf stage takes the larger native grids as they are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_stage_errors import invoke, prepare_voc_mini, set_param, upstream

from dgcn.cues import write_cue_store
from dgcn.data.loading import long_side_shape, normalize
from dgcn.data.voc import VOCDataset
from dgcn.graphcut import grow_supervision, knn_edges
from dgcn.inference import predict, restrict_to_classes
from dgcn.model_files import save_model
from dgcn.models.registry import build_segmenter
from dgcn.pseudo_labels import cues_on_grid, evidence_grid, iter_pseudo_labels, network_grid, scale_one_shape
from dgcn.storage import EvidenceStore, LabelStore
from dgcn.supervision import SupervisionPool
from stages.params import load_params
from stages.schemas.export import ExportParams
from stages.schemas.graph_cut import GraphCutParams
from stages.schemas.train_dgcn import TrainDGCNParams

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
VOC_CLASSES = 21
PHOTO = "2011_000006"  # a vendored VOC train photo of 500x375


def _export(config: str) -> ExportParams:
    return load_params("export", ExportParams, config=REPO / "pipelines" / config, defaults=PARAMS)


def _voc_network(device: str) -> torch.nn.Module:
    """The VOC config's DGCN network (params.yaml's train_dgcn arch and head), randomly initialised on `device`."""
    settings = load_params("train_dgcn", TrainDGCNParams, config=REPO / "pipelines/voc12.yaml", defaults=PARAMS)
    with torch.device(device):
        return build_segmenter(settings.arch, VOC_CLASSES, **settings.arch_options).eval()


def _small(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_segmenter("small", VOC_CLASSES, width=4).eval()


def test_voc_config_gives_a_500x375_photo_a_63x47_evidence_grid(voc_mini: Path) -> None:
    """The grid arithmetic of the real VOC network (DeepLab-v2 ResNet-101, head at rate 12) on the meta device: shapes
    without weights or compute."""
    settings = _export("voc12.yaml")
    assert settings.input_size is None and settings.scales == [0.75, 1.0, 1.25] and settings.flip
    size = VOCDataset(voc_mini, "train_aug").image(PHOTO).shape[:2]
    assert size == (375, 500) and scale_one_shape(size, settings.input_size) == (375, 500)
    model = _voc_network("meta")
    assert evidence_grid(model, [size], settings.input_size) == (47, 63)  # native / 8
    assert evidence_grid(model, [size], 321) == (31, 41)  # the former export.input_size: 0.64x the training scale
    # The store's bound: the tallest and the widest scale-1 input (VOC photos are at most 500 pixels a side).
    assert evidence_grid(model, [(375, 500), (500, 333)], None) == (63, 63)


def test_synthetic_and_coco_configs_keep_their_scale() -> None:
    assert _export("synthetic.yaml").input_size == 96  # the embedded set: unchanged grid, 96 -> 24 at stride 4
    assert evidence_grid(_small(), [(96, 96)], 96) == network_grid(_small(), (96, 96)) == (24, 24)
    assert _export("coco.yaml").input_size is None  # its 481 crops are of the native images too
    assert scale_one_shape((480, 640), 96) == long_side_shape((480, 640), 96) == (72, 96)


def _photos(voc_mini: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The vendored train photos (500x338, 500x375, 500x375), their image labels and cues on an 8x8 grid."""
    dataset = VOCDataset(voc_mini, "train_aug")
    images = {name: dataset.image(name) for name in dataset.names}
    labels = np.zeros((len(images), VOC_CLASSES), np.uint8)
    labels[:, 0] = 1
    for row, name in enumerate(images):
        labels[row, list(dataset.image_labels(name))] = 1
    rng = np.random.default_rng(0)
    cues = (rng.random((len(images), VOC_CLASSES, 8, 8)) < 0.3).astype(np.uint8) * labels[:, :, None, None]
    return images, labels, cues


def test_native_export_runs_each_photo_at_its_own_size(voc_mini: Path) -> None:
    """The evidence equals the multi-scale prediction of the native photo, not resized; an integer input_size resizes
    the photo first. A stride-4 small net stands for the VOC network here (its grid is native / 4)."""
    settings = _export("voc12.yaml")
    model = _small()
    images, labels, cues = _photos(voc_mini)
    exported = list(iter_pseudo_labels(model, images.__getitem__, list(images), list(cues), labels, None,
                                       input_size=settings.input_size, scales=settings.scales, flip=settings.flip,
                                       batch_size=2))
    assert [item.evidence.grid for item in exported] == [(85, 125), (94, 125), (94, 125)]
    for item, image, present in zip(exported, images.values(), labels, strict=True):
        assert item.pseudo_label.shape == image.shape[:2]
        assert item.evidence.grid == network_grid(model, image.shape[:2])
        probs = predict(model, normalize(torch.from_numpy(image[None])), scales=settings.scales, flip=settings.flip)
        expected = restrict_to_classes(probs.probs, torch.from_numpy(present)[None])[0].numpy().astype(np.float16)
        assert item.evidence.probs.tobytes() == expected.tobytes()
    resized = next(iter_pseudo_labels(model, images.__getitem__, list(images)[:1], list(cues[:1]), labels[:1], None,
                                      input_size=64, scales=settings.scales, flip=settings.flip, batch_size=1))
    assert resized.evidence.grid == (11, 16) and resized.pseudo_label.shape == (338, 500)  # 64x43 at stride 4


@pytest.mark.slow
def test_voc_network_exports_a_500x375_photo_on_a_63x47_grid_with_the_cut(voc_mini: Path) -> None:
    """The whole export of one photo with the real VOC network (random weights) and params.yaml's export and
    graph_cut settings: the cut runs on the 63x47 scale-1 features with the photo's cues remapped to that grid, and
    its result is the evidence's grown masks; the labels are at 500x375."""
    settings = _export("voc12.yaml")
    cut = load_params("graph_cut", GraphCutParams, config=REPO / "pipelines/voc12.yaml", defaults=PARAMS)
    images, labels, cues = _photos(voc_mini)
    row = list(images).index(PHOTO)
    asked = []
    with SupervisionPool(workers=0, k=cut.knn_k, threshold=settings.threshold,
                         seed_capacity=cut.seed_capacity) as pool:
        grow = pool.grow
        pool.grow = lambda *args: asked.append(args) or grow(*args)
        item = next(iter_pseudo_labels(_voc_network("cpu"), images.__getitem__, [PHOTO], [cues[row]],
                                       labels[row : row + 1], pool, input_size=settings.input_size,
                                       scales=settings.scales, flip=settings.flip, batch_size=1))
    assert item.evidence.grid == (47, 63) and item.pseudo_label.shape == (375, 500)
    (features, probs, grid_cues, classes), = asked
    assert features.shape == (1, 1280, 47, 63) and probs.shape == grid_cues.shape == (1, VOC_CLASSES, 47, 63)
    assert np.array_equal(grid_cues[0], cues_on_grid(cues[row], (47, 63)))
    expected = grow_supervision(grid_cues[0], probs[0].numpy(), classes[0], knn_edges(features[0], k=cut.knn_k),
                                threshold=settings.threshold, seed_capacity=cut.seed_capacity)
    assert np.array_equal(item.evidence.grown, expected)


def test_export_and_crf_stages_keep_native_grids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 voc_mini: Path) -> None:
    """export (input_size null, no cut: the stride-4 grids hold 12k nodes) then crf on the vendored photos: the store
    is padded to the largest grid, each photo keeps its own, the CRF labels are at the photos' sizes."""
    (tmp_path / "params.yaml").write_text(PARAMS.read_text())
    (tmp_path / "voc.yaml").write_text((REPO / "pipelines/voc12.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    train = prepare_voc_mini(voc_mini)["splits"]["train"]
    images, labels, cues = _photos(voc_mini)
    assert train["names"] == list(images)
    class_names = json.loads(Path("a/prepare/manifest.json").read_text())["class_names"]
    write_cue_store("a/cues/cues.zarr", train["names"], cues, labels, class_names, provenance=upstream("cues"))
    save_model(Path("a/train_dgcn/model.pt"), _small(), kind="segmenter", arch="small", num_outputs=VOC_CLASSES,
               options={"width": 4})
    set_param(tmp_path / "voc.yaml", "export", device="cpu", threshold=None, workers=0, batch_size=2)
    set_param(tmp_path / "voc.yaml", "dense_crf", iterations=1)
    set_param(tmp_path / "voc.yaml", "crf", workers=0)
    manifest = ["--manifest", "a/prepare/manifest.json"]
    for stage, *args in (["export", *manifest, "--cues", "a/cues/cues.zarr", "--model", "a/train_dgcn/model.pt",
                          "--out", "a/export"],
                         ["crf", *manifest, "--evidence", "a/export/evidence.zarr", "--out", "a/crf"]):
        code, output = invoke(stage, *args)
        assert code == 0, f"{stage}: {output}"
    store = EvidenceStore("a/export/evidence.zarr")
    assert store.grids.tolist() == [[85, 125], [94, 125], [94, 125]]
    assert store[0].probs.shape == (VOC_CLASSES, 85, 125)
    refined = LabelStore("a/crf/crf_labels.zarr")
    assert [refined[i].shape for i in range(3)] == [(338, 500), (375, 500), (375, 500)]

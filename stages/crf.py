"""Stage `crf`: dense-CRF refinement at full resolution of the export's soft evidence, into a second label store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from dgcn.data.palette import voc_palette
from dgcn.evidence import iter_crf_labels
from dgcn.metrics import ConfusionMatrix
from dgcn.progress import progress
from dgcn.storage import EvidenceStore, LabelStoreWriter, staged_directory
from stages.manifest import Manifest
from stages.options import CONFIG, DEFAULTS, MANIFEST
from stages.params import CRFStageParams, DenseCRFParams, load_params
from stages.runtime import provenance, summary, write_json


def main(
    evidence: Path = typer.Option(..., help="the export stage's evidence.zarr"),
    out: Path = typer.Option(..., help="folder for crf_labels.zarr and metrics.json"),
    manifest: Path = MANIFEST,
    config: Path = CONFIG,
    defaults: Path = DEFAULTS,
) -> None:
    """Refine the export's evidence with a dense CRF on each full-resolution image (published kernels).

    Unary: the network's probabilities, confident where the graph cut grew the cues (crf.grown_confidence)."""
    settings = load_params("crf", CRFStageParams, config=config, defaults=defaults)
    kernels = load_params("dense_crf", DenseCRFParams, config=config, defaults=defaults)
    data = Manifest.load(manifest)
    store = EvidenceStore(evidence)
    train = data.train
    train.check_store(store.names, evidence, "export")
    if store.class_names != list(data.class_names):
        raise ValueError(f"{evidence} holds classes {store.class_names}, not the manifest's; rerun the export stage")
    num_classes = len(data.class_names)

    images = (train.dataset.image(name) for name in train.names)
    refined = iter_crf_labels(images, iter(store), confidence=settings.grown_confidence, workers=settings.workers,
                              **kernels.kernels())
    scored = set(train.scored())
    scores = ConfusionMatrix(num_classes)
    with (staged_directory(out) as folder,
          LabelStoreWriter(folder / "crf_labels.zarr", train.names, train.sizes, list(data.class_names),
                           voc_palette()[:num_classes], shard_images=store.shard_images,
                           provenance=provenance("crf", [settings, kernels], [manifest, evidence])) as writer):
        shard: list[np.ndarray] = []
        for i, labels in enumerate(progress(refined, total=len(train.names), desc="crf")):
            shard.append(labels)
            if i in scored:
                scores.add(train.dataset.mask(train.names[i]), labels)
            if len(shard) == store.shard_images or i == len(train.names) - 1:
                writer.write(i + 1 - len(shard), shard)
                shard = []
        metrics = train.scoring("crf") | ({"crf_miou": scores.miou()} if scored else {})
        write_json(folder / "metrics.json", metrics)
    summary("crf", images=len(train.names), **metrics)

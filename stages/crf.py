"""Stage `crf`: dense-CRF refinement of the exported pseudo-labels at full resolution, into a second Zarr store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from dgcn.crf import iter_dense_crf, labels_to_probs
from dgcn.metrics import ConfusionMatrix
from dgcn.progress import progress
from dgcn.storage import LabelStore, LabelStoreWriter, staged_directory
from stages.manifest import Manifest
from stages.options import CONFIG, DEFAULTS, MANIFEST
from stages.params import CRFStageParams, DenseCRFParams, load_params
from stages.runtime import summary, write_json


def main(
    pseudo_labels: Path = typer.Option(..., help="the export stage's pseudo_labels.zarr"),
    out: Path = typer.Option(..., help="folder for crf_labels.zarr and metrics.json"),
    manifest: Path = MANIFEST,
    config: Path = CONFIG,
    defaults: Path = DEFAULTS,
) -> None:
    """Refine every exported pseudo-label with a dense CRF on its full-resolution image (published parameters)."""
    settings = load_params("crf", CRFStageParams, config=config, defaults=defaults)
    kernels = load_params("dense_crf", DenseCRFParams, config=config, defaults=defaults)
    data = Manifest.load(manifest)
    pseudo = LabelStore(pseudo_labels)
    train = data.train
    train.check_store(pseudo.names, pseudo_labels, "export")
    num_classes = len(data.class_names)

    images = (train.dataset.image(name) for name in train.names)
    unaries = (labels_to_probs(pseudo[i], [0, *train.classes[i]], num_classes, settings.label_confidence)
               for i in range(len(train.names)))
    refined = iter_dense_crf(images, unaries, workers=settings.workers, **kernels.kernels())
    scores = ConfusionMatrix(num_classes) if train.has_masks() else None
    with (staged_directory(out) as folder,
          LabelStoreWriter(folder / "crf_labels.zarr", train.names, train.sizes, list(pseudo.class_names),
                           pseudo.palette, shard_images=pseudo.shard_images) as writer):
        shard: list[np.ndarray] = []
        for i, q in enumerate(progress(refined, total=len(train.names), desc="crf")):
            labels = q.argmax(axis=0).astype(np.uint8)
            shard.append(labels)
            if scores is not None:
                scores.add(train.dataset.mask(train.names[i]), labels)
            if len(shard) == pseudo.shard_images or i == len(train.names) - 1:
                writer.write(i + 1 - len(shard), shard)
                shard = []
        metrics = {"crf_miou": scores.miou()} if scores is not None else {}
        write_json(folder / "metrics.json", metrics)
    summary("crf", images=len(train.names), **metrics)

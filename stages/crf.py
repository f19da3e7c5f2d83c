"""Stage `crf`: dense-CRF refinement of the exported pseudo-labels at full resolution, into a second Zarr store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer
from tqdm import tqdm

from dgcn.crf import iter_dense_crf, labels_to_probs
from dgcn.metrics import confusion_matrix, scores
from dgcn.storage import LabelStore, LabelStoreWriter, staged_directory
from stages.manifest import Manifest
from stages.params import DenseCRFParams, load_section, param
from stages.runtime import summary, write_json


@dataclass
class CRFStageParams(DenseCRFParams):
    label_confidence: float = param(0.7, range=(0.0, 1.0))
    workers: int = param(2, range=(0, 64))


PSEUDO_LABELS = Path("artifacts/export/pseudo_labels.zarr")


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (section `crf`)"),
    out: Path = typer.Option(Path("artifacts/crf"), help="folder for crf_labels.zarr and metrics.json"),
) -> None:
    """Refine every exported pseudo-label with a dense CRF on its full-resolution image (published parameters)."""
    config = load_section(params, "crf", CRFStageParams)
    manifest = Manifest.load()
    pseudo = LabelStore(PSEUDO_LABELS)
    train = manifest.train
    train.check_store(pseudo.names, PSEUDO_LABELS, "export")
    num_classes = len(manifest.class_names)

    images = (train.dataset.image(name) for name in train.names)
    unaries = (labels_to_probs(pseudo[i], [0, *train.classes[i]], num_classes, config.label_confidence)
               for i in range(len(train.names)))
    refined = iter_dense_crf(images, unaries, workers=config.workers, **config.kernels())
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    scored = train.has_masks()
    with (staged_directory(out) as folder,
          LabelStoreWriter(folder / "crf_labels.zarr", train.names, train.sizes, list(pseudo.class_names),
                           pseudo.palette, shard_images=pseudo.shard_images) as writer):
        shard: list[np.ndarray] = []
        for i, q in enumerate(tqdm(refined, total=len(train.names), desc="crf", leave=False)):
            labels = q.argmax(axis=0).astype(np.uint8)
            shard.append(labels)
            if scored:
                conf += confusion_matrix(train.dataset.mask(train.names[i]), labels, num_classes)
            if len(shard) == pseudo.shard_images or i == len(train.names) - 1:
                writer.write(i + 1 - len(shard), shard)
                shard = []
        metrics = {"crf_miou": round(float(scores(conf)["miou"]), 4)} if scored else {}
        write_json(folder / "metrics.json", metrics)
    summary("crf", images=len(train.names), **metrics)

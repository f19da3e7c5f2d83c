"""Stage `crf`: dense-CRF refinement at full resolution of the export's soft evidence, into a second label store."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from dgcn import distributed
from dgcn.data.palette import voc_palette
from dgcn.evidence import iter_crf_labels
from dgcn.metrics import ConfusionMatrix
from dgcn.progress import progress
from dgcn.storage import EvidenceStore, LabelStoreWriter, staged_directory
from stages.manifest import Manifest
from stages.options import CONFIG, DEFAULTS, MANIFEST
from stages.params import load_params
from stages.runtime import provenance, summary, write_json
from stages.schemas.crf import CRFStageParams
from stages.schemas.dense_crf import DenseCRFParams


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
    data.check_upstream(store, evidence, "export")
    num_classes = len(data.class_names)

    distributed.join(torch.device("cpu"))  # under torchrun: each rank refines its shards, rank 0 writes them all
    mine = distributed.my_shards(len(train.names), store.shard_images)
    positions = [i for run in mine for i in run]
    refined = iter_crf_labels((train.dataset.image(train.names[i]) for i in positions), (store[i] for i in positions),
                              confidence=settings.grown_confidence, workers=settings.workers, **kernels.kernels())
    shards = distributed.gather_shards(progress(refined, total=len(positions), desc="crf"), mine, len(train.names),
                                       store.shard_images)
    if not distributed.is_main():
        for _ in shards:
            pass
        return
    scored = set(train.scored())
    scores = ConfusionMatrix(num_classes)
    origin = data.stamp(provenance("crf", [settings, kernels], [manifest, evidence]))
    with (staged_directory(out) as folder,
          LabelStoreWriter(folder / "crf_labels.zarr", train.names, train.sizes, list(data.class_names),
                           voc_palette()[:num_classes], shard_images=store.shard_images,
                           provenance=origin) as writer):
        for start, shard in shards:
            writer.write(start, shard)
            for i, labels in enumerate(shard, start):
                if i in scored:
                    scores.add(train.dataset.mask(train.names[i]), labels)
        metrics = train.scoring("crf") | ({"crf_miou": scores.miou()} if scored else {})
        write_json(folder / "metrics.json", metrics)
    summary("crf", images=len(train.names), **metrics)

"""Stage `export`: the trained DGCN over every training image, cues grown by graph cut: the labels into one Zarr store,
the evidence the crf stage refines into a second."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import typer

from dgcn import distributed
from dgcn.cues import CueStore
from dgcn.data.palette import voc_palette
from dgcn.metrics import ConfusionMatrix
from dgcn.model_files import load_model
from dgcn.precision import Precision
from dgcn.progress import progress
from dgcn.pseudo_labels import evidence_grid, iter_pseudo_labels, scale_one_shape
from dgcn.storage import EvidenceStoreWriter, LabelStoreWriter, staged_directory
from dgcn.supervision import SupervisionPool
from stages.manifest import Manifest
from stages.options import CONFIG, DEFAULTS, MANIFEST
from stages.params import load_params
from stages.runtime import provenance, resolve_device, set_threads, summary, write_json
from stages.schemas.export import ExportParams
from stages.schemas.graph_cut import GraphCutParams


def main(
    cues: Path = typer.Option(..., help="the cues stage's cues.zarr"),
    model: Path = typer.Option(..., help="the train-dgcn stage's model.pt"),
    out: Path = typer.Option(..., help="folder for pseudo_labels.zarr, evidence.zarr and metrics.json"),
    manifest: Path = MANIFEST,
    config: Path = CONFIG,
    defaults: Path = DEFAULTS,
) -> None:
    """Pseudo-labels at each image's aspect ratio (multi-scale, mirrored), cues grown by graph cut; the CRF's evidence.

    The scales are of the image's native size (export.input_size null, as published) or of the image resized to a
    longer side of export.input_size.

    export.threshold null: no cut, the labels are the network's argmax over the image's classes.

    The DGCN probabilities restricted to the image's classes and the grown cues, on the network's grid, go to
    evidence.zarr; their upsampled argmax to pseudo_labels.zarr."""
    settings = load_params("export", ExportParams, config=config, defaults=defaults)
    cut = load_params("graph_cut", GraphCutParams, config=config, defaults=defaults)
    data = Manifest.load(manifest)
    set_threads()
    loaded = load_model(model, "segmenter")
    data.check_network(loaded, model, "train_dgcn")
    device = distributed.join(resolve_device(settings.device, "export.device"))
    network = Precision(settings.amp, device, "export.amp").wrap(loaded.to(device))
    cue_store = CueStore(cues)
    train = data.train
    data.check_upstream(cue_store, cues, "cues")
    if settings.threshold is not None:
        _check_cut_grid(cut, settings, train.sizes, loaded.output_stride)
    num_classes = len(data.class_names)
    scored = set(train.scored())
    pseudo_scores, network_scores = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
    palette = voc_palette()[:num_classes].tolist()
    grid = evidence_grid(network, train.sizes, settings.input_size)
    origin = data.stamp(provenance("export", [settings, cut], [manifest, cues, model]))
    mine = distributed.my_shards(len(train.names), settings.shard_images)
    # export.threshold null: no cut, no pool (iter_pseudo_labels takes None).
    cutter = nullcontext() if settings.threshold is None else SupervisionPool(
        workers=settings.workers, k=cut.knn_k, threshold=settings.threshold, seed_capacity=cut.seed_capacity,
        network_seeds=cut.network_seeds)
    with cutter as pool:
        results = iter_pseudo_labels(network, train.dataset.image, train.names, cue_store, cue_store.image_labels,
                                     pool, input_size=settings.input_size, scales=settings.scales,
                                     flip=settings.flip, batch_size=settings.batch_size, runs=mine)
        shards = distributed.gather_shards(progress(results, total=sum(map(len, mine)), desc="export"), mine,
                                           len(train.names), settings.shard_images)
        if not distributed.is_main():  # the other ranks compute their shards; rank 0 writes every shard
            for _ in shards:
                pass
            return
        with (staged_directory(out) as folder,
              LabelStoreWriter(folder / "pseudo_labels.zarr", train.names, train.sizes, list(data.class_names),
                               palette, shard_images=settings.shard_images, provenance=origin) as writer,
              EvidenceStoreWriter(folder / "evidence.zarr", train.names, list(data.class_names), grid,
                                  shard_images=settings.shard_images, provenance=origin) as evidence_writer):
            for start, items in shards:
                writer.write(start, [item.pseudo_label for item in items])
                evidence_writer.write(start, [item.evidence for item in items])
                for i, item in enumerate(items, start):
                    if i in scored:
                        mask = train.dataset.mask(train.names[i])
                        pseudo_scores.add(mask, item.pseudo_label)
                        network_scores.add(mask, item.network_argmax)
            metrics = train.scoring("pseudo")
            if scored:
                metrics |= {"pseudo_miou": pseudo_scores.miou(), "network_argmax_miou": network_scores.miou()}
            write_json(folder / "metrics.json", metrics)
    summary("export", images=len(train.names), **metrics)


def _check_cut_grid(cut: GraphCutParams, settings: ExportParams, sizes: list[tuple[int, int]], stride: int) -> None:
    """The cut runs on the features of the scale-1 pass (of the first scale when 1 is not among them), on each image's
    own grid: the image with the fewest grid nodes must hold graph_cut.knn_k."""
    scale = 1.0 if 1.0 in settings.scales else settings.scales[0]
    grids = [[-(-round(side * scale) // stride) for side in scale_one_shape(size, settings.input_size)]
             for size in sizes]
    height, width = min(grids, key=lambda grid: grid[0] * grid[1])
    size = "its native size" if settings.input_size is None else f"export.input_size {settings.input_size}"
    cut.check_nodes(height * width, f"the {height} x {width} feature grid of the smallest training image at {size} x "
                                    f"scale {scale:g}", "raise export.input_size or its scale")

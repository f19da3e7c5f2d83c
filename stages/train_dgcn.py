"""Stage `train-dgcn`: train the segmentation network from the cues with graph-cut supervision (spec section 2)."""

from __future__ import annotations

from pathlib import Path

import typer

from dgcn import distributed
from dgcn.cues import CueStore
from dgcn.data.augment import ColorJitter, CropGeometry
from dgcn.data.crops import LazyStore, NamedFiles
from dgcn.model_files import save_model
from dgcn.plots import GROWTH_SCORES, plot_growth
from dgcn.precision import Precision
from dgcn.storage import staged_directory
from dgcn.supervision import SupervisionPool
from dgcn.training.dgcn import SGDSchedule, train_dgcn
from dgcn.training.loop import discard_checkpoint
from stages.manifest import Manifest
from stages.networks import starting_segmenter
from stages.options import CONFIG, DEFAULTS, MANIFEST
from stages.params import load_params
from stages.runtime import checkpoint_path, resolve_device, seed_everything, set_threads, summary, write_csv, write_json
from stages.schemas.dense_crf import DenseCRFParams
from stages.schemas.graph_cut import GraphCutParams
from stages.schemas.train_dgcn import TrainDGCNParams


def main(
    cues: Path = typer.Option(..., help="the cues stage's cues.zarr"),
    classifier: Path = typer.Option(..., help="the cues stage's classifier.pt (its trunk starts the network)"),
    out: Path = typer.Option(..., help="folder for model.pt, metrics.json, train_log.csv, train_steps.csv, "
                                       "growth.png"),
    manifest: Path = MANIFEST,
    config: Path = CONFIG,
    defaults: Path = DEFAULTS,
) -> None:
    """DGCN training: kNN feature graph + per-class graph cut grow the cues; seeding + constrain loss; SGD."""
    settings = load_params("train_dgcn", TrainDGCNParams, config=config, defaults=defaults)
    cut = load_params("graph_cut", GraphCutParams, config=config, defaults=defaults)
    kernels = load_params("dense_crf", DenseCRFParams, config=config, defaults=defaults)
    data = Manifest.load(manifest)
    cue_store = CueStore(cues)
    set_threads()
    seed_everything(settings.seed)
    train = data.train
    data.check_upstream(cue_store, cues, "cues")
    kernels.check_scale(settings.crf_scale, "train_dgcn.crf_scale")
    model = starting_segmenter(settings, len(data.class_names), classifier, "train_dgcn")
    grid = -(-settings.crop_size // model.output_stride)  # the crop's feature grid, where the cut runs
    cut.check_nodes(grid * grid, f"the {grid} x {grid} feature grid of a train_dgcn.crop_size {settings.crop_size} "
                                 "crop", "raise train_dgcn.crop_size")
    device = distributed.join(resolve_device(settings.device, "train_dgcn.device"))
    precision = Precision(settings.amp, device, "train_dgcn.amp")
    model.to(device)
    geometry = CropGeometry(settings.crop_size, resize_long=None if settings.resize_long is None else
                            tuple(settings.resize_long), jitter=ColorJitter(**settings.color_jitter.model_dump()))
    optimizer = settings.optimizer
    schedule = SGDSchedule(lr=optimizer.lr, momentum=optimizer.momentum, weight_decay=optimizer.weight_decay,
                           head_lr_mult=optimizer.head_lr_mult, warmup_iters=settings.warmup_iters,
                           decay_every_epochs=settings.decay_every_epochs, decay_gamma=settings.decay_gamma)
    checkpoint = checkpoint_path("train_dgcn", [settings, cut, kernels], [manifest, cues, classifier])
    # Scoring only, never training: the grown supervision against the masks, when every training image has one.
    masks = NamedFiles(train.mask_or_none, train.names) if len(train.scored()) == len(train.names) else None
    with SupervisionPool(workers=settings.workers, k=cut.knn_k, threshold=cut.threshold,
                         seed_capacity=cut.seed_capacity, network_seeds=cut.network_seeds,
                         crf_params={**kernels.kernels(), "scale": settings.crf_scale}) as pool:
        history = train_dgcn(model, NamedFiles(train.dataset.image, train.names), LazyStore(CueStore, cues),
                             cue_store.image_labels, pool, schedule, geometry=geometry, epochs=settings.epochs,
                             batch_size=settings.batch_size, seed=settings.seed, data_workers=settings.data_workers,
                             batchnorm=settings.batchnorm, constrain_weight=settings.constrain_weight,
                             masks=masks, checkpoint=checkpoint, precision=precision,
                             graph_features=settings.graph_features,
                             growth_start_epoch=settings.growth_start_epoch)
    if not distributed.is_main():  # rank 0 writes the artifacts
        return
    with staged_directory(out) as folder:
        save_model(folder / "model.pt", model, kind="segmenter", arch=settings.arch,
                   num_outputs=len(data.class_names), options=settings.arch_options)
        write_csv(folder / "train_log.csv", history.epochs)
        write_csv(folder / "train_steps.csv", history.steps)
        final = history.epochs[-1]
        growth = {key: final[key] for key in GROWTH_SCORES if key in final}
        plot_growth(history.epochs, folder / "growth.png")
        write_json(folder / "metrics.json", {"final_loss": final["loss"], "final_seeding_loss": final["seeding"],
                                          "final_constrain_loss": final["constrain"], "epochs": settings.epochs}
                   | {f"final_{key}": value for key, value in growth.items()})
    discard_checkpoint(checkpoint)
    summary("train-dgcn", epochs=settings.epochs, loss=final["loss"])

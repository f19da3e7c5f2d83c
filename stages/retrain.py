"""Stage `retrain`: a segmentation network trained on dense labels: the CRF pseudo-labels, or ground truth."""

from __future__ import annotations

from pathlib import Path

import typer

from dgcn import distributed
from dgcn.data.augment import ColorJitter, CropGeometry
from dgcn.data.crops import LabelCounts, LazyStore, NamedFiles
from dgcn.errors import InputError
from dgcn.model_files import save_model
from dgcn.precision import Precision
from dgcn.progress import progress
from dgcn.storage import LabelStore, staged_directory
from dgcn.training.loop import discard_checkpoint
from dgcn.training.retrain import train_segmenter
from stages.manifest import Manifest
from stages.networks import starting_segmenter
from stages.options import CONFIG, DEFAULTS, MANIFEST
from stages.params import load_params
from stages.runtime import checkpoint_path, resolve_device, seed_everything, set_threads, summary, write_csv, write_json
from stages.schemas.retrain import RetrainLabelsParams, RetrainParams


def main(
    out: Path = typer.Option(..., help="folder for model.pt, metrics.json, train_log.csv"),
    crf_labels: Path = typer.Option(None, help="the crf stage's crf_labels.zarr (retrain_labels.source: crf)"),
    export_labels: Path = typer.Option(None, help="the export stage's pseudo_labels.zarr (retrain_labels.source: "
                                                  "export)"),
    cam_labels: Path = typer.Option(None, help="the cues stage's cam_labels.zarr (retrain_labels.source: cam)"),
    classifier: Path = typer.Option(None, help="the cues stage's classifier.pt (retrain.init_from_classifier: its "
                                               "trunk starts the network)"),
    ground_truth: bool = typer.Option(False, "--ground-truth", help="train on the ground-truth masks instead of "
                                                                    "retrain_labels: the fully-supervised upper bound"),
    manifest: Path = MANIFEST,
    config: Path = CONFIG,
    defaults: Path = DEFAULTS,
) -> None:
    """Retrain DeepLab (by name in params) with cross-entropy on dense labels, 255 ignored.

    The labels: the pseudo-labels that retrain_labels.source names, or with --ground-truth the masks."""
    settings = load_params("retrain", RetrainParams, config=config, defaults=defaults)
    source = load_params("retrain_labels", RetrainLabelsParams, config=config, defaults=defaults).source
    labels = None if ground_truth else {"crf": crf_labels, "export": export_labels, "cam": cam_labels}[source]
    if not ground_truth and labels is None:
        raise InputError(f"retrain: retrain_labels.source is {source}: give --{source}-labels <store> (or "
                         "--ground-truth)")
    data = Manifest.load(manifest)
    train = data.train
    set_threads()
    seed_everything(settings.seed)
    if labels is not None:
        store = LabelStore(labels)
        data.check_upstream(store, labels, {"crf": "crf", "export": "export", "cam": "cues"}[source])
        names, targets, every_map, inputs = train.names, LazyStore(LabelStore, labels), store, [labels]
    else:  # the images with a ground-truth mask, alone
        names = [train.names[i] for i in train.scored()]
        targets = every_map = NamedFiles(train.dataset.mask, names)
        inputs = [train.dataset.mask_source]
    model = starting_segmenter(settings, len(data.class_names), classifier, "retrain")
    device = distributed.join(resolve_device(settings.device, "retrain.device"))
    precision = Precision(settings.amp, device, "retrain.amp")
    model.to(device)
    checkpoint = None
    if not names:  # nothing to learn from: the untrained network, and why (evaluate leaves it unscored)
        metrics, log = {"trained_images": 0, "not_trained": "no training image has a ground-truth mask"}, []
    else:
        start = [classifier] if settings.init_from_classifier else []
        checkpoint = checkpoint_path("retrain", [settings], [manifest, *inputs, *start])
        counts = LabelCounts.of(progress(every_map, desc="counting label pixels"), len(data.class_names))
        weights = counts.inverse_sqrt_frequency() if settings.class_weights == "inverse_sqrt_frequency" else None
        geometry = CropGeometry(settings.crop_size, scale_range=tuple(settings.scale_range),
                                jitter=ColorJitter(**settings.color_jitter.model_dump()),
                                scale_step=settings.scale_step)
        optimizer = settings.optimizer.model_dump()
        log = train_segmenter(model, NamedFiles(train.dataset.image, names), targets, geometry=geometry,
                              batch_size=settings.batch_size, seed=settings.seed, data_workers=settings.data_workers,
                              batchnorm=settings.batchnorm, epochs=settings.epochs, iterations=settings.iterations,
                              iter_size=settings.iter_size, checkpoint=checkpoint, optimizer=optimizer.pop("name"),
                              **optimizer, precision=precision, class_weights=weights).epochs
        metrics = {"final_loss": log[-1]["loss"], "labelled_fraction": round(counts.labelled_fraction, 4)}
        metrics |= {} if weights is None else {"class_weights": [round(float(value), 4) for value in weights]}
        metrics |= {} if labels is not None else {"trained_images": len(names)}
    if not distributed.is_main():  # rank 0 writes the artifacts
        return
    with staged_directory(out) as folder:
        save_model(folder / "model.pt", model, kind="segmenter", arch=settings.arch,
                   num_outputs=len(data.class_names), options=settings.arch_options)
        write_csv(folder / "train_log.csv", log)
        write_json(folder / "metrics.json", metrics)
    if checkpoint is not None:
        discard_checkpoint(checkpoint)
    length = {"epochs": settings.epochs} if settings.iterations is None else {"iterations": settings.iterations}
    summary("retrain", labels="ground truth" if ground_truth else labels, **length, **metrics)

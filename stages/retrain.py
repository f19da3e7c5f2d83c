"""Stage `retrain`: a segmentation network trained on dense labels: the CRF pseudo-labels, or ground truth."""

from __future__ import annotations

from pathlib import Path

import typer

from dgcn import distributed
from dgcn.data.augment import ColorJitter, CropGeometry
from dgcn.data.crops import LazyStore, NamedFiles, labelled_fraction
from dgcn.errors import InputError
from dgcn.model_files import save_model
from dgcn.models.registry import build_segmenter
from dgcn.precision import Precision
from dgcn.storage import LabelStore, staged_directory
from dgcn.training.retrain import train_segmenter
from stages.manifest import Manifest
from stages.options import CONFIG, DEFAULTS, MANIFEST
from stages.params import RetrainParams, load_params
from stages.runtime import checkpoint_path, resolve_device, seed_everything, set_threads, summary, write_csv, write_json


def main(
    out: Path = typer.Option(..., help="folder for model.pt, metrics.json, train_log.csv"),
    labels: Path = typer.Option(None, help="a label store to train on (the crf stage's crf_labels.zarr)"),
    ground_truth: bool = typer.Option(False, "--ground-truth", help="train on the ground-truth masks instead: the "
                                                                    "fully-supervised upper bound"),
    manifest: Path = MANIFEST,
    config: Path = CONFIG,
    defaults: Path = DEFAULTS,
) -> None:
    """Retrain DeepLab (by name in params) with cross-entropy on dense labels, 255 ignored."""
    if (labels is None) != ground_truth:
        raise InputError("retrain: give exactly one of --labels <store> and --ground-truth")
    settings = load_params("retrain", RetrainParams, config=config, defaults=defaults)
    data = Manifest.load(manifest)
    train = data.train
    set_threads()
    seed_everything(settings.seed)
    if labels is not None:
        store = LabelStore(labels)
        train.check_store(store.names, labels, "crf")
        targets, every_map, inputs = LazyStore(LabelStore, labels), store, [labels]
    else:
        targets = every_map = NamedFiles(train.dataset.mask, train.names)
        inputs = [data.root / "SegmentationClassAug"]
    geometry = CropGeometry(settings.crop_size, scale_range=tuple(settings.scale_range),
                            jitter=ColorJitter(**settings.color_jitter.model_dump()))
    model = build_segmenter(settings.arch, len(data.class_names), pretrained=settings.pretrained,
                            **settings.arch_options)
    device = distributed.join(resolve_device(settings.device, "retrain.device"))
    precision = Precision(settings.amp, device, "retrain.amp")
    model.to(device)
    checkpoint = checkpoint_path("retrain", [settings], [manifest, *inputs])
    optimizer = settings.optimizer
    history = train_segmenter(model, NamedFiles(train.dataset.image, train.names), targets, geometry=geometry,
                              batch_size=settings.batch_size, seed=settings.seed, data_workers=settings.data_workers,
                              batchnorm=settings.batchnorm, epochs=settings.epochs, lr=optimizer.lr,
                              weight_decay=optimizer.weight_decay, checkpoint=checkpoint, optimizer=optimizer.name,
                              momentum=optimizer.momentum, head_lr_mult=optimizer.head_lr_mult,
                              precision=precision)
    if not distributed.is_main():  # rank 0 writes the artifacts
        return
    with staged_directory(out) as folder:
        save_model(folder / "model.pt", model, kind="segmenter", arch=settings.arch,
                   num_outputs=len(data.class_names), options=settings.arch_options)
        write_csv(folder / "train_log.csv", history.epochs)
        write_json(folder / "metrics.json", {"final_loss": history.epochs[-1]["loss"],
                                          "labelled_fraction": round(labelled_fraction(every_map), 4)})
    summary("retrain", labels="ground truth" if ground_truth else labels, epochs=settings.epochs,
            loss=history.epochs[-1]["loss"])

"""Stage `retrain`: a segmentation network trained on dense labels: the CRF pseudo-labels, or ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import typer

from dgcn.data.loading import load_stack
from dgcn.model_files import save_model
from dgcn.models.registry import build_segmenter
from dgcn.storage import LabelStore, staged_directory
from dgcn.training.supervised import train_segmenter
from stages.manifest import Manifest
from stages.params import NetworkParams, load_section, param
from stages.runtime import checkpoint_path, resolve_device, seed_everything, set_threads, summary, write_csv, write_json


class LabelSource(StrEnum):
    pseudo = "pseudo"
    gt = "gt"


@dataclass
class RetrainParams(NetworkParams):
    epochs: int = param(24, range=(1, None))
    batch_size: int = param(16, range=(1, None))
    lr: float = param(0.004, range=(0.0, 1.0))
    weight_decay: float = param(0.0001, range=(0.0, 1.0))
    optimizer: str = param("adamw", choices=("adamw", "sgd"))
    momentum: float = param(0.9, range=(0.0, 1.0))
    head_lr_mult: float = param(10.0, range=(1.0, None))
    seed: int = param(0, range=(0, None))


CRF_LABELS = Path("artifacts/crf/crf_labels.zarr")


def main(
    labels: LabelSource = typer.Option(LabelSource.pseudo, help="train on CRF pseudo-labels, or on ground truth "
                                                                "(the fully-supervised upper bound)"),
    params: Path = typer.Option(Path("params.yaml"), help="params file (section `retrain`)"),
    out: Path = typer.Option(None, help="output folder [default: artifacts/retrain/<labels>]"),
) -> None:
    """Retrain DeepLab (by name in params) with cross-entropy on dense labels, 255 ignored."""
    config = load_section(params, "retrain", RetrainParams)
    out = out or Path("artifacts/retrain") / labels.value
    manifest = Manifest.load()
    train = manifest.train
    set_threads()
    seed_everything(config.seed)
    if labels is LabelSource.pseudo:
        store = LabelStore(CRF_LABELS)
        train.check_store(store.names, CRF_LABELS, "crf")
        load_labels, inputs = (lambda name: store[store.index(name)]), [CRF_LABELS]
    else:
        load_labels, inputs = train.dataset.mask, [manifest.root / "SegmentationClassAug"]
    images = load_stack(train.dataset.image, train.names, config.input_size, desc="train images")
    targets = load_stack(load_labels, train.names, config.input_size, labels=True, desc="train labels")
    model = build_segmenter(config.arch, len(manifest.class_names), pretrained=config.pretrained,
                            **config.arch_options).to(resolve_device(config.device, "retrain.device"))
    checkpoint = checkpoint_path(f"retrain_{labels.value}", config,
                                 [Path("artifacts/prepare/manifest.json"), *inputs])
    history = train_segmenter(model, images, targets, epochs=config.epochs, batch_size=config.batch_size,
                              lr=config.lr, weight_decay=config.weight_decay, seed=config.seed, checkpoint=checkpoint,
                              optimizer=config.optimizer, momentum=config.momentum, head_lr_mult=config.head_lr_mult)
    with staged_directory(out) as folder:
        save_model(folder / "model.pt", model, kind="segmenter", arch=config.arch,
                   num_outputs=len(manifest.class_names), options=config.arch_options)
        write_csv(folder / "train_log.csv", history.epochs)
        write_json(folder / "metrics.json", {"final_loss": history.epochs[-1]["loss"], "labelled_fraction":
                                          round(float(np.mean(targets != 255)), 4)})
    summary(f"retrain ({labels.value})", epochs=config.epochs, loss=history.epochs[-1]["loss"])

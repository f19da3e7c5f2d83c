"""Stage `train-dgcn`: train the segmentation network from the cues with graph-cut supervision (spec section 2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import typer

from dgcn.cues import CueStore
from dgcn.data.loading import load_stack
from dgcn.model_files import load_model, save_model
from dgcn.models.registry import build_segmenter
from dgcn.storage import staged_directory
from dgcn.supervision import SupervisionPool
from dgcn.training.dgcn import SGDSchedule, train_dgcn
from stages.manifest import Manifest
from stages.params import DenseCRFParams, GraphCutParams, NetworkParams, load_section, param
from stages.runtime import checkpoint_path, resolve_device, seed_everything, set_threads, summary, write_csv, write_json


@dataclass
class TrainDGCNParams(NetworkParams, GraphCutParams):
    init_from_classifier: bool = param(True)
    epochs: int = param(10, range=(1, None))
    batch_size: int = param(16, range=(1, None))
    lr: float = param(0.01, range=(0.0, 1.0))
    momentum: float = param(0.9, range=(0.0, 1.0))
    weight_decay: float = param(0.0005, range=(0.0, 1.0))
    head_lr_mult: float = param(10.0, range=(0.0, None))
    warmup_iters: int = param(50, range=(0, None))
    decay_every_epochs: int = param(3, range=(1, None))
    decay_gamma: float = param(0.3, range=(0.0, 1.0))
    workers: int = param(2, range=(0, 64))
    crf: DenseCRFParams = field(default_factory=DenseCRFParams)
    seed: int = param(0, range=(0, None))


CUES = Path("artifacts/cues/cues.zarr")
CLASSIFIER = Path("artifacts/cues/classifier.pt")


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (section `train_dgcn`)"),
    out: Path = typer.Option(Path("artifacts/train_dgcn"), help="folder for model.pt, metrics.json, train_log.csv"),
) -> None:
    """DGCN training: kNN feature graph + per-class graph cut grow the cues; seeding + constrain loss; SGD."""
    config = load_section(params, "train_dgcn", TrainDGCNParams)
    manifest = Manifest.load()
    cue_store = CueStore(CUES)
    set_threads()
    seed_everything(config.seed)
    train = manifest.train
    train.check_store(cue_store.names, CUES, "cues")
    model = build_segmenter(config.arch, len(manifest.class_names), pretrained=config.pretrained, **config.arch_options)
    if config.init_from_classifier:
        model.load_trunk_from(load_model(CLASSIFIER, "classifier"))
    model.to(resolve_device(config.device, "train_dgcn.device"))
    cues = np.stack(list(cue_store))
    grid = cues.shape[-1]
    images = load_stack(train.dataset.image, train.names, config.input_size, desc="train images")
    grid_images = load_stack(train.dataset.image, train.names, grid, desc="grid images")
    schedule = SGDSchedule(lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           head_lr_mult=config.head_lr_mult, warmup_iters=config.warmup_iters,
                           decay_every_epochs=config.decay_every_epochs, decay_gamma=config.decay_gamma)
    checkpoint = checkpoint_path("train_dgcn", config, [Path("artifacts/prepare/manifest.json"), CUES, CLASSIFIER])
    with SupervisionPool(workers=config.workers, k=config.knn_k, threshold=config.threshold,
                         seed_capacity=config.seed_capacity, crf_params=config.crf.kernels()) as pool:
        history = train_dgcn(model, images, grid_images, cues, cue_store.image_labels, pool, schedule,
                             epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
                             checkpoint=checkpoint)
    with staged_directory(out) as folder:
        save_model(folder / "model.pt", model, kind="segmenter", arch=config.arch,
                   num_outputs=len(manifest.class_names), options=config.arch_options)
        write_csv(folder / "train_log.csv", history.epochs)
        write_csv(folder / "train_steps.csv", history.steps)
        final = history.epochs[-1]
        write_json(folder / "metrics.json", {"final_loss": final["loss"], "final_seeding_loss": final["seeding"],
                                          "final_constrain_loss": final["constrain"], "epochs": config.epochs})
    summary("train-dgcn", epochs=config.epochs, loss=final["loss"])

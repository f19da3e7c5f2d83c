"""Stage `cues`: train the image-label classifier, compute CAMs, turn them into sparse cues; score them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from PIL import Image

from dgcn.cam import cam_label_map, compute_cams
from dgcn.cues import cue_quality, cues_from_cams, import_published_cues, write_cue_store
from dgcn.data.loading import load_stack, resize_labels
from dgcn.errors import InputError
from dgcn.metrics import ConfusionMatrix
from dgcn.model_files import save_model
from dgcn.models.registry import build_classifier
from dgcn.progress import progress
from dgcn.storage import staged_directory
from dgcn.training.supervised import train_classifier
from stages.manifest import Manifest
from stages.options import CONFIG, DEFAULTS, MANIFEST
from stages.params import CuesParams, load_params
from stages.runtime import resolve_device, seed_everything, set_threads, summary, write_csv, write_json


def main(
    out: Path = typer.Option(..., help="folder for classifier.pt, cues.zarr, metrics.json, train_log.csv"),
    manifest: Path = MANIFEST,
    config: Path = CONFIG,
    defaults: Path = DEFAULTS,
) -> None:
    """Cues from image-level labels: classifier -> CAMs -> foreground/background seeds on the network grid."""
    settings = load_params("cues", CuesParams, config=config, defaults=defaults)
    data = Manifest.load(manifest)
    set_threads()
    seed_everything(settings.seed)
    train = data.train
    labels = train.image_labels()
    images = load_stack(train.dataset.image, train.names, settings.input_size, desc="train images")
    model = build_classifier(settings.arch, len(data.class_names) - 1, pretrained=settings.pretrained,
                             **settings.arch_options).to(resolve_device(settings.device, "cues.device"))
    optimizer = settings.optimizer
    history = train_classifier(model, images, labels[:, 1:], epochs=settings.epochs, batch_size=settings.batch_size,
                               lr=optimizer.lr, weight_decay=optimizer.weight_decay, optimizer=optimizer.name,
                               momentum=optimizer.momentum, head_lr_mult=optimizer.head_lr_mult, seed=settings.seed)
    cams = compute_cams(model, images)
    grid = cams.shape[-1]
    if settings.published_cues is not None:
        cues = _published_cues(settings, train.names, len(data.class_names), grid)
    else:
        cues = np.stack([cues_from_cams(cam, np.flatnonzero(row[1:]) + 1, fg_threshold=settings.fg_threshold,
                                        bg_threshold=settings.bg_threshold, saliency=_saliency(settings, name, grid),
                                        saliency_threshold=settings.saliency_threshold)
                         for cam, row, name in zip(cams, labels, train.names, strict=True)])
    with staged_directory(out) as folder:
        save_model(folder / "classifier.pt", model, kind="classifier", arch=settings.arch,
                   num_outputs=len(data.class_names) - 1, options=settings.arch_options)
        write_cue_store(folder / "cues.zarr", train.names, cues, labels, list(data.class_names))
        metrics = _score(data, cams, cues, settings.cam_background)
        write_json(folder / "metrics.json", metrics)
        write_csv(folder / "train_log.csv", history.epochs)
    summary("cues", images=len(train.names), grid=f"{grid}x{grid}", **metrics)


def _saliency(settings: CuesParams, name: str, grid: int) -> np.ndarray | None:
    """The saliency map of `name` at the cue grid, in [0, 1], when a saliency folder is configured."""
    if settings.saliency_dir is None:
        return None
    path = settings.saliency_dir / f"{name}.png"
    if not path.is_file():
        raise FileNotFoundError(f"saliency map not found: {path} (cues.saliency_dir is set)")
    return np.asarray(Image.open(path).convert("L").resize((grid, grid), Image.BILINEAR), dtype=np.float32) / 255.0


def _published_cues(settings: CuesParams, names: list[str], num_classes: int, grid: int) -> np.ndarray:
    """Cues imported from a DSRG/DGCN pickle, reordered to the manifest's training ids."""
    if settings.published_list is None:
        raise InputError("cues.published_list must name input_list.txt when cues.published_cues is set")
    published_names, published, _ = import_published_cues(settings.published_cues, settings.published_list,
                                                          num_classes=num_classes, grid=grid)
    position = {name: i for i, name in enumerate(published_names)}
    missing = [name for name in names if name not in position]
    if missing:
        raise InputError(f"{settings.published_cues}: no cues for training image '{missing[0]}'")
    return published[[position[name] for name in names]]


def _score(data: Manifest, cams: np.ndarray, cues: np.ndarray, cam_background: float) -> dict:
    """Cue precision/coverage and cues_miou on the grid; the plain-CAM baseline mIoU at full resolution."""
    train, num_classes, grid = data.train, len(data.class_names), cues.shape[-1]
    if not train.has_masks():
        return {}
    on_cues, cam = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
    quality = None
    for i, name in enumerate(progress(train.names, desc="scoring cues")):
        gt = train.dataset.mask(name)
        gt_grid = resize_labels(gt, (grid, grid))
        quality = cue_quality(cues[i], gt_grid) if quality is None else quality + cue_quality(cues[i], gt_grid)
        single = cues[i].sum(axis=0) == 1
        on_cues.add(np.where(single, gt_grid, 255).astype(np.uint8), cues[i].argmax(axis=0).astype(np.uint8))
        present = np.asarray(train.classes[i], dtype=np.int64)
        cam.add(gt, cam_label_map(cams[i], present, cam_background, gt.shape))
    return {"cue_precision": round(float(quality.precision), 4), "cue_coverage": round(float(quality.coverage), 4),
            "cues_miou": on_cues.miou(), "cam_baseline_miou": cam.miou()}

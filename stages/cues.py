"""Stage `cues`: train the image-label classifier, compute CAMs, turn them into sparse cues; score them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer
from PIL import Image
from tqdm import tqdm

from dgcn.cam import cam_label_map, compute_cams
from dgcn.cues import cue_quality, cues_from_cams, import_published_cues, write_cue_store
from dgcn.data.loading import load_stack, resize_labels
from dgcn.metrics import confusion_matrix, scores
from dgcn.model_files import save_model
from dgcn.models.registry import build_classifier
from dgcn.storage import staged_directory
from dgcn.training.supervised import train_classifier
from stages.manifest import Manifest
from stages.params import NetworkParams, load_section, param
from stages.runtime import resolve_device, seed_everything, set_threads, summary, write_csv, write_json


@dataclass
class CuesParams(NetworkParams):
    epochs: int = param(40, range=(1, None))
    batch_size: int = param(16, range=(1, None))
    lr: float = param(0.003, range=(0.0, 1.0))
    weight_decay: float = param(0.0005, range=(0.0, 1.0))
    fg_threshold: float = param(0.7, range=(0.0, 1.0))
    bg_threshold: float = param(0.1, range=(0.0, 1.0))
    saliency_dir: Path | None = param(None)
    saliency_threshold: float = param(0.06, range=(0.0, 1.0))
    cam_background: float = param(0.6, range=(0.0, 1.0))
    published_cues: Path | None = param(None)
    published_list: Path | None = param(None)
    seed: int = param(0, range=(0, None))


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (section `cues`)"),
    out: Path = typer.Option(Path("artifacts/cues"), help="folder for classifier.pt, cues.zarr, metrics, log"),
) -> None:
    """Cues from image-level labels: classifier -> CAMs -> foreground/background seeds on the network grid."""
    config = load_section(params, "cues", CuesParams)
    manifest = Manifest.load()
    set_threads()
    seed_everything(config.seed)
    train = manifest.train
    labels = train.image_labels()
    images = load_stack(train.dataset.image, train.names, config.input_size, desc="train images")
    model = build_classifier(config.arch, len(manifest.class_names) - 1, pretrained=config.pretrained,
                             **config.arch_options).to(resolve_device(config.device, "cues.device"))
    history = train_classifier(model, images, labels[:, 1:], epochs=config.epochs, batch_size=config.batch_size,
                               lr=config.lr, weight_decay=config.weight_decay, seed=config.seed)
    cams = compute_cams(model, images)
    grid = cams.shape[-1]
    if config.published_cues is not None:
        cues = _published_cues(config, train.names, len(manifest.class_names), grid)
    else:
        cues = np.stack([cues_from_cams(cam, np.flatnonzero(row[1:]) + 1, fg_threshold=config.fg_threshold,
                                        bg_threshold=config.bg_threshold, saliency=_saliency(config, name, grid),
                                        saliency_threshold=config.saliency_threshold)
                         for cam, row, name in zip(cams, labels, train.names, strict=True)])
    with staged_directory(out) as folder:
        save_model(folder / "classifier.pt", model, kind="classifier", arch=config.arch,
                   num_outputs=len(manifest.class_names) - 1, options=config.arch_options)
        write_cue_store(folder / "cues.zarr", train.names, cues, labels, list(manifest.class_names))
        metrics = _score(manifest, cams, cues, config.cam_background)
        write_json(folder / "metrics.json", metrics)
        write_csv(folder / "train_log.csv", history.epochs)
    summary("cues", images=len(train.names), grid=f"{grid}x{grid}", **metrics)


def _saliency(config: CuesParams, name: str, grid: int) -> np.ndarray | None:
    """The saliency map of `name` at the cue grid, in [0, 1], when a saliency folder is configured."""
    if config.saliency_dir is None:
        return None
    path = config.saliency_dir / f"{name}.png"
    if not path.is_file():
        raise FileNotFoundError(f"saliency map not found: {path} (cues.saliency_dir is set)")
    return np.asarray(Image.open(path).convert("L").resize((grid, grid), Image.BILINEAR), dtype=np.float32) / 255.0


def _published_cues(config: CuesParams, names: list[str], num_classes: int, grid: int) -> np.ndarray:
    """Cues imported from a DSRG/DGCN pickle, reordered to the manifest's training ids."""
    if config.published_list is None:
        raise ValueError("cues.published_list must name input_list.txt when cues.published_cues is set")
    published_names, published, _ = import_published_cues(config.published_cues, config.published_list,
                                                          num_classes=num_classes, grid=grid)
    position = {name: i for i, name in enumerate(published_names)}
    missing = [name for name in names if name not in position]
    if missing:
        raise ValueError(f"{config.published_cues}: no cues for training image '{missing[0]}'")
    return published[[position[name] for name in names]]


def _score(manifest: Manifest, cams: np.ndarray, cues: np.ndarray, cam_background: float) -> dict:
    """Cue precision/coverage and cues_miou on the grid; the plain-CAM baseline mIoU at full resolution."""
    train, num_classes, grid = manifest.train, len(manifest.class_names), cues.shape[-1]
    if not train.has_masks():
        return {}
    cue_conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    cam_conf = np.zeros_like(cue_conf)
    quality = None
    for i, name in enumerate(tqdm(train.names, desc="scoring cues", leave=False)):
        gt = train.dataset.mask(name)
        gt_grid = resize_labels(gt, (grid, grid))
        quality = cue_quality(cues[i], gt_grid) if quality is None else quality + cue_quality(cues[i], gt_grid)
        single = cues[i].sum(axis=0) == 1
        cue_gt = np.where(single, gt_grid, 255).astype(np.uint8)
        cue_conf += confusion_matrix(cue_gt, cues[i].argmax(axis=0).astype(np.uint8), num_classes)
        present = np.asarray(train.classes[i], dtype=np.int64)
        cam_conf += confusion_matrix(gt, cam_label_map(cams[i], present, cam_background, gt.shape), num_classes)
    return {"cue_precision": round(float(quality.precision), 4), "cue_coverage": round(float(quality.coverage), 4),
            "cues_miou": round(float(scores(cue_conf)["miou"]), 4),
            "cam_baseline_miou": round(float(scores(cam_conf)["miou"]), 4)}

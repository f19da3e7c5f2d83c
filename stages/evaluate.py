"""Stage `evaluate`: val-set mIoU of the retrained networks, the stage-by-stage summary, plots and a gallery."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import typer
from tqdm import tqdm

from dgcn.crf import dense_crf
from dgcn.cues import CueStore
from dgcn.data.loading import normalize, resize_labels
from dgcn.inference import predict
from dgcn.metrics import confusion_matrix, scores
from dgcn.model_files import load_model
from dgcn.plots import plot_confusion, plot_gallery, plot_per_class_iou
from dgcn.storage import LabelStore, staged_directory
from stages.manifest import Manifest, Split
from stages.params import DeviceParams, load_section, param
from stages.runtime import read_json, resolve_device, set_threads, summary, write_csv, write_json


@dataclass
class EvaluateParams(DeviceParams):
    scales: list[float] = param([0.75, 1.0, 1.25], range=(0.25, 4.0))
    flip: bool = param(True)
    crf: bool = param(False)
    gallery_train: int = param(3, range=(1, 50))
    gallery_val: int = param(3, range=(0, 50))


ARTIFACTS = Path("artifacts")
SUMMARY_SOURCES = {"cam_baseline_miou": "cues", "cues_miou": "cues", "pseudo_miou": "export", "crf_miou": "crf"}


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (section `evaluate`)"),
    out: Path = typer.Option(Path("artifacts/evaluate"), help="folder for summary.json, plots and the gallery"),
) -> None:
    """Score the retrained and upper-bound networks on val; gather every stage's figure into summary.json."""
    config = load_section(params, "evaluate", EvaluateParams)
    manifest = Manifest.load()
    set_threads()
    stage_metrics = {stage: read_json(ARTIFACTS / stage / "metrics.json", f"metrics of stage {stage}")
                     for stage in set(SUMMARY_SOURCES.values())}
    device = resolve_device(config.device, "evaluate.device")
    models = {role: load_model(ARTIFACTS / "retrain" / role / "model.pt", "segmenter").to(device)
              for role in ("pseudo", "gt")}
    results = {role: _evaluate(model, manifest.val, len(manifest.class_names), config)
               for role, model in models.items()}
    val, upper = scores(results["pseudo"][0]), scores(results["gt"][0])
    summary_figures = {key: stage_metrics[stage].get(key) for key, stage in SUMMARY_SOURCES.items()}
    summary_figures |= {"val_miou": round(float(val["miou"]), 4),
                        "upper_bound_val_miou": round(float(upper["miou"]), 4)}
    with staged_directory(out) as folder:
        write_json(folder / "summary.json", summary_figures)
        names = list(manifest.class_names)
        write_json(folder / "per_class.json", {
            "classes": names, "val_iou": _rounded(val["iou"]), "upper_bound_iou": _rounded(upper["iou"]),
            "val_precision": _rounded(val["precision"]), "val_recall": _rounded(val["recall"]),
            "val_pixel_acc": round(float(val["pixel_acc"]), 4), "absent_classes": list(val.get("absent", []))})
        rows = zip(names, _rounded(val["iou"]), _rounded(upper["iou"]), strict=True)
        write_csv(folder / "per_class_iou.csv",
                  [{"class": name, "val_iou": v, "upper_bound_iou": u} for name, v, u in rows])
        plot_per_class_iou({"retrained on DGCN labels": val["iou"], "fully supervised": upper["iou"]}, names,
                           folder / "per_class_iou.png")
        plot_confusion(results["pseudo"][0], names, folder / "confusion.png", title="val, retrained on DGCN labels")
        _gallery(manifest, models["pseudo"], results["pseudo"][1], config, folder / "gallery.png")
    summary("evaluate", **{key: value for key, value in summary_figures.items() if value is not None})


def _rounded(values) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 4) for v in values]


def _predict_labels(model: torch.nn.Module, image: np.ndarray, config: EvaluateParams) -> np.ndarray:
    """(H, W) uint8 prediction at the image's own size: multi-scale + mirror, optionally CRF-refined."""
    x = normalize(torch.from_numpy(image[None]))
    probs = predict(model, x, scales=config.scales, flip=config.flip, size=image.shape[:2]).probs[0].numpy()
    if config.crf:
        probs = dense_crf(image, probs)
    return probs.argmax(axis=0).astype(np.uint8)


def _evaluate(model: torch.nn.Module, split: Split, num_classes: int,
              config: EvaluateParams) -> tuple[np.ndarray, list[np.ndarray]]:
    """Confusion matrix over the whole split, and the first few predictions for the gallery."""
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    kept = []
    for name in tqdm(split.names, desc="evaluate", leave=False):
        prediction = _predict_labels(model, split.dataset.image(name), config)
        conf += confusion_matrix(split.dataset.mask(name), prediction, num_classes)
        if len(kept) < config.gallery_val:
            kept.append(prediction)
    return conf, kept


def _gallery(manifest: Manifest, model: torch.nn.Module, val_predictions: list[np.ndarray], config: EvaluateParams,
             path: Path) -> None:
    """Image, cues, DGCN pseudo-label, CRF label, retrained prediction, ground truth for a few train and val images."""
    train, val = manifest.train, manifest.val
    cue_store = CueStore(ARTIFACTS / "cues" / "cues.zarr")
    pseudo = LabelStore(ARTIFACTS / "export" / "pseudo_labels.zarr")
    refined = LabelStore(ARTIFACTS / "crf" / "crf_labels.zarr")
    rows, titles = [], []
    for i, name in enumerate(train.names[:config.gallery_train]):
        image = train.dataset.image(name)
        cues = cue_store[i]
        cue_map = np.where(cues.any(axis=0), cues.shape[0] - 1 - cues[::-1].argmax(axis=0), 255).astype(np.uint8)
        rows.append([image, resize_labels(cue_map, image.shape[:2]), pseudo[i], refined[i],
                     _predict_labels(model, image, config), train.dataset.mask(name)])
        titles.append(f"train {name}")
    for name, prediction in zip(val.names, val_predictions, strict=False):
        rows.append([val.dataset.image(name), None, None, None, prediction, val.dataset.mask(name)])
        titles.append(f"val {name}")
    if rows:
        plot_gallery(rows, ["image", "cues", "DGCN pseudo-label", "CRF label", "retrained", "ground truth"], titles,
                     path)

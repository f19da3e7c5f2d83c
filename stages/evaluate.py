"""Stage `evaluate`: val-set mIoU of the retrained networks, the stage-by-stage summary, plots and a gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import typer

from dgcn.cues import CueStore, cue_label_map
from dgcn.data.loading import resize_labels
from dgcn.inference import predict_labels
from dgcn.metrics import ConfusionMatrix
from dgcn.model_files import load_model
from dgcn.plots import plot_confusion, plot_gallery, plot_per_class_iou
from dgcn.progress import progress
from dgcn.storage import LabelStore, staged_directory
from stages.manifest import Manifest, Split
from stages.options import CONFIG, DEFAULTS, MANIFEST
from stages.params import DenseCRFParams, EvaluateParams, load_params
from stages.runtime import read_json, resolve_device, set_threads, summary, write_csv, write_json

# The upstream figures the summary gathers from the stages' metrics files.
UPSTREAM_FIGURES = ("cam_baseline_miou", "cues_miou", "pseudo_miou", "crf_miou")


def main(
    model: Path = typer.Option(..., help="the retrain stage's model.pt (trained on the CRF pseudo-labels)"),
    upper_bound: Path = typer.Option(..., help="the upper_bound stage's model.pt (trained on ground truth)"),
    metrics: list[Path] = typer.Option(..., help="upstream metrics.json files whose figures join the summary"),
    cues: Path = typer.Option(..., help="the cues stage's cues.zarr (gallery)"),
    pseudo_labels: Path = typer.Option(..., help="the export stage's pseudo_labels.zarr (gallery)"),
    crf_labels: Path = typer.Option(..., help="the crf stage's crf_labels.zarr (gallery)"),
    out: Path = typer.Option(..., help="folder for summary.json, per-class scores, plots and the gallery"),
    manifest: Path = MANIFEST,
    config: Path = CONFIG,
    defaults: Path = DEFAULTS,
) -> None:
    """Score the retrained and upper-bound networks on val; gather every stage's figure into summary.json."""
    settings = load_params("evaluate", EvaluateParams, config=config, defaults=defaults)
    kernels = load_params("dense_crf", DenseCRFParams, config=config, defaults=defaults).kernels()
    data = Manifest.load(manifest)
    set_threads()
    upstream: dict[str, float] = {}
    for path in metrics:
        upstream |= read_json(path, "an upstream stage's metrics")
    device = resolve_device(settings.device, "evaluate.device")
    models = {role: load_model(path, "segmenter").to(device) for role, path in
              (("retrained", model), ("upper_bound", upper_bound))}
    crf_kernels = kernels if settings.crf else None
    results = {role: _evaluate(network, data.val, len(data.class_names), settings, crf_kernels)
               for role, network in models.items()}
    val, upper = results["retrained"][0].scores(), results["upper_bound"][0].scores()
    figures = {key: upstream.get(key) for key in UPSTREAM_FIGURES}
    figures |= {"val_miou": results["retrained"][0].miou(), "upper_bound_val_miou": results["upper_bound"][0].miou()}
    with staged_directory(out) as folder:
        write_json(folder / "summary.json", figures)
        names = list(data.class_names)
        write_json(folder / "per_class.json", {
            "classes": names, "val_iou": _rounded(val["iou"]), "upper_bound_iou": _rounded(upper["iou"]),
            "val_precision": _rounded(val["precision"]), "val_recall": _rounded(val["recall"]),
            "val_pixel_acc": round(float(val["pixel_acc"]), 4), "absent_classes": list(val.get("absent", []))})
        rows = zip(names, _rounded(val["iou"]), _rounded(upper["iou"]), strict=True)
        write_csv(folder / "per_class_iou.csv",
                  [{"class": name, "val_iou": v, "upper_bound_iou": u} for name, v, u in rows])
        plot_per_class_iou({"retrained on DGCN labels": val["iou"], "fully supervised": upper["iou"]}, names,
                           folder / "per_class_iou.png")
        plot_confusion(results["retrained"][0].counts, names, folder / "confusion.png",
                       title="val, retrained on DGCN labels")
        stores = (CueStore(cues), LabelStore(pseudo_labels), LabelStore(crf_labels))
        _gallery(data, models["retrained"], results["retrained"][1], stores, settings, crf_kernels,
                 folder / "gallery.png")
    summary("evaluate", **{key: value for key, value in figures.items() if value is not None})


def _rounded(values) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 4) for v in values]


def _evaluate(model: torch.nn.Module, split: Split, num_classes: int, settings: EvaluateParams,
              crf_kernels: dict[str, float] | None) -> tuple[ConfusionMatrix, list[np.ndarray]]:
    """Confusion matrix over the whole split, and the first few predictions for the gallery."""
    scores = ConfusionMatrix(num_classes)
    kept = []
    for name in progress(split.names, desc="evaluate"):
        prediction = predict_labels(model, split.dataset.image(name), scales=settings.scales, flip=settings.flip,
                                    crf_kernels=crf_kernels)
        scores.add(split.dataset.mask(name), prediction)
        if len(kept) < settings.gallery_val:
            kept.append(prediction)
    return scores, kept


def _gallery(data: Manifest, model: torch.nn.Module, val_predictions: list[np.ndarray],
             stores: tuple[CueStore, LabelStore, LabelStore], settings: EvaluateParams,
             crf_kernels: dict[str, float] | None, path: Path) -> None:
    """Image, cues, DGCN pseudo-label, CRF label, retrained prediction, ground truth for a few train and val images."""
    train, val = data.train, data.val
    cue_store, pseudo, refined = stores
    rows, titles = [], []
    for i, name in enumerate(train.names[:settings.gallery_train]):
        image = train.dataset.image(name)
        rows.append([image, resize_labels(cue_label_map(cue_store[i]), image.shape[:2]), pseudo[i], refined[i],
                     predict_labels(model, image, scales=settings.scales, flip=settings.flip,
                                    crf_kernels=crf_kernels),
                     train.dataset.mask(name)])
        titles.append(f"train {name}")
    for name, prediction in zip(val.names, val_predictions, strict=False):
        rows.append([val.dataset.image(name), None, None, None, prediction, val.dataset.mask(name)])
        titles.append(f"val {name}")
    if rows:
        plot_gallery(rows, ["image", "cues", "DGCN pseudo-label", "CRF label", "retrained", "ground truth"], titles,
                     path)

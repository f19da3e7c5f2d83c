"""Stage `evaluate`: val-set mIoU of the DGCN and retrained networks, the stage-by-stage summary, plots, a gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import typer

from dgcn import distributed
from dgcn.crf import dense_crf
from dgcn.cues import CueStore, cue_label_map
from dgcn.data.loading import resize_labels
from dgcn.inference import predict_labels, predict_probabilities
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
    dgcn_model: Path = typer.Option(..., help="the train-dgcn stage's model.pt (the DGCN network itself)"),
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
    """Score the DGCN, retrained and upper-bound networks on val; gather every stage's figure into summary.json."""
    settings = load_params("evaluate", EvaluateParams, config=config, defaults=defaults)
    kernels = load_params("dense_crf", DenseCRFParams, config=config, defaults=defaults).kernels()
    data = Manifest.load(manifest)
    set_threads()
    upstream: dict[str, float] = {}
    for path in metrics:
        upstream |= read_json(path, "an upstream stage's metrics")
    device = distributed.join(resolve_device(settings.device, "evaluate.device"))
    models = {role: load_model(path, "segmenter").to(device) for role, path in
              (("dgcn", dgcn_model), ("retrained", model), ("upper_bound", upper_bound))}
    crf_kernels = kernels if settings.crf else None
    # The retrained networks are scored as evaluate.crf says; the DGCN network both ways (the published 60.8 is its
    # multi-scale + flip score; its evaluation code also reports it after the dense CRF).
    retrained_variant = ("crf",) if settings.crf else ("plain",)
    variants = {"dgcn": ("plain", "crf"), "retrained": retrained_variant, "upper_bound": retrained_variant}
    results = {role: _evaluate(network, role, data.val, len(data.class_names), settings, kernels, variants[role])
               for role, network in models.items()}
    if not distributed.is_main():  # rank 0 writes the summary, the plots and the gallery
        return
    scores = {role: matrices[variants[role][-1]] for role, (matrices, _) in results.items()}
    val, upper, dgcn = (scores[role].scores() for role in ("retrained", "upper_bound", "dgcn"))
    figures = {key: upstream.get(key) for key in UPSTREAM_FIGURES}
    figures |= {"dgcn_val_miou": results["dgcn"][0]["plain"].miou(), "dgcn_val_crf_miou": dgcn["miou"],
                "val_miou": val["miou"], "upper_bound_val_miou": upper["miou"]}
    with staged_directory(out) as folder:
        write_json(folder / "summary.json", figures)
        names = list(data.class_names)
        write_json(folder / "per_class.json", {
            "classes": names, "val_iou": _rounded(val["iou"]), "upper_bound_iou": _rounded(upper["iou"]),
            "dgcn_val_crf_iou": _rounded(dgcn["iou"]),
            "val_precision": _rounded(val["precision"]), "val_recall": _rounded(val["recall"]),
            "val_pixel_acc": round(float(val["pixel_acc"]), 4), "absent_classes": list(val.get("absent", []))})
        rows = zip(names, _rounded(val["iou"]), _rounded(upper["iou"]), strict=True)
        write_csv(folder / "per_class_iou.csv",
                  [{"class": name, "val_iou": v, "upper_bound_iou": u} for name, v, u in rows])
        plot_per_class_iou({"DGCN network + CRF": dgcn["iou"], "retrained on DGCN labels": val["iou"],
                            "fully supervised": upper["iou"]}, names, folder / "per_class_iou.png")
        plot_confusion(scores["retrained"].counts, names, folder / "confusion.png",
                       title="val, retrained on DGCN labels")
        stores = (CueStore(cues), LabelStore(pseudo_labels), LabelStore(crf_labels))
        _gallery(data, models["retrained"], results["retrained"][1], stores, settings, crf_kernels,
                 folder / "gallery.png")
    summary("evaluate", **{key: value for key, value in figures.items() if value is not None})


def _rounded(values) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 4) for v in values]


def _evaluate(model: torch.nn.Module, role: str, split: Split, num_classes: int, settings: EvaluateParams,
              kernels: dict[str, float], variants: tuple[str, ...]) -> tuple[dict[str, ConfusionMatrix],
                                                                             list[np.ndarray]]:
    """One confusion matrix over the whole split per variant ("plain": argmax of the multi-scale + mirrored
    probabilities, "crf": after the dense CRF with `kernels`), and the last variant's first predictions (gallery).
    Under torchrun each rank predicts its block of the split (rank 0 the first: the same gallery while gallery_val
    fits in its block) and the matrices are summed over the ranks."""
    matrices = {variant: ConfusionMatrix(num_classes) for variant in variants}
    kept = []
    for name in progress([split.names[i] for i in distributed.my_block(len(split.names))], desc=f"evaluate {role}"):
        image, mask = split.dataset.image(name), split.dataset.mask(name)
        probs = predict_probabilities(model, image, scales=settings.scales, flip=settings.flip)
        for variant in variants:
            refined = dense_crf(image, probs, **kernels) if variant == "crf" else probs
            prediction = refined.argmax(axis=0).astype(np.uint8)
            matrices[variant].add(mask, prediction)
        if len(kept) < settings.gallery_val:
            kept.append(prediction)
    for matrix in matrices.values():
        matrix.counts = distributed.sum_counts(matrix.counts)
    return matrices, kept


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

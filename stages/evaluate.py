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
from stages.params import load_params
from stages.runtime import read_json, resolve_device, set_threads, summary, write_csv, write_json
from stages.schemas.dense_crf import DenseCRFParams
from stages.schemas.evaluate import EvaluateParams

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
    """Score the DGCN, retrained and upper-bound networks on val; gather every stage's figure into summary.json.

    The test-time CRF's kernels per network: evaluate.crf_kernels."""
    settings = load_params("evaluate", EvaluateParams, config=config, defaults=defaults)
    kernels = settings.kernels(load_params("dense_crf", DenseCRFParams, config=config, defaults=defaults))
    data = Manifest.load(manifest)
    set_threads()
    upstream: dict[str, float] = {}
    for path in metrics:
        upstream |= read_json(path, "an upstream stage's metrics")
    device = distributed.join(resolve_device(settings.device, "evaluate.device"))
    val_scored = bool(data.val.scored())
    not_scored = {} if val_scored else {"val": "no val image has a ground-truth mask"}
    if not data.train.scored():  # the upper_bound stage had nothing to train on
        not_scored["upper_bound"] = "no training image has a ground-truth mask"
    # stale or swapped upstream files fail here, before the long part: each store its stage's, of this manifest
    stores = (CueStore(cues), LabelStore(pseudo_labels), LabelStore(crf_labels))
    for store, path, stage in zip(stores, (cues, pseudo_labels, crf_labels), ("cues", "export", "crf"), strict=True):
        data.check_upstream(store, path, stage)
    models = {}
    for role, path, stage in (("dgcn", dgcn_model, "train_dgcn"), ("retrained", model, "retrain"),
                              ("upper_bound", upper_bound, "upper_bound")):
        if role not in not_scored:
            models[role] = load_model(path, "segmenter")
            data.check_network(models[role], path, stage)
            models[role].to(device)
    crf_kernels = kernels["retrained"] if settings.crf else None
    # The retrained networks are scored as evaluate.crf says; the DGCN network both ways (the published 60.8 is its
    # multi-scale + flip score; its evaluation code also reports it after the dense CRF).
    retrained_variant = ("crf",) if settings.crf else ("plain",)
    variants = {"dgcn": ("plain", "crf"), "retrained": retrained_variant, "upper_bound": retrained_variant}
    results = {role: _evaluate(network, role, data.val, len(data.class_names), settings, kernels[role], variants[role],
                               keep=settings.gallery_val if role == "retrained" else 0)
               for role, network in models.items()}
    if not distributed.is_main():  # rank 0 writes the summary, the plots and the gallery
        return
    unscored = ConfusionMatrix(len(data.class_names))
    scores = {role: results[role][0][variants[role][-1]] if role in results else unscored for role in variants}
    val, upper, dgcn = (scores[role].scores() for role in ("retrained", "upper_bound", "dgcn"))
    figures = {key: upstream.get(key) for key in UPSTREAM_FIGURES}
    figures |= {"dgcn_val_miou": results["dgcn"][0]["plain"].miou(), "dgcn_val_crf_miou": dgcn["miou"],
                "val_miou": val["miou"], "upper_bound_val_miou": upper["miou"]}
    if not val_scored:
        figures |= dict.fromkeys(("dgcn_val_miou", "dgcn_val_crf_miou", "val_miou", "upper_bound_val_miou"))
    elif "upper_bound" in not_scored:
        figures["upper_bound_val_miou"] = None
    names = list(data.class_names)
    stats = _label_stats(data, stores[1:], upstream) | {f"{role}_not_scored": reason for role, reason in
                                                        not_scored.items()}
    stats |= {"val_scored_images": len(data.val.scored()),
              "val_classes_absent": [names[i] for i in np.flatnonzero(scores["retrained"].counts.sum(axis=1) == 0)]}
    with staged_directory(out) as folder:
        write_json(folder / "summary.json", figures)
        write_json(folder / "label_stats.json", stats)
        write_json(folder / "per_class.json", {
            "classes": names, "val_iou": _rounded(val["iou"]), "upper_bound_iou": _rounded(upper["iou"]),
            "dgcn_val_crf_iou": _rounded(dgcn["iou"]),
            "val_precision": _rounded(val["precision"]), "val_recall": _rounded(val["recall"]),
            "val_pixel_acc": _rounded([val["pixel_acc"]])[0], "absent_classes": list(val.get("absent", []))})
        rows = zip(names, _rounded(val["iou"]), _rounded(upper["iou"]), strict=True)
        write_csv(folder / "per_class_iou.csv",
                  [{"class": name, "val_iou": v, "upper_bound_iou": u} for name, v, u in rows])
        plot_per_class_iou({"DGCN network + CRF": dgcn["iou"], "retrained on pseudo-labels": val["iou"],
                            "fully supervised": upper["iou"]}, names, folder / "per_class_iou.png")
        title = "val, retrained on pseudo-labels" if val_scored else f"val not scored: {not_scored['val']}"
        plot_confusion(scores["retrained"].counts, names, folder / "confusion.png", title=title)
        gallery_predictions = results["retrained"][1]
        _gallery(data, models["retrained"], gallery_predictions, stores, settings, crf_kernels, folder / "gallery.png")
    summary("evaluate", **{key: value for key, value in figures.items() if value is not None})


def _label_stats(data: Manifest, stores: tuple[LabelStore, LabelStore], upstream: dict) -> dict:
    """What needs no mask: the fraction of cue-carrying grid cells, the fraction of training pixels the CRF changed,
    the class frequencies of the tags (per image) and of the CRF labels (per pixel); and how many images each
    upstream mask-based metric counted (or why none)."""
    pseudo, refined = stores
    changed, pixels = 0, 0
    counts = np.zeros(len(data.class_names), dtype=np.int64)
    for i in progress(range(len(data.train.names)), desc="label statistics"):
        before, after = pseudo[i], refined[i]
        changed += int(np.count_nonzero(before != after))
        pixels += after.size
        counts += np.bincount(after[after < len(counts)].ravel(), minlength=len(counts))
    tagged = data.train.image_labels().mean(axis=0)
    names = data.class_names
    return {key: value for key, value in upstream.items() if key.endswith(("_scored_images", "_not_scored"))} | {
        "cue_labelled_fraction": upstream.get("cue_labelled_fraction"),
        "crf_changed_fraction": round(changed / pixels, 4),
        "crf_label_frequency": {name: round(int(count) / pixels, 4) for name, count in zip(names, counts, strict=True)},
        "train_tag_frequency": {name: round(float(value), 4) for name, value in zip(names[1:], tagged[1:],
                                                                                    strict=True)}}


def _rounded(values) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 4) for v in values]


def _evaluate(model: torch.nn.Module, role: str, split: Split, num_classes: int, settings: EvaluateParams,
              kernels: dict[str, float], variants: tuple[str, ...], keep: int) -> tuple[dict[str, ConfusionMatrix],
                                                                                       list[np.ndarray]]:
    """One confusion matrix over the split's images with a mask per variant ("plain": argmax of the multi-scale +
    mirrored probabilities, "crf": after the dense CRF with `kernels`), and the last variant's predictions of the
    first `keep` images (gallery). Under torchrun each rank predicts its block of the split (rank 0 the first: the same
    gallery while `keep` fits in its block) and the matrices are summed over the ranks."""
    matrices = {variant: ConfusionMatrix(num_classes) for variant in variants}
    kept = []
    for i in progress(list(distributed.my_block(len(split.names))), desc=f"evaluate {role}"):
        name, masked = split.names[i], split.masked[i]
        if not (masked or len(kept) < keep):
            continue
        image = split.dataset.image(name)
        probs = predict_probabilities(model, image, scales=settings.scales, flip=settings.flip)
        for variant in variants:
            refined = dense_crf(image, probs, **kernels) if variant == "crf" else probs
            prediction = refined.argmax(axis=0).astype(np.uint8)
            if masked:
                matrices[variant].add(split.dataset.mask(name), prediction)
        if len(kept) < keep:
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
                     train.mask_or_none(name)])
        titles.append(f"train {name}")
    for name, prediction in zip(val.names, val_predictions, strict=False):
        rows.append([val.dataset.image(name), None, None, None, prediction, val.mask_or_none(name)])
        titles.append(f"val {name}")
    if rows:
        plot_gallery(rows, ["image", "cues", "DGCN pseudo-label", "CRF label", "retrained", "ground truth"], titles,
                     path, data.class_names)

"""Stage `cues`: train the image-label classifier, compute CAMs, turn them into sparse cues; score them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from dgcn import distributed
from dgcn.cam import cam_label_map, compute_cams
from dgcn.cues import (
    cue_quality,
    cues_from_cams,
    differing_label_sets,
    import_published_cues,
    load_saliency,
    write_cue_store,
)
from dgcn.data.crops import NamedFiles
from dgcn.data.loading import resize_labels
from dgcn.data.palette import voc_palette
from dgcn.errors import InputError
from dgcn.metrics import ConfusionMatrix
from dgcn.model_files import save_model
from dgcn.models.registry import build_classifier
from dgcn.precision import Precision
from dgcn.progress import progress
from dgcn.storage import LabelStore, LabelStoreWriter, staged_directory
from dgcn.training.supervised import train_classifier
from stages.manifest import Manifest, check_utf8_names
from stages.options import CONFIG, DEFAULTS, MANIFEST
from stages.params import load_params
from stages.runtime import (
    provenance,
    resolve_device,
    seed_everything,
    set_threads,
    summary,
    write_csv,
    write_json,
)
from stages.schemas.cues import CuesParams


def main(
    out: Path = typer.Option(..., help="folder for classifier.pt, cues.zarr, metrics.json, train_log.csv"),
    manifest: Path = MANIFEST,
    config: Path = CONFIG,
    defaults: Path = DEFAULTS,
) -> None:
    """Cues from image-level labels: classifier -> CAMs -> foreground/background seeds on the network grid.

    Also the plain-CAM labels (cam_labels.zarr), the baseline that retrain_labels.source: cam trains on."""
    settings = load_params("cues", CuesParams, config=config, defaults=defaults)
    data = Manifest.load(manifest)
    set_threads()
    seed_everything(settings.seed)
    train = data.train
    labels = train.image_labels()
    saliency = _saliency_folder(settings, data.root)  # checked before the long part
    device = distributed.join(resolve_device(settings.device, "cues.device"))
    precision = Precision(settings.amp, device, "cues.amp")
    model = build_classifier(settings.arch, len(data.class_names) - 1, pretrained=settings.pretrained,
                             **settings.arch_options).to(device)
    optimizer = settings.optimizer
    # The classifier trains on square inputs, read per sample; its CAMs are computed at each image's own aspect ratio
    # below.
    history = train_classifier(model, NamedFiles(train.dataset.image, train.names), labels[:, 1:],
                               input_size=settings.input_size, epochs=settings.epochs, batch_size=settings.batch_size,
                               seed=settings.seed, data_workers=settings.data_workers, lr=optimizer.lr,
                               weight_decay=optimizer.weight_decay, optimizer=optimizer.name,
                               momentum=optimizer.momentum, head_lr_mult=optimizer.head_lr_mult, precision=precision)
    if not distributed.is_main():  # rank 0 computes the CAMs and writes the artifacts
        return
    cams = compute_cams(model, train.dataset.image, train.names, input_size=settings.input_size,
                        scales=settings.scales)
    grid = cams.shape[-1]
    extra: dict[str, int] = {}
    if settings.published_cues is not None:
        cues, cue_labels = _published_cues(settings, data.root, train.names, len(data.class_names), grid)
        # The pickle's own labels go with its cues; where the masks say otherwise, count it instead of failing.
        extra["published_label_mismatch"] = len(differing_label_sets(cue_labels, labels))
    else:
        cue_labels = labels
        cues = np.stack([
            cues_from_cams(cam, np.flatnonzero(row[1:]) + 1, fg_threshold=settings.fg_threshold,
                           bg_threshold=settings.bg_threshold, saliency_threshold=settings.saliency_threshold,
                           saliency=None if saliency is None else load_saliency(saliency / f"{name}.png", size, grid))
            for cam, row, name, size in zip(cams, labels, train.names, train.sizes, strict=True)])
    with staged_directory(out) as folder:
        save_model(folder / "classifier.pt", model, kind="classifier", arch=settings.arch,
                   num_outputs=len(data.class_names) - 1, options=settings.arch_options)
        origin = data.stamp(provenance("cues", [settings], [manifest, *_sources(settings, data.root, saliency)]))
        write_cue_store(folder / "cues.zarr", train.names, cues, cue_labels, list(data.class_names), provenance=origin)
        _write_cam_labels(folder / "cam_labels.zarr", data, cams, settings.cam_background, origin)
        metrics = _score(data, cues, LabelStore(folder / "cam_labels.zarr")) | extra
        write_json(folder / "metrics.json", metrics)
        write_csv(folder / "train_log.csv", history.epochs)
    summary("cues", images=len(train.names), grid=f"{grid}x{grid}", **metrics)


def _write_cam_labels(path: Path, data: Manifest, cams: np.ndarray, cam_background: float,
                      origin: dict[str, str]) -> None:
    """The plain-CAM baseline's label map of every training image, at its size (what `retrain_labels.source: cam`
    trains on)."""
    train = data.train
    with LabelStoreWriter(path, train.names, train.sizes, list(data.class_names),
                          voc_palette()[:len(data.class_names)], provenance=origin) as writer:
        for start in range(0, len(train.names), writer.shard_images):
            rows = range(start, min(start + writer.shard_images, len(train.names)))
            writer.write(start, [cam_label_map(cams[i], np.asarray(train.classes[i], dtype=np.int64), cam_background,
                                               train.sizes[i]) for i in rows])


def _saliency_folder(settings: CuesParams, root: Path) -> Path | None:
    """The folder of <id>.png saliency maps (cues.saliency_dir, relative to the data root); None for a CAM background
    or imported cues."""
    if settings.saliency_dir is None or settings.published_cues is not None:
        return None
    folder = root / settings.saliency_dir
    if not folder.is_dir():
        raise FileNotFoundError(f"saliency folder not found: {folder} (cues.saliency_dir, relative to the data root; "
                                "null gives a CAM-only background)")
    check_utf8_names(folder)
    return folder


def _sources(settings: CuesParams, root: Path, saliency: Path | None) -> list[Path]:
    """The files besides the manifest that the cues come from: the saliency maps, or the imported pickle and list."""
    if settings.published_cues is not None:
        return [root / path for path in (settings.published_cues, settings.published_list) if path is not None]
    return [] if saliency is None else [saliency]


def _published_cues(settings: CuesParams, root: Path, names: list[str], num_classes: int,
                    grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Cues (N, C, G, G) and the pickle's own image labels (N, C) imported from a DSRG/DGCN pickle (paths relative to
    the data root), reordered to the manifest's training ids."""
    if settings.published_list is None:
        raise InputError("cues.published_list must name input_list.txt when cues.published_cues is set")
    pickle_path = root / settings.published_cues
    published_names, published, published_labels = import_published_cues(
        pickle_path, root / settings.published_list, num_classes=num_classes, grid=grid)
    position = {name: i for i, name in enumerate(published_names)}
    missing = [name for name in names if name not in position]
    if missing:
        raise InputError(f"{pickle_path}: no cues for training image '{missing[0]}'")
    order = [position[name] for name in names]
    return published[order], published_labels[order]


def _score(data: Manifest, cues: np.ndarray, cam_labels: LabelStore) -> dict:
    """The fraction of grid cells with a cue; on the images with a mask: cue precision/coverage and cues_miou on the
    grid, the plain-CAM baseline mIoU at full resolution (its label maps read back from the store just written)."""
    train, num_classes, grid = data.train, len(data.class_names), cues.shape[-1]
    figures = {"cue_labelled_fraction": round(float((cues.sum(axis=1) > 0).mean()), 4)} | train.scoring("cues")
    scored = train.scored()
    if not scored:
        return figures
    on_cues, cam = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
    quality = None
    for i in progress(scored, desc="scoring cues"):
        gt = train.dataset.mask(train.names[i])
        gt_grid = resize_labels(gt, (grid, grid))
        quality = cue_quality(cues[i], gt_grid) if quality is None else quality + cue_quality(cues[i], gt_grid)
        single = cues[i].sum(axis=0) == 1
        on_cues.add(np.where(single, gt_grid, 255).astype(np.uint8), cues[i].argmax(axis=0).astype(np.uint8))
        cam.add(gt, cam_labels[i])
    return figures | {"cue_precision": round(float(quality.precision), 4),
                      "cue_coverage": round(float(quality.coverage), 4), "cues_miou": on_cues.miou(),
                      "cam_baseline_miou": cam.miou()}

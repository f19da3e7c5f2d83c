"""Stage `cues`: train the image-label classifier, compute CAMs, turn them into sparse cues; or read another
method's CAMs or seeds from files instead (cues.source). Score them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import typer

from dgcn import distributed
from dgcn.cam import cam_grid, cam_label_map, compute_cams
from dgcn.cue_files import (
    cams_on_grid,
    class_indices,
    file_paths,
    read_cam_array,
    read_irn_cams,
    read_seed_map,
    seeds_on_grid,
)
from dgcn.cues import (
    cue_label_map,
    cue_quality,
    cues_from_cams,
    differing_label_sets,
    import_published_cues,
    load_saliency,
    write_cue_store,
)
from dgcn.data.augment import zoom_nearest
from dgcn.data.crops import NamedFiles
from dgcn.data.generic import read_class_list
from dgcn.data.loading import resize_labels
from dgcn.data.palette import IGNORE_INDEX, voc_palette
from dgcn.errors import InputError
from dgcn.metrics import ConfusionMatrix
from dgcn.model_files import save_absent_model, save_model
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
    out: Path = typer.Option(..., help="folder for classifier.pt, cues.zarr, cam_labels.zarr, metrics.json, "
                                       "train_log.csv"),
    manifest: Path = MANIFEST,
    config: Path = CONFIG,
    defaults: Path = DEFAULTS,
) -> None:
    """Cues from image-level labels: classifier -> CAMs -> foreground/background seeds on the network grid.

    Or (cues.source) from another method's files: CAMs through the same rules, or seeds as they are. Also the
    plain-CAM labels (cam_labels.zarr), the baseline that retrain_labels.source: cam trains on (the seeds themselves
    when the files hold seeds)."""
    settings = load_params("cues", CuesParams, config=config, defaults=defaults)
    data = Manifest.load(manifest)
    set_threads()
    seed_everything(settings.seed)
    saliency = _saliency_folder(settings, data.root)  # checked before the long part
    model, history = (None, []) if settings.source != "classifier" else _train_classifier(settings, data)
    if not distributed.is_main():  # rank 0 computes the CAMs and writes the artifacts
        return
    train = data.train
    grid = cam_grid(_untrained_classifier(settings, data) if model is None else model, settings.input_size)
    cues, image_labels, baseline, extra = _cues(settings, data, model, grid, saliency)
    with staged_directory(out) as folder:
        if model is None:
            save_absent_model(folder / "classifier.pt", kind="classifier", reason=(
                f"cues.source is {settings.source}, so no classifier was trained; set init_from_classifier: false "
                "(train_dgcn, retrain) or give --classifier the classifier.pt of a cues.source: classifier run"))
        else:
            save_model(folder / "classifier.pt", model, kind="classifier", arch=settings.arch,
                       num_outputs=len(data.class_names) - 1, options=settings.arch_options)
        origin = data.stamp(provenance("cues", [settings], [manifest, *_sources(settings, data.root, saliency)]))
        write_cue_store(folder / "cues.zarr", train.names, cues, image_labels, list(data.class_names),
                        provenance=origin)
        _write_label_maps(folder / "cam_labels.zarr", data, baseline, origin)
        scored_baseline = None if _NO_CAMS.keys() <= extra.keys() else LabelStore(folder / "cam_labels.zarr")
        metrics = _score(data, cues, scored_baseline) | extra
        write_json(folder / "metrics.json", metrics)
        write_csv(folder / "train_log.csv", history)
    summary("cues", images=len(train.names), grid=f"{grid}x{grid}", source=settings.source, **metrics)


def _cues(settings: CuesParams, data: Manifest, model: torch.nn.Module | None, grid: int,
          saliency: Path | None) -> tuple[np.ndarray, np.ndarray, Callable[[int], np.ndarray], dict]:
    """From cues.source: the cues (N, C, G, G), the image labels that go with them (N, C), the baseline's label map of
    image i at its size, and the source's own figures."""
    train = data.train
    if settings.source == "dsrg":
        cues, image_labels = _published_cues(settings, data.root, train.names, len(data.class_names), grid)
        # The pickle's own labels go with its cues; where the masks say otherwise, count it instead of failing.
        mismatch = {"published_label_mismatch": len(differing_label_sets(image_labels, train.image_labels()))}
        return cues, image_labels, functools.partial(_zoomed_cues, cues, train.sizes), mismatch | _NO_CAMS
    if settings.source == "seed_png":
        seed_files = _SeedFiles(settings, data)
        cues, mismatch = seed_files.cues(grid)
        return cues, train.image_labels(), seed_files.seeds, {"file_label_mismatch": mismatch} | _NO_CAMS
    if model is None:
        cams, present, mismatch = _file_cams(settings, data, grid)
        extra = {} if mismatch is None else {"file_label_mismatch": mismatch}
    else:
        cams = compute_cams(model, train.dataset.image, train.names, input_size=settings.input_size,
                            scales=settings.scales)
        present, extra = [np.asarray(classes, dtype=np.int64) for classes in train.classes], {}
    cues = np.stack([
        cues_from_cams(cam, classes, fg_threshold=settings.fg_threshold, bg_threshold=settings.bg_threshold,
                       saliency_threshold=settings.saliency_threshold,
                       saliency=None if saliency is None else load_saliency(saliency / f"{name}.png", size, grid))
        for cam, classes, name, size in zip(cams, present, train.names, train.sizes, strict=True)])
    baseline = functools.partial(_cam_labels, cams, present, settings.cam_background, train.sizes)
    return cues, train.image_labels(), baseline, extra


# cam_labels.zarr of seed files holds the seeds: no plain-CAM baseline to score
_NO_CAMS = {"cam_baseline_not_scored": "the cues are seeds, not CAMs (cam_labels.zarr holds the seeds)"}


def _train_classifier(settings: CuesParams, data: Manifest) -> tuple[torch.nn.Module, list[dict]]:
    """The CAM classifier trained on the image labels (every rank takes part), and its log per epoch."""
    train = data.train
    device = distributed.join(resolve_device(settings.device, "cues.device"))
    precision = Precision(settings.amp, device, "cues.amp")
    model = build_classifier(settings.arch, len(data.class_names) - 1, pretrained=settings.pretrained,
                             **settings.arch_options).to(device)
    optimizer = settings.optimizer
    # The classifier trains on square inputs, read per sample; its CAMs are computed at each image's own aspect ratio.
    history = train_classifier(model, NamedFiles(train.dataset.image, train.names), train.image_labels()[:, 1:],
                               input_size=settings.input_size, epochs=settings.epochs, batch_size=settings.batch_size,
                               seed=settings.seed, data_workers=settings.data_workers, lr=optimizer.lr,
                               weight_decay=optimizer.weight_decay, optimizer=optimizer.name,
                               momentum=optimizer.momentum, head_lr_mult=optimizer.head_lr_mult, precision=precision)
    return model, history.epochs


def _untrained_classifier(settings: CuesParams, data: Manifest) -> torch.nn.Module:
    """cues.arch built without weights, on the CPU: with imported cues it only sets the cue grid (its CAM grid at
    cues.input_size), so that the grid does not depend on where the cues come from."""
    return build_classifier(settings.arch, len(data.class_names) - 1, pretrained=None, **settings.arch_options)


def _file_classes(settings: CuesParams, data: Manifest) -> np.ndarray:
    """The data set's index of each object class the files count (cues.class_list, else the data set's own)."""
    if settings.class_list is None:
        return np.arange(1, len(data.class_names), dtype=np.int64)
    path = data.root / settings.class_list
    return class_indices(read_class_list(path)[1:], data.class_names, str(path))


def _file_cams(settings: CuesParams, data: Manifest, grid: int) -> tuple[np.ndarray, list[np.ndarray], int | None]:
    """CAMs read from cues.path, on the cue grid: (N, C-1, G, G) float32 (0 where a class has no map), the classes
    of each image that have a map, and (irn_cam) how many images' keys differ from their labels."""
    train, classes = data.train, _file_classes(settings, data)
    cams = np.zeros((len(train.names), len(data.class_names) - 1, grid, grid), dtype=np.float32)
    present, mismatch = [], 0
    paths = file_paths(data.root / settings.path, ".npy", train.names)
    for i, path in enumerate(progress(paths, desc="reading CAMs")):
        labels = np.asarray(train.classes[i], dtype=np.int64)
        if settings.source == "irn_cam":
            own, maps = read_irn_cams(path, classes, train.sizes[i])
            mismatch += set(own.tolist()) != set(labels.tolist())
        else:
            own, maps = read_cam_array(path, classes, labels, train.sizes[i])
        kept = np.isin(own, labels)  # a map of a class the image's labels lack is not used
        cams[i, own[kept] - 1] = cams_on_grid(maps[kept], grid)
        present.append(np.sort(own[kept]))
    return cams, present, mismatch if settings.source == "irn_cam" else None


class _SeedFiles:
    """The seed PNGs of cues.path: (H, W) seed maps in the data set's classes, seeds of a class the image's labels
    lack removed (255 = no cue)."""

    def __init__(self, settings: CuesParams, data: Manifest) -> None:
        self.train, self.num_classes = data.train, len(data.class_names)
        self.classes = _file_classes(settings, data)
        self.paths = file_paths(data.root / settings.path, ".png", self.train.names)

    def _read(self, i: int) -> tuple[np.ndarray, bool]:
        """Image i's seeds and whether some were of a class its labels lack."""
        seeds = read_seed_map(self.paths[i], self.classes, self.train.sizes[i])
        foreign = ~np.isin(seeds, [0, *self.train.classes[i], IGNORE_INDEX])
        return np.where(foreign, IGNORE_INDEX, seeds).astype(np.uint8), bool(foreign.any())

    def seeds(self, i: int) -> np.ndarray:
        """Image i's seed map (what cam_labels.zarr holds)."""
        return self._read(i)[0]

    def cues(self, grid: int) -> tuple[np.ndarray, int]:
        """(N, C, G, G) uint8 cues, and how many images had seeds of a class their labels lack."""
        cues = np.zeros((len(self.paths), self.num_classes, grid, grid), dtype=np.uint8)
        mismatch = 0
        for i in progress(range(len(self.paths)), desc="reading seeds"):
            seeds, foreign = self._read(i)
            cues[i] = seeds_on_grid(seeds, self.num_classes, grid)
            mismatch += foreign
        return cues, mismatch


def _cam_labels(cams: np.ndarray, present: list[np.ndarray], cam_background: float, sizes: list[tuple[int, int]],
                i: int) -> np.ndarray:
    """The plain-CAM baseline's label map of training image i, at its size."""
    return cam_label_map(cams[i], present[i], cam_background, sizes[i])


def _zoomed_cues(cues: np.ndarray, sizes: list[tuple[int, int]], i: int) -> np.ndarray:
    """Image i's cues as a label map (255 where none) at its size, nearest neighbour."""
    return zoom_nearest(cue_label_map(cues[i]), sizes[i])


def _write_label_maps(path: Path, data: Manifest, label_map: Callable[[int], np.ndarray],
                      origin: dict[str, str]) -> None:
    """cam_labels.zarr: label_map(i) of every training image i, at its size (what `retrain_labels.source: cam`
    trains on)."""
    train = data.train
    with LabelStoreWriter(path, train.names, train.sizes, list(data.class_names),
                          voc_palette()[:len(data.class_names)], provenance=origin) as writer:
        for start in range(0, len(train.names), writer.shard_images):
            writer.write(start, [label_map(i) for i in range(start, min(start + writer.shard_images,
                                                                         len(train.names)))])


def _saliency_folder(settings: CuesParams, root: Path) -> Path | None:
    """The folder of <id>.png saliency maps (cues.saliency_dir, relative to the data root); None for a CAM background
    or imported seeds."""
    if settings.saliency_dir is None or settings.source in ("dsrg", "seed_png"):
        return None
    folder = root / settings.saliency_dir
    if not folder.is_dir():
        raise FileNotFoundError(f"saliency folder not found: {folder} (cues.saliency_dir, relative to the data root; "
                                "null gives a CAM-only background)")
    check_utf8_names(folder)
    return folder


def _sources(settings: CuesParams, root: Path, saliency: Path | None) -> list[Path]:
    """The files besides the manifest that the cues come from: the saliency maps, the imported files and lists."""
    files = [root / path for path in (settings.path, settings.input_list, settings.class_list) if path is not None]
    return files + ([] if saliency is None else [saliency])


def _published_cues(settings: CuesParams, root: Path, names: list[str], num_classes: int,
                    grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Cues (N, C, G, G) and the pickle's own image labels (N, C) imported from a DSRG/DGCN pickle (paths relative to
    the data root), reordered to the manifest's training ids."""
    pickle_path = root / settings.path
    published_names, published, published_labels = import_published_cues(
        pickle_path, root / settings.input_list, num_classes=num_classes, grid=grid)
    position = {name: i for i, name in enumerate(published_names)}
    missing = [name for name in names if name not in position]
    if missing:
        raise InputError(f"{pickle_path}: no cues for training image '{missing[0]}'")
    order = [position[name] for name in names]
    return published[order], published_labels[order]


def _score(data: Manifest, cues: np.ndarray, cam_labels: LabelStore | None) -> dict:
    """The fraction of grid cells with a cue; on the images with a mask: cue precision/coverage and cues_miou on the
    grid, the plain-CAM baseline mIoU at full resolution (its label maps read back from the store just written; None:
    no CAMs, not scored)."""
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
        if cam_labels is not None:
            cam.add(gt, cam_labels[i])
    figures |= {"cue_precision": round(float(quality.precision), 4), "cue_coverage": round(float(quality.coverage), 4),
                "cues_miou": on_cues.miou()}
    return figures if cam_labels is None else figures | {"cam_baseline_miou": cam.miou()}

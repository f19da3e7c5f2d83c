"""Stage `prepare`: validate a data set (VOC layout, your own images and tags, or COCO) and write the manifest (ids,
sizes, classes, which images have masks, per split) that every later stage reads."""

from __future__ import annotations

from pathlib import Path

import typer

from dgcn.data.coco import CocoDataset, CocoInstances
from dgcn.data.files import STRICT, Reader, SampleCheck
from dgcn.data.generic import FolderDataset, derived_classes, read_class_list, read_labels, split_rows
from dgcn.data.palette import SYNTHETIC_CLASSES, VOC_CLASSES
from dgcn.data.synthetic import contact_sheet
from dgcn.data.voc import SampleInfo, VOCDataset, check_disjoint
from dgcn.storage import staged_directory
from stages.manifest import check_utf8_names
from stages.options import CONFIG, DEFAULTS
from stages.params import load_params
from stages.runtime import summary, write_json
from stages.schemas.prepare import PrepareParams

CLASS_NAMES = {"synthetic": SYNTHETIC_CLASSES, "voc": VOC_CLASSES}

# What a format reads: the class names, and per role (train, val) the reader's keywords, the reader and its images.
Prepared = tuple[tuple[str, ...], dict[str, tuple[dict, Reader, list[SampleInfo]]]]


def main(
    root: Path = typer.Option(..., help="the data set's root folder, e.g. data/voc12"),
    out: Path = typer.Option(..., help="folder for manifest.json, metrics.json, contact_sheet.png"),
    config: Path = CONFIG,
    defaults: Path = DEFAULTS,
) -> None:
    """Validate a data set and write the manifest every later stage reads."""
    settings = load_params("prepare", PrepareParams, config=config, defaults=defaults)
    class_names, prepared = FORMATS[settings.format](root, settings)
    for _, reader, _ in prepared.values():
        check_utf8_names(reader.mask_source)
    splits = {role: {"reader": reader, "names": [info.name for info in infos],
                     "sizes": [[info.height, info.width] for info in infos],
                     "classes": [list(info.classes) for info in infos], "masked": [info.masked for info in infos]}
              for role, (reader, _, infos) in prepared.items()}
    classes = settings.classes if settings.format == "voc" else settings.format
    manifest = {"format": settings.format, "classes": classes, "root": str(root), "class_names": list(class_names),
                "splits": splits}
    with staged_directory(out) as folder:
        write_json(folder / "manifest.json", manifest)
        write_json(folder / "metrics.json", _metrics(manifest))
        contact_sheet(prepared["train"][1], splits["train"]["names"][:12], folder / "contact_sheet.png")
    summary("prepare", root=root, train=len(splits["train"]["names"]), val=len(splits["val"]["names"]),
            train_masks=sum(splits["train"]["masked"]), val_masks=sum(splits["val"]["masked"]))


def _voc(root: Path, settings: PrepareParams, check: SampleCheck = STRICT) -> Prepared:
    class_names = CLASS_NAMES[settings.classes]
    datasets = {role: VOCDataset(root, split, class_names)
                for role, split in (("train", settings.train_split), ("val", settings.val_split))}
    check_disjoint(datasets["train"], datasets["val"])  # reads only the two lists: fails before any image is opened
    return class_names, {role: ({"split": dataset.split}, dataset, dataset.validate(check))
                         for role, dataset in datasets.items()}


def _generic(root: Path, settings: PrepareParams, check: SampleCheck = STRICT) -> Prepared:
    layout = settings.generic
    rows = read_labels(root / layout.labels)
    class_names = derived_classes(rows) if layout.class_list is None else read_class_list(root / layout.class_list)
    lists = None if layout.train_list is None else (root / layout.train_list, root / layout.val_list)
    roles = dict(zip(("train", "val"), split_rows(rows, lists, layout.val_fraction, layout.seed), strict=True))
    reader = {"images": str(layout.images), "masks": None if layout.masks is None else str(layout.masks)}
    dataset = FolderDataset(root, class_names, **reader)
    dataset.check_masks({row.name for row in rows})
    return class_names, {role: (reader, dataset, dataset.validate(role_rows, check))
                         for role, role_rows in roles.items()}


def _coco(root: Path, settings: PrepareParams, check: SampleCheck = STRICT) -> Prepared:
    layout = settings.coco
    instances = CocoInstances.load(root / layout.train_annotations)
    class_names = instances.class_names
    prepared = {}
    for role, images, instances_file in (("train", layout.train_images, layout.train_annotations),
                                         ("val", layout.val_images, layout.val_annotations)):
        reader = {"images": str(images), "annotations": str(instances_file)}
        dataset = CocoDataset(root, class_names, **reader, instances=instances if role == "train" else None)
        prepared[role] = (reader, dataset, dataset.validate(tagged_only=role == "train", check=check))
    return class_names, prepared


# Each format's reader; a SampleCheck other than the default reports bad images instead of raising, or reads headers
# alone (`dgcn check`).
FORMATS = {"voc": _voc, "generic": _generic, "coco": _coco}


def _metrics(manifest: dict) -> dict:
    """Images and masks per split and, per class, the fraction of training images that contain it."""
    train, val = manifest["splits"]["train"], manifest["splits"]["val"]
    counts = {name: 0 for name in manifest["class_names"][1:]}
    for classes in train["classes"]:
        for index in classes:
            counts[manifest["class_names"][index]] += 1
    return {"train_images": len(train["names"]), "val_images": len(val["names"]),
            "train_masks": sum(train["masked"]), "val_masks": sum(val["masked"]),
            "train_class_frequency": {name: round(count / len(train["names"]), 4) for name, count in counts.items()}}

"""Stage `prepare`: validate a data root in the VOC layout and write the manifest (ids, sizes, classes per split)."""

from __future__ import annotations

from pathlib import Path

import typer

from dgcn.data.palette import SYNTHETIC_CLASSES, VOC_CLASSES
from dgcn.data.synthetic import contact_sheet
from dgcn.data.voc import VOCDataset, check_disjoint
from dgcn.storage import staged_directory
from stages.options import CONFIG, DEFAULTS
from stages.params import PrepareParams, load_params
from stages.runtime import summary, write_json

CLASS_NAMES = {"synthetic": SYNTHETIC_CLASSES, "voc": VOC_CLASSES}


def main(
    root: Path = typer.Option(..., help="the data set's root folder (VOC layout), e.g. data/voc12"),
    out: Path = typer.Option(..., help="folder for manifest.json, metrics.json, contact_sheet.png"),
    config: Path = CONFIG,
    defaults: Path = DEFAULTS,
) -> None:
    """Validate a VOC-layout data root and write the manifest every later stage reads."""
    settings = load_params("prepare", PrepareParams, config=config, defaults=defaults)
    class_names = CLASS_NAMES[settings.classes]
    datasets = {role: VOCDataset(root, split, class_names)
                for role, split in (("train", settings.train_split), ("val", settings.val_split))}
    check_disjoint(datasets["train"], datasets["val"])  # reads only the two lists: fails before any image is opened
    splits = {}
    for role, dataset in datasets.items():
        infos = dataset.validate()
        splits[role] = {
            "split": dataset.split,
            "names": [info.name for info in infos],
            "sizes": [[info.height, info.width] for info in infos],
            "classes": [list(info.classes) for info in infos],
        }
    manifest = {"classes": settings.classes, "root": str(root), "class_names": list(class_names), "splits": splits}
    with staged_directory(out) as folder:
        write_json(folder / "manifest.json", manifest)
        write_json(folder / "metrics.json", _metrics(manifest))
        contact_sheet(root, splits["train"]["names"][:12], folder / "contact_sheet.png")
    summary("prepare", root=root, train=len(splits["train"]["names"]), val=len(splits["val"]["names"]))


def _metrics(manifest: dict) -> dict:
    """Images per split and, per class, the fraction of training images that contain it."""
    train = manifest["splits"]["train"]
    counts = {name: 0 for name in manifest["class_names"][1:]}
    for classes in train["classes"]:
        for index in classes:
            counts[manifest["class_names"][index]] += 1
    return {"train_images": len(train["names"]), "val_images": len(manifest["splits"]["val"]["names"]),
            "train_class_frequency": {name: round(count / len(train["names"]), 4) for name, count in counts.items()}}

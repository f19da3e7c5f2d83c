"""Stage `prepare`: generate the embedded synthetic data set, or validate a VOC root; write the manifest."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import typer

from dgcn.data.palette import SYNTHETIC_CLASSES, VOC_CLASSES
from dgcn.data.synthetic import contact_sheet, generate
from dgcn.data.voc import VOCDataset
from dgcn.storage import atomic_output, staged_directory
from stages.params import load_section, param
from stages.runtime import summary, write_json

CLASS_NAMES = {"synthetic": SYNTHETIC_CLASSES, "voc": VOC_CLASSES}


@dataclass
class SyntheticParams:
    num_train: int = param(480, range=(1, None))
    num_val: int = param(120, range=(1, None))
    image_size: int = param(96, range=(64, 512))
    seed: int = param(0, range=(0, None))


@dataclass
class PrepareParams:
    dataset: str = param("synthetic", choices=tuple(CLASS_NAMES))
    root: Path = param(Path("data/synthetic"))
    train_split: str = param("train_aug")
    val_split: str = param("val")
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (section `prepare`)"),
    out: Path = typer.Option(Path("artifacts/prepare"), help="folder for manifest.json, metrics.json, contact sheet"),
) -> None:
    """Generate the synthetic data set (dataset=synthetic) or validate a VOC-layout root (dataset=voc)."""
    config = load_section(params, "prepare", PrepareParams)
    if config.dataset == "synthetic":
        _generate_synthetic(config)
    class_names = CLASS_NAMES[config.dataset]
    splits = {}
    for role, split in (("train", config.train_split), ("val", config.val_split)):
        infos = VOCDataset(config.root, split, class_names).validate()
        splits[role] = {
            "split": split,
            "names": [info.name for info in infos],
            "sizes": [[info.height, info.width] for info in infos],
            "classes": [list(info.classes) for info in infos],
        }
    manifest = {"dataset": config.dataset, "root": str(config.root), "class_names": list(class_names),
                "splits": splits}
    with staged_directory(out) as folder:
        write_json(folder / "manifest.json", manifest)
        write_json(folder / "metrics.json", _metrics(manifest))
        sheet_ids = splits["train"]["names"][:12]
        contact_sheet(config.root, sheet_ids, folder / "contact_sheet.png")
    summary("prepare", dataset=config.dataset, train=len(splits["train"]["names"]), val=len(splits["val"]["names"]))


def _generate_synthetic(config: PrepareParams) -> None:
    """Generate into a temporary folder beside the root, then swap it in."""
    settings = config.synthetic
    with atomic_output(config.root) as tmp:
        tmp.mkdir(parents=True)
        generate(tmp, num_train=settings.num_train, num_val=settings.num_val, image_size=settings.image_size,
                 seed=settings.seed)
        if config.root.exists():
            shutil.rmtree(config.root)


def _metrics(manifest: dict) -> dict:
    """Images per split and, per class, the fraction of training images that contain it."""
    train = manifest["splits"]["train"]
    counts = {name: 0 for name in manifest["class_names"][1:]}
    for classes in train["classes"]:
        for index in classes:
            counts[manifest["class_names"][index]] += 1
    return {"train_images": len(train["names"]), "val_images": len(manifest["splits"]["val"]["names"]),
            "train_class_frequency": {name: round(count / len(train["names"]), 4) for name, count in counts.items()}}

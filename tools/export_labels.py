"""`export-labels`: a label store (pseudo_labels.zarr, crf_labels.zarr, cam_labels.zarr) as palette PNGs in the VOC
layout, which mmsegmentation, detectron2 and torchvision-style loaders read as they are.

Layout of the folder written (all at once: a failure leaves no partial folder):
- `SegmentationClass/<stem>.png`: one palette PNG per image at its size, pixel value = class index, 255 = no label;
  palette = the store's class colours, the VOC colours beyond them (255 cream, as in VOC's masks);
- `ImageSets/Segmentation/<split>.txt`: the image stems, one per line, in the store's order;
- `class_names.txt`: the class names, line i = class index i (background first).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from PIL import Image

from dgcn.data.files import file_stems
from dgcn.data.palette import voc_palette
from dgcn.errors import InputError
from dgcn.progress import progress
from dgcn.storage import LabelStore, staged_directory


def png_palette(class_colours: np.ndarray) -> list[int]:
    """The 768 palette values of a label PNG: the classes' colours, then the VOC colours (255: cream)."""
    palette = voc_palette()
    palette[: len(class_colours)] = class_colours
    return palette.ravel().tolist()


def write_label_png(path: Path, labels: np.ndarray, palette: list[int]) -> None:
    """An (H, W) uint8 label map as a palette PNG: the pixel values are the labels."""
    image = Image.fromarray(labels, mode="P")
    image.putpalette(palette)
    image.save(path)


def main(
    store: Path = typer.Option(..., help="a label store: the export's pseudo_labels.zarr, the crf stage's "
                                         "crf_labels.zarr or the cues stage's cam_labels.zarr"),
    out: Path = typer.Option(..., help="folder to write: SegmentationClass/, ImageSets/Segmentation/<split>.txt, "
                                       "class_names.txt"),
    split: str = typer.Option("train", help="name of the split list under ImageSets/Segmentation/"),
) -> None:
    """Write a label store as palette PNGs in the VOC layout, with its split list and class names.

    SegmentationClass/<stem>.png (255 = no label), ImageSets/Segmentation/<split>.txt, class_names.txt."""
    if split in ("", ".", "..") or "/" in split or "\\" in split:
        raise InputError(f"--split {split!r}: a split list's name is a file name without folders")
    labels = LabelStore(store)
    stems = file_stems(labels.names, str(store))
    palette = png_palette(labels.palette)
    with staged_directory(out) as folder:
        (folder / "SegmentationClass").mkdir()
        (folder / "ImageSets/Segmentation").mkdir(parents=True)
        for stem, label_map in zip(progress(stems, desc="label PNGs"), labels, strict=True):
            write_label_png(folder / "SegmentationClass" / f"{stem}.png", np.ascontiguousarray(label_map), palette)
        (folder / "ImageSets/Segmentation" / f"{split}.txt").write_text("".join(f"{stem}\n" for stem in stems))
        (folder / "class_names.txt").write_text("".join(f"{name}\n" for name in labels.class_names))
    typer.echo(f"export-labels: {len(stems)} label PNGs of {len(labels.class_names)} classes in {out}")

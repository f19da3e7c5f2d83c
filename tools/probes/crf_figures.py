"""What the crf stage does to labels of known quality: the former hard-label unary against the evidence unary.

On the vendored real photos (tests/data/voc-mini, 3 train + 7 val), the ground-truth masks go in three ways: at full
resolution, and as the export would store them on its grid (export.input_size: null, the native size at stride 8,
e.g. 63x47 for 500x375; the table in docs was measured at the former longer side 321, 41x31) or on the former square
41x41 grid. Each row gives the mIoU of the labels as they are (for the grids: the export's pseudo-label,
`evidence_labels`), after the former crf stage (a hard label at 0.7 or 0.99, the rest spread over the image's other
classes) and after the current one (`evidence_unary` at several `crf.grown_confidence`). With --artifacts, the same
columns for a pipeline run's exported evidence (e.g. artifacts/synthetic after `dvc repro export@synthetic`). With
--markdown, the rows also go to that file as one markdown table (the README copies docs/figures/crf_voc_mini.md).

Run: python -m tools.probes.crf_figures [--artifacts artifacts/synthetic] [--markdown docs/figures/crf_voc_mini.md]
(about 2 min on 2 cores per table)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import yaml

from dgcn.crf import iter_dense_crf
from dgcn.data.voc import VOCDataset
from dgcn.evidence import evidence_from_labels, evidence_labels, iter_crf_labels
from dgcn.metrics import ConfusionMatrix
from dgcn.pseudo_labels import scale_one_shape
from dgcn.storage import Evidence, EvidenceStore

REPO = Path(__file__).resolve().parents[2]
HARD = (0.7, 0.99)
SOFT = (0.9, 0.99, 0.999)
WORKERS = 2


def hard_label_unary(labels: np.ndarray, classes: np.ndarray, num_classes: int, confidence: float) -> np.ndarray:
    """The crf stage's former unary: `confidence` on the label, the rest shared by the image's other classes; an
    ignore pixel (255) uniform over them."""
    on = confidence if classes.size > 1 else 1.0
    values = np.where(labels[None] == classes[:, None, None], on, (1 - on) / max(classes.size - 1, 1))
    probs = np.zeros((num_classes, *labels.shape), np.float32)
    probs[classes] = np.where(labels[None] == 255, 1 / classes.size, values)
    return probs


def miou(masks: Sequence[np.ndarray], labels: Iterator[np.ndarray], num_classes: int) -> float:
    scores = ConfusionMatrix(num_classes)
    for mask, label in zip(masks, labels, strict=True):
        scores.add(mask, label)
    return scores.miou()


def row(name: str, images: Callable[[], Iterator[np.ndarray]], masks: Sequence[np.ndarray],
        evidence: Sequence[Evidence], kernels: dict, num_classes: int,
        hard: Sequence[np.ndarray] | None = None) -> str:
    """Print and return one table row: labels as they are, after the hard-label CRF (on `hard`, by default the
    pseudo-labels of the evidence), after the evidence CRF."""
    pseudo = [evidence_labels(item, mask.shape)[0] for item, mask in zip(evidence, masks, strict=True)]
    figures = [miou(masks, iter(pseudo), num_classes)]
    for confidence in HARD:
        unaries = (hard_label_unary(label, item.classes, num_classes, confidence)
                   for label, item in zip(pseudo if hard is None else hard, evidence, strict=True))
        refined = (q.argmax(axis=0) for q in iter_dense_crf(images(), unaries, workers=WORKERS, **kernels))
        figures.append(miou(masks, refined, num_classes))
    for confidence in SOFT:
        refined = iter_crf_labels(images(), iter(evidence), confidence=confidence, workers=WORKERS, **kernels)
        figures.append(miou(masks, refined, num_classes))
    line = f"| {name} | " + " | ".join(f"{value:.3f}" for value in figures) + " |"
    print(line, flush=True)
    return line


def header() -> list[str]:
    """The table's two header lines."""
    columns = ["as is", *(f"hard {c}" for c in HARD), *(f"evidence {c}" for c in SOFT)]
    return ["| labels in | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]


def voc_mini(params: dict) -> list[str]:
    """The voc-mini rows, printed under their header; returns the rows."""
    images, masks, present = [], [], []
    for split in ("train_aug", "val"):
        dataset = VOCDataset(REPO / "tests/data/voc-mini", split)
        for name in dataset.names:
            images.append(dataset.image(name))
            masks.append(dataset.mask(name))
            present.append([0, *dataset.image_labels(name)])
    num_classes, kernels = 21, params["dense_crf"]
    # The export's own cut rule; null (no cut) grows nothing, as a threshold no share exceeds.
    threshold = 1.0 if params["export"]["threshold"] is None else params["export"]["threshold"]
    input_size = params["export"]["input_size"]
    scale_one = "native" if input_size is None else f"longer side {input_size}"
    grids = {
        "voc-mini ground truth, full resolution": [mask.shape for mask in masks],
        f"voc-mini ground truth on the export grid ({scale_one} / 8)": [
            tuple(-(-side // 8) for side in scale_one_shape(mask.shape, input_size)) for mask in masks],
        "voc-mini ground truth on a 41x41 grid (the former square export)": [(41, 41)] * len(masks),
    }
    print(f"voc-mini: {len(images)} photos, mIoU of the ground truth through the crf stage", *header(), sep="\n")
    rows = []
    for name, shapes in grids.items():
        evidence = [evidence_from_labels(mask, shape, classes, num_classes, threshold=threshold)
                    for mask, shape, classes in zip(masks, shapes, present, strict=True)]
        full = shapes[0] == masks[0].shape  # the masks themselves, ignore pixels included, as the issue measured
        rows.append(row(name, lambda: iter(images), masks, evidence, kernels, num_classes,
                        hard=masks if full else None))
    return rows


def pipeline_run(artifacts: Path, params: dict) -> str:
    """The row of a pipeline run's exported evidence against its train masks, printed under its header."""
    from stages.manifest import Manifest  # only here: the voc-mini table needs no pipeline

    train = Manifest.load(artifacts / "prepare/manifest.json").train
    store = EvidenceStore(artifacts / "export/evidence.zarr")
    masks = [train.dataset.mask(name) for name in train.names]
    print(f"\n{artifacts}: {len(masks)} training images, mIoU of the exported pseudo-labels through the crf stage",
          *header(), sep="\n")
    return row(f"{artifacts}: exported evidence (train)", lambda: (train.dataset.image(name) for name in train.names),
               masks, list(store), params["dense_crf"], len(store.class_names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, help="a data set's artifacts folder with prepare/ and export/")
    parser.add_argument("--markdown", type=Path, help="also write the rows to this file as one markdown table")
    args = parser.parse_args()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    rows = voc_mini(params)
    if args.artifacts is not None:
        rows.append(pipeline_run(args.artifacts, params))
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join([*header(), *rows]) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

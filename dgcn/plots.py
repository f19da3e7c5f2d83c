"""Pictures a stage leaves behind: per-class IoU bars, the confusion matrix, and label-map galleries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from dgcn.data.palette import colorize, voc_palette  # noqa: E402
from dgcn.storage import atomic_output  # noqa: E402

# Fixed metadata so the PNG bytes depend on the content only (DVC hashes them).
PNG_METADATA = {"Software": None}


def _save(figure: plt.Figure, path: Path) -> None:
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100, metadata=PNG_METADATA)
    plt.close(figure)


def plot_per_class_iou(ious: dict[str, Sequence[float]], class_names: Sequence[str], path: Path) -> None:
    """Grouped bars: one group per class, one bar per named series (e.g. pseudo-labels, retrained, upper bound)."""
    figure, axis = plt.subplots(figsize=(max(6.0, 0.6 * len(class_names) * len(ious) / 2), 4))
    width = 0.8 / len(ious)
    positions = np.arange(len(class_names))
    for k, (label, values) in enumerate(ious.items()):
        axis.bar(positions + k * width, np.nan_to_num(np.asarray(values, dtype=float)), width, label=label)
    axis.set_xticks(positions + 0.4 - width / 2, class_names, rotation=45, ha="right")
    axis.set_ylim(0, 1)
    axis.set_ylabel("IoU")
    axis.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)


# The per-epoch scores of the DGCN supervision against the masks (dgcn.training.dgcn): column -> legend.
GROWTH_SCORES = {"grown_precision": "grown supervision: precision", "grown_recall": "grown supervision: recall",
                 "cue_precision": "cues alone: precision", "cue_recall": "cues alone: recall"}


def plot_growth(epochs: Sequence[dict[str, float]], path: Path) -> None:
    """Precision and recall of the grown supervision and of the cues alone, per epoch (GROWTH_SCORES columns); a
    note instead where the rows have no such column (no masks to score against)."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    x = [row["epoch"] for row in epochs]
    scored = [key for key in GROWTH_SCORES if epochs and key in epochs[0]]
    for key in scored:
        axis.plot(x, [row[key] for row in epochs], marker="o", label=GROWTH_SCORES[key],
                  linestyle="-" if key.startswith("grown") else "--")
    if not scored:
        axis.text(0.5, 0.5, "not scored: not every training image has a mask", ha="center", va="center")
    axis.set_xlabel("epoch")
    axis.set_ylim(0, 1)
    axis.set_title("what the graph cut adds to the cues (against the train masks)", fontsize=9)
    if scored:
        axis.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def plot_confusion(conf: np.ndarray, class_names: Sequence[str], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix (rows = ground truth) as a heat map with percentages."""
    rows = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(1 + 0.5 * len(class_names), 1 + 0.45 * len(class_names)))
    axis.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if len(class_names) <= 12:
        for (i, j), value in np.ndenumerate(rows):
            axis.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                      color="white" if value > 0.5 else "black")
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(len(class_names)), class_names, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("ground truth")
    axis.set_title(title)
    figure.tight_layout()
    _save(figure, path)


def plot_gallery(rows: Sequence[Sequence[np.ndarray | None]], column_titles: Sequence[str],
                 row_titles: Sequence[str], path: Path, class_names: Sequence[str]) -> None:
    """A grid of pictures: RGB images (H, W, 3) as they are, label maps (H, W) in the VOC palette, None left blank;
    below it a legend of the colours of the classes the label maps show (and of ignore, if shown)."""
    figure, axes = plt.subplots(len(rows), len(column_titles), squeeze=False,
                                figsize=(1.8 * len(column_titles), 1.8 * len(rows) + 0.6))
    shown: set[int] = set()
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            axis = axes[r, c]
            axis.axis("off")
            if picture is not None:
                if picture.ndim == 2:
                    shown |= set(np.unique(picture).tolist())
                axis.imshow(picture if picture.ndim == 3 else colorize(picture), interpolation="nearest")
            if r == 0:
                axis.set_title(column_titles[c], fontsize=8)
        axes[r, 0].text(-0.05, 0.5, row_titles[r], transform=axes[r, 0].transAxes, rotation=90, ha="right",
                        va="center", fontsize=7)
    palette = voc_palette() / 255.0
    labels = [(index, class_names[index] if index < len(class_names) else "ignore / no cue")
              for index in sorted(shown)]
    handles = [Patch(facecolor=palette[index], edgecolor="black", linewidth=0.5, label=name) for index, name in labels]
    if handles:
        figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), len(column_titles)), fontsize=7,
                      frameon=False)
    figure.tight_layout(rect=(0, 0.06 + 0.03 * (len(handles) // max(len(column_titles), 1)), 1, 1))
    _save(figure, path)

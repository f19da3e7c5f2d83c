"""Segmentation scores from one confusion matrix accumulated over a whole split (spec section 6)."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(C, C) int64 pixel counts, rows = ground truth, columns = prediction.

    gt, pred: integer label maps of equal shape. Pixels whose gt is ignore_index are skipped (their prediction is not
    checked); any other gt or prediction value outside [0, num_classes) raises ValueError naming it.
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"gt shape {gt.shape} does not match pred shape {pred.shape}")
    gt, pred = gt.ravel(), pred.ravel()
    if not (np.issubdtype(gt.dtype, np.integer) and np.issubdtype(pred.dtype, np.integer)):
        raise ValueError(f"gt and pred must be integer label maps, got {gt.dtype} and {pred.dtype}")
    lo, hi = _value_span(gt, pred, num_classes)
    if hi - lo >= _MAX_SPAN:  # far-out values: drop ignored pixels and check directly to keep the histogram small
        valid = gt != ignore_index
        gt, pred = gt[valid], pred[valid]
        for name, values in (("ground truth", gt), ("prediction", pred)):
            _raise_outside(name, values[(values < 0) | (values >= num_classes)], num_classes, ignore_index)
        lo, hi = _value_span(gt, pred, num_classes)
    # One joint histogram over every pixel, without masking: far cheaper than compacting the valid pixels first.
    span = int(hi - lo + 1)
    # One temporary, the rest in place (fresh large buffers cost page faults); uint16 when the index fits.
    index = gt.astype(np.uint16 if lo == 0 and span * span <= 1 << 16 else np.int64)
    index -= lo
    index *= span
    np.add(index, pred, out=index, casting="unsafe")  # pred lies in [lo, hi], so index stays below span^2
    index -= lo
    joint = np.bincount(index, minlength=span * span).reshape(span, span)
    if lo <= ignore_index <= hi:
        joint[ignore_index - lo] = 0
    for name, used in (("ground truth", joint.any(axis=1)), ("prediction", joint.any(axis=0))):
        values = np.flatnonzero(used) + lo
        _raise_outside(name, values[(values < 0) | (values >= num_classes)], num_classes, ignore_index)
    return joint[-lo : num_classes - lo, -lo : num_classes - lo].astype(np.int64, copy=True)


# Widest value range histogrammed jointly (span^2 bins); uint8 maps with ignore 255 need 256.
_MAX_SPAN = 1024


def _value_span(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> tuple[int, int]:
    """(lo, hi) covering every value of gt and pred and the class range [0, num_classes)."""
    if gt.size == 0:
        return 0, num_classes - 1
    return min(int(gt.min()), int(pred.min()), 0), max(int(gt.max()), int(pred.max()), num_classes - 1)


def _raise_outside(name: str, bad: np.ndarray, num_classes: int, ignore_index: int) -> None:
    if bad.size:
        raise ValueError(f"{name} value {int(bad[0])} outside [0, {num_classes}) (ignore_index {ignore_index})")


def scores(conf: np.ndarray) -> dict[str, Any]:
    """Scores of a (C, C) confusion matrix (rows = ground truth).

    Returns miou (mean over classes present in ground truth or prediction; every such class counts, zero true positives
    included), iou / precision / recall ((C,) float64; NaN where undefined: iou for a class absent from both, precision
    for a class never predicted, recall for a class absent from ground truth), pixel_acc, and absent (the class indices
    left out of miou).
    """
    conf = np.asarray(conf, dtype=np.float64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"conf must be a square (C, C) matrix, got shape {conf.shape}")
    tp = np.diag(conf)
    gt_total = conf.sum(axis=1)
    pred_total = conf.sum(axis=0)
    union = gt_total + pred_total - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        precision = np.where(pred_total > 0, tp / pred_total, np.nan)
        recall = np.where(gt_total > 0, tp / gt_total, np.nan)
    present = union > 0
    total = conf.sum()
    return {
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "iou": iou,
        "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
        "precision": precision,
        "recall": recall,
        "absent": np.flatnonzero(~present).tolist(),
    }


class ConfusionMatrix:
    """A (C, C) confusion matrix accumulated image by image over a split, and the figures every stage reports."""

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.counts: np.ndarray = np.zeros((num_classes, num_classes), dtype=np.int64)  # rows = ground truth

    def add(self, gt: np.ndarray, pred: np.ndarray, ignore_index: int = 255) -> None:
        """Count one image: gt and pred integer label maps of equal shape (see `confusion_matrix`)."""
        self.counts += confusion_matrix(gt, pred, self.num_classes, ignore_index)

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Merge another matrix over the same classes (e.g. one per worker or per shard)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one")
        self.counts += other.counts
        return self

    def scores(self) -> dict[str, Any]:
        """`scores` of the accumulated counts."""
        return scores(self.counts)

    def miou(self) -> float:
        """mIoU rounded to 4 decimals, as the stages report it (NaN before any labelled pixel)."""
        return round(float(scores(self.counts)["miou"]), 4)

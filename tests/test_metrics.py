"""Confusion matrix and scores on hand-made label maps and matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dgcn.metrics import ConfusionMatrix, confusion_matrix, scores


def test_confusion_matrix_counts_rows_as_ground_truth_and_skips_ignore():
    gt = np.array([[0, 0, 1], [2, 255, 1]], np.uint8)
    pred = np.array([[0, 1, 1], [1, 7, 1]], np.uint8)  # 7 sits on an ignored pixel: not checked
    conf = confusion_matrix(gt, pred, num_classes=3)
    assert conf.dtype == np.int64
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]


def test_confusion_matrix_matches_a_pixel_loop():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 6, (20, 30))
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, 6, (20, 30))
    expected = np.zeros((6, 6), np.int64)
    for g, p in zip(gt.ravel(), pred.ravel(), strict=True):
        if g != 255:
            expected[g, p] += 1
    assert np.array_equal(confusion_matrix(gt, pred, 6), expected)


@pytest.mark.parametrize("bad", [-1, 3, 200])
def test_prediction_outside_range_names_the_value(bad):
    with pytest.raises(ValueError, match=rf"prediction value {bad} outside \[0, 3\)"):
        confusion_matrix(np.array([0, 1]), np.array([0, bad]), 3)


def test_ground_truth_outside_range_and_shape_mismatch_raise():
    with pytest.raises(ValueError, match="ground truth value 4"):
        confusion_matrix(np.array([4]), np.array([0]), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 3)


def test_scores_on_hand_matrix_counts_zero_tp_classes_and_lists_absent():
    conf = np.array(
        [
            [6, 2, 0, 0],  # background
            [1, 3, 0, 0],  # class 1
            [0, 0, 0, 0],  # class 2: absent from gt, predicted nowhere -> left out
            [0, 2, 0, 0],  # class 3: in gt, never right -> IoU 0 and counted
        ]
    )
    out = scores(conf)
    assert math.isclose(out["iou"][0], 6 / 9)
    assert math.isclose(out["iou"][1], 3 / 8)
    assert math.isnan(out["iou"][2])
    assert out["iou"][3] == 0.0
    assert math.isclose(out["miou"], (6 / 9 + 3 / 8 + 0) / 3)
    assert math.isclose(out["pixel_acc"], 9 / 14)
    assert math.isclose(out["precision"][1], 3 / 7) and math.isnan(out["precision"][3])
    assert math.isclose(out["recall"][0], 6 / 8) and out["recall"][3] == 0.0 and math.isnan(out["recall"][2])
    assert out["absent"] == [2]


def test_a_class_predicted_but_absent_from_the_ground_truth_counts_with_iou_zero():
    """mIoU is over the classes in ground truth or prediction: averaging over ground-truth classes alone would give
    (1 + 0.5) / 2 here."""
    conf = np.array(
        [
            [4, 0, 0],  # background: all right
            [0, 2, 2],  # class 1: half of it predicted as class 2
            [0, 0, 0],  # class 2: absent from gt, predicted on 2 pixels -> IoU 0, counted
        ]
    )
    out = scores(conf)
    assert out["iou"][2] == 0.0 and out["absent"] == []
    assert math.isclose(out["miou"], (1 + 0.5 + 0) / 3)


def test_scores_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        scores(np.zeros((2, 3)))


def test_values_at_ignored_pixels_are_never_checked_even_far_out():
    gt = np.array([0, 1, 255, 255, 1], np.int64)
    pred = np.array([0, 1, -5, 10**9, 0], np.int64)
    assert confusion_matrix(gt, pred, 2).tolist() == [[1, 0], [1, 1]]
    with pytest.raises(ValueError, match=f"prediction value {10**9} outside"):
        confusion_matrix(gt[:4], np.array([0, 10**9, 0, 0]), 2)


def test_negative_ignore_index():
    gt = np.array([[-1, 0], [1, 1]])
    pred = np.array([[7, 0], [0, 1]])
    assert confusion_matrix(gt, pred, 2, ignore_index=-1).tolist() == [[1, 0], [1, 1]]


def test_confusion_accumulator_equals_the_summed_matrices_and_rounds_miou():
    rng = np.random.default_rng(5)
    gts = [rng.integers(0, 4, size) for size in ((7, 9), (5, 5), (11, 3))]
    preds = [rng.integers(0, 4, gt.shape) for gt in gts]
    gts[1][0] = 255  # ignored row
    matrix = ConfusionMatrix(4)
    assert matrix.counts.shape == (4, 4) and matrix.counts.dtype == np.int64 and not matrix.counts.any()
    assert math.isnan(matrix.miou())
    for gt, pred in zip(gts, preds, strict=True):
        matrix.add(gt, pred.astype(np.uint8))
    expected = sum(confusion_matrix(gt, pred, 4) for gt, pred in zip(gts, preds, strict=True))
    assert matrix.counts.dtype == np.int64 and np.array_equal(matrix.counts, expected)
    assert matrix.miou() == round(float(scores(expected)["miou"]), 4)
    assert matrix.miou() != scores(expected)["miou"]  # really rounded (this draw's mIoU has more than 4 decimals)
    assert np.array_equal(matrix.scores()["iou"], scores(expected)["iou"])


def test_confusion_accumulators_merge_and_reject_other_class_counts():
    first, second = ConfusionMatrix(2), ConfusionMatrix(2)
    first.add(np.array([0, 1]), np.array([0, 0]))
    second.add(np.array([1, 1, 255]), np.array([1, 1, 0]))
    first += second
    assert first.counts.tolist() == [[1, 0], [1, 2]] and second.counts.tolist() == [[0, 0], [0, 2]]
    assert first.miou() == round((1 / 2 + 2 / 3) / 2, 4)
    with pytest.raises(ValueError, match="3-class"):
        first += ConfusionMatrix(3)
    with pytest.raises(ValueError, match="prediction value 2"):
        first.add(np.array([0]), np.array([2]))

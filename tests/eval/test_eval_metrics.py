"""Metrics against values worked out by hand (docs/architecture.md, Metrics)."""

from __future__ import annotations

import numpy as np
import pytest

from samadapter.eval.metrics import ConfusionMatrix, confusion_matrix

X = -1  # ignore in the ground truth, unlabelled in a prediction


def scored(k: int, *pairs: tuple[list[list[int]], list[list[int]]]) -> ConfusionMatrix:
    cm = ConfusionMatrix(k)
    for pred, gt in pairs:
        cm.update(np.array(pred), np.array(gt))
    return cm


def test_hand_computed_three_classes_with_ignore_and_unlabelled() -> None:
    gt = [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, X, X]]
    pred = [[0, 1, 1, 1], [0, 0, 1, X], [2, 0, 2, 0]]
    m = scored(3, (pred, gt)).metrics()
    # 10 scored pixels (2 ignore). By hand:
    # class 0: gt 4, tp 3, predicted 4 (3 right + 1 on class 2) -> IoU 3/5, acc 3/4
    # class 1: gt 4 (one left unlabelled), tp 3, predicted 4 (one on class 0) -> 3/5, 3/4
    # class 2: gt 2, tp 1, predicted 1 (the 2 on an ignore pixel does not count) -> 1/2, 1/2
    np.testing.assert_allclose(m.iou, [60, 60, 50])
    np.testing.assert_allclose(m.acc, [75, 75, 50])
    assert m.miou == pytest.approx((60 + 60 + 50) / 3)
    assert m.macc == pytest.approx((75 + 75 + 50) / 3)
    assert m.pacc == pytest.approx(70.0)  # 7 of 10
    assert m.fwiou == pytest.approx(100 * (0.6 * 4 + 0.6 * 4 + 0.5 * 2) / 10)  # 58
    assert m.unlabelled_share == pytest.approx(10.0)  # 1 of 10
    assert m.pos_gt.tolist() == [4, 4, 2]
    assert m.pos_pred.tolist() == [4, 4, 1]
    assert m.unlabelled.tolist() == [0, 1, 0]


def test_class_absent_from_ground_truth_is_left_out_even_if_predicted() -> None:
    gt = [[0, 0], [1, 1]]
    pred = [[0, 2], [1, 1]]  # class 2 predicted but never in the ground truth; class 3 neither
    m = scored(4, (pred, gt)).metrics()
    # class 0: gt 2, tp 1, pred 1 -> 1/2; class 1: 2/2
    assert m.iou[0] == pytest.approx(50) and m.iou[1] == pytest.approx(100)
    assert np.isnan(m.iou[2]) and np.isnan(m.iou[3])
    assert m.valid.tolist() == [True, True, False, False]
    assert m.miou == pytest.approx(75.0)
    assert m.macc == pytest.approx(75.0)  # acc: 1/2 and 2/2


def test_accumulated_over_images_not_averaged_per_image() -> None:
    a = ([[0, 0]], [[0, 0]])  # perfect
    b = ([[1, 1]], [[0, 1]])  # pred, gt
    m = scored(2, a, b).metrics()
    # class 0: gt 3, tp 2, pred 2 -> 2/3; class 1: gt 1, tp 1, pred 2 -> 1/2
    np.testing.assert_allclose(m.iou, [200 / 3, 50])
    assert m.miou == pytest.approx((200 / 3 + 50) / 2)
    assert m.pacc == pytest.approx(75.0)


def test_perfect_prediction_is_100_whatever_it_says_on_ignore_pixels() -> None:
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, size=(20, 30))
    gt[:4] = X
    pred = gt.copy()
    pred[:4] = rng.integers(-1, 5, size=(4, 30))
    m = scored(6, (pred, gt)).metrics()
    assert (m.miou, m.fwiou, m.macc, m.pacc, m.unlabelled_share) == (100, 100, 100, 100, 0)


def test_ignore_pixels_never_count() -> None:
    gt = np.array([[0, 1, X, X]])
    base = confusion_matrix(np.array([[0, 1, 0, 0]]), gt, 2)
    for pred in ([[0, 1, 1, 1]], [[0, 1, X, X]], [[0, 1, 1, 0]]):
        np.testing.assert_array_equal(confusion_matrix(np.array(pred), gt, 2), base)
    assert base.sum() == 2


def test_unlabelled_pixels_are_misses_not_dropped() -> None:
    m = scored(1, ([[0, X]], [[0, 0]])).metrics()
    assert m.iou[0] == pytest.approx(50.0)  # dropping the unlabelled pixel would give 100
    assert m.unlabelled_share == pytest.approx(50.0)


def test_against_a_brute_force_loop() -> None:
    rng = np.random.default_rng(1)
    k = 7
    cm = ConfusionMatrix(k)
    gts, preds = [], []
    for _ in range(3):
        gt = rng.integers(-1, k - 2, size=(15, 17))
        pred = rng.integers(-1, k, size=(15, 17))
        cm.update(pred, gt)
        gts.append(gt.ravel())
        preds.append(pred.ravel())
    g, p = np.concatenate(gts), np.concatenate(preds)
    keep = g >= 0
    g, p = g[keep], p[keep]
    m = cm.metrics()
    ious = []
    for c in range(k):
        if not (g == c).any():
            assert np.isnan(m.iou[c])
            continue
        inter = np.sum((g == c) & (p == c))
        union = np.sum((g == c) | (p == c))
        ious.append(100 * inter / union)
        assert m.iou[c] == pytest.approx(100 * inter / union)
        assert m.acc[c] == pytest.approx(100 * inter / np.sum(g == c))
    assert m.miou == pytest.approx(np.mean(ious))
    assert m.pacc == pytest.approx(100 * np.mean(g == p))
    assert m.unlabelled_share == pytest.approx(100 * np.mean(p == -1))


def test_confused_pairs_most_pixels_first_with_unlabelled() -> None:
    gt = [[0, 0, 0, 1, 1, 2]]
    pred = [[1, 1, X, 0, 1, 2]]
    pairs = scored(3, (pred, gt)).confused_pairs(top=5)
    # 0 -> 1: 2 pixels (2/3 of class 0); 0 -> unlabelled (row K=3): 1; 1 -> 0: 1
    assert pairs[0] == (0, 1, 2, pytest.approx(200 / 3))
    assert pairs[1:] == [(1, 0, 1, pytest.approx(50)), (0, 3, 1, pytest.approx(100 / 3))]


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="prediction is"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)
    with pytest.raises(ValueError, match=r"outside -1\.\.1"):
        confusion_matrix(np.full((2, 2), 2), np.zeros((2, 2), int), 2)
    with pytest.raises(ValueError):
        ConfusionMatrix(0)
    m = ConfusionMatrix(2).metrics()
    assert np.isnan(m.miou)

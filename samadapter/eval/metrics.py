"""Semantic-segmentation metrics with the definitions of detectron2's evaluator.

The definitions are restated in docs/architecture.md, Metrics.

A confusion matrix ``C[pred, gt]`` of shape ``[K + 1, K]`` is accumulated over a split with
:func:`numpy.bincount`. Ground-truth ignore pixels are dropped. Row ``K`` is the extra
"unlabelled" prediction: pixels no mask covers. They count in the ground-truth totals (as misses of
their class) and in no class's predictions, so leaving pixels unlabelled never raises an IoU.

With ``tp = diag(C)``, ``pos_gt = C.sum(0)`` (unlabelled row included), ``pos_pred`` = row sums of
the ``K`` class rows and ``union = pos_gt + pos_pred - tp``:

* per-class IoU ``tp / union`` and accuracy ``tp / pos_gt``, defined for classes with
  ``pos_gt > 0``; classes absent from the ground truth of the whole split are left out of the
  means even if predicted;
* mIoU, mAcc: means over those classes; fwIoU ``Σ IoU·pos_gt / Σ pos_gt``;
  pAcc ``Σ tp / Σ pos_gt``; unlabelled share ``C[K].sum() / Σ pos_gt``.

All reported numbers are percentages (0–100), as detectron2 prints them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ConfusionMatrix", "SegMetrics", "confusion_matrix"]


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix of one prediction.

    Args:
        pred: ``[H, W]`` int class index ``0..K-1``, or ``-1`` for unlabelled pixels.
        gt: ``[H, W]`` int class index ``0..K-1``, or ``-1`` (ignore).
        num_classes: ``K``.

    Returns:
        ``[K + 1, K]`` int64 ``C[pred, gt]``; row ``K`` counts unlabelled pixels.

    Raises:
        ValueError: different shapes, or values outside ``-1..K-1``.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction is {pred.shape} but ground truth is {gt.shape}")
    k = int(num_classes)
    g = np.asarray(gt).reshape(-1).astype(np.int64, copy=False)
    p = np.asarray(pred).reshape(-1).astype(np.int64, copy=False)
    for what, a in (("prediction", p), ("ground truth", g)):
        if a.size and (int(a.min()) < -1 or int(a.max()) >= k):
            raise ValueError(
                f"{what} holds values outside -1..{k - 1}: {int(a.min())}..{int(a.max())}"
            )
    valid = g >= 0
    rows = np.where(p[valid] < 0, k, p[valid])
    flat = np.bincount(rows * k + g[valid], minlength=(k + 1) * k)
    return flat.reshape(k + 1, k)


@dataclass
class SegMetrics:
    """Metrics of one method on one split (percentages, NaN where undefined).

    Attributes:
        miou: mean IoU over classes present in the ground truth.
        fwiou: frequency-weighted IoU.
        macc: mean per-class accuracy.
        pacc: pixel accuracy.
        unlabelled_share: share of ground-truth pixels left unlabelled by the prediction.
        iou: ``[K]`` per-class IoU, NaN for classes absent from the ground truth.
        acc: ``[K]`` per-class accuracy, NaN likewise.
        tp: ``[K]`` correctly labelled pixels.
        pos_gt: ``[K]`` ground-truth pixels.
        pos_pred: ``[K]`` predicted pixels (unlabelled not counted).
        unlabelled: ``[K]`` ground-truth pixels of each class left unlabelled.
    """

    miou: float
    fwiou: float
    macc: float
    pacc: float
    unlabelled_share: float
    iou: np.ndarray
    acc: np.ndarray
    tp: np.ndarray
    pos_gt: np.ndarray
    pos_pred: np.ndarray
    unlabelled: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """``[K]`` bool: classes with ground truth, the ones the means are over."""
        return self.pos_gt > 0

    def headline(self) -> dict[str, float]:
        """``{"mIoU", "fwIoU", "mAcc", "pAcc", "unlabelled"}`` as plain floats."""
        return {
            "mIoU": self.miou,
            "fwIoU": self.fwiou,
            "mAcc": self.macc,
            "pAcc": self.pacc,
            "unlabelled": self.unlabelled_share,
        }


class ConfusionMatrix:
    """A ``[K + 1, K]`` confusion matrix accumulated image by image (see the module docstring).

    Args:
        num_classes: ``K``.
    """

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.matrix = np.zeros((self.num_classes + 1, self.num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Add one image.

        Args:
            pred: ``[H, W]`` class index or ``-1`` (unlabelled).
            gt: ``[H, W]`` class index or ``-1`` (ignore).

        Returns:
            the image's own ``[K + 1, K]`` matrix.
        """
        m = confusion_matrix(pred, gt, self.num_classes)
        self.matrix += m
        return m

    def metrics(self) -> SegMetrics:
        """The metrics of everything added so far (docs/architecture.md, Metrics)."""
        k = self.num_classes
        c = self.matrix.astype(np.float64)
        tp = np.diagonal(c[:k]).copy()
        pos_gt = c.sum(axis=0)
        pos_pred = c[:k].sum(axis=1)
        union = pos_gt + pos_pred - tp
        valid = pos_gt > 0
        iou = np.full(k, np.nan)
        acc = np.full(k, np.nan)
        iou[valid] = tp[valid] / union[valid]
        acc[valid] = tp[valid] / pos_gt[valid]
        total = pos_gt.sum()
        if valid.any():
            miou = float(iou[valid].mean())
            macc = float(acc[valid].mean())
            fwiou = float((iou[valid] * pos_gt[valid]).sum() / total)
            pacc = float(tp.sum() / total)
            unlabelled = float(c[k].sum() / total)
        else:
            miou = macc = fwiou = pacc = unlabelled = float("nan")
        return SegMetrics(
            miou=100 * miou,
            fwiou=100 * fwiou,
            macc=100 * macc,
            pacc=100 * pacc,
            unlabelled_share=100 * unlabelled,
            iou=100 * iou,
            acc=100 * acc,
            tp=tp.astype(np.int64),
            pos_gt=pos_gt.astype(np.int64),
            pos_pred=pos_pred.astype(np.int64),
            unlabelled=self.matrix[k].copy(),
        )

    def confused_pairs(self, top: int = 20) -> list[tuple[int, int, int, float]]:
        """The largest off-diagonal entries: ground-truth pixels of one class labelled as another.

        Args:
            top: how many pairs.

        Returns:
            up to ``top`` tuples ``(gt_class, pred_class, pixels, share)``, most pixels first;
            ``pred_class == K`` stands for "unlabelled"; ``share`` is the percentage of the
            ground-truth class's pixels.
        """
        k = self.num_classes
        c = self.matrix.copy()
        c[np.arange(k), np.arange(k)] = 0
        pos_gt = self.matrix.sum(axis=0)
        flat = c.reshape(-1)
        n = min(top, int((flat > 0).sum()))
        if n == 0:
            return []
        order = np.argpartition(-flat, n - 1)[:n]
        order = order[np.lexsort((order, -flat[order]))]
        out = []
        for i in order:
            pred, gt = divmod(int(i), k)
            pixels = int(flat[i])
            out.append((gt, pred, pixels, 100.0 * pixels / max(int(pos_gt[gt]), 1)))
        return out

"""Validation of a training run: mask classification on held-out ground-truth masks.

Every ground-truth mask of every held-out image is named as the pipeline names a mask (softmax
over the classes plus void, void dropped, argmax). Besides mask accuracy, the benchmark's metric
(:mod:`samadapter.eval.metrics`) is computed on the pixels of those masks, each labelled with its
mask's predicted class: the benchmark with ground-truth masks as proposals.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from samadapter.eval.metrics import ConfusionMatrix
from samadapter.train.features import TrainingFeatures, TrainItem

# ``[Q, K + 1]`` logits (void last) of an image's masks ``[Q, H, W]``.
MaskLogits = Callable[[TrainItem, np.ndarray], torch.Tensor]


@torch.no_grad()
def validate(
    data: TrainingFeatures, logits_of: MaskLogits, num_classes: int, mask_batch: int
) -> dict[str, Any]:
    """Score every held-out ground-truth mask.

    Args:
        data: held-out images.
        logits_of: the model under training, as logits of one image's masks.
        num_classes: ``K``, the classes of the vocabulary (void excluded).
        mask_batch: masks per call of ``logits_of``.

    Returns:
        ``val_mask_acc`` (share of masks named right), ``val_mean_class_acc`` (mean over classes
        present), ``val_ce`` (cross-entropy incl. void), ``val_void_rate`` (share of masks whose
        void probability beats every class), ``val_masks``, ``chance`` (``1 / K``), and
        ``val_mIoU``, ``val_fwIoU``, ``val_mAcc``, ``val_pAcc`` (percentages).
    """
    k = num_classes
    correct = np.zeros(k, dtype=np.int64)
    total = np.zeros(k, dtype=np.int64)
    ce_sum = 0.0
    void_wins = 0
    cm = ConfusionMatrix(k)
    for i in range(len(data)):
        item = data[i]
        gt = item.gt
        preds = []
        for start in range(0, len(gt), mask_batch):
            chunk = slice(start, start + mask_batch)
            logits = logits_of(item, gt.masks[chunk])
            target = torch.from_numpy(gt.classes[chunk]).to(logits.device)
            ce_sum += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            probs = logits.softmax(dim=-1)
            best = probs[:, :k].max(dim=1)
            void_wins += int((probs[:, k] > best.values).sum())
            preds.append(best.indices.cpu().numpy())
        pred = np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
        np.add.at(total, gt.classes, 1)
        np.add.at(correct, gt.classes[pred == gt.classes], 1)
        if len(gt):
            pred_map = np.full(gt.masks.shape[1:], -1, dtype=np.int64)
            gt_map = np.full(gt.masks.shape[1:], -1, dtype=np.int64)
            for m, p, g in zip(gt.masks, pred, gt.classes, strict=True):
                pred_map[m], gt_map[m] = p, g
            cm.update(pred_map, gt_map)
    n = int(total.sum())
    present = total > 0
    head = cm.metrics().headline()
    return {
        "val_mask_acc": float(correct.sum() / n) if n else math.nan,
        "val_mean_class_acc": float((correct[present] / total[present]).mean()) if n else math.nan,
        "val_ce": ce_sum / n if n else math.nan,
        "val_void_rate": void_wins / n if n else math.nan,
        "val_masks": n,
        "chance": 1.0 / k,
        **{f"val_{key}": head[key] for key in ("mIoU", "fwIoU", "mAcc", "pAcc")},
    }


def val_line(val: dict[str, Any]) -> str:
    """One line of a validation record (``step`` and :func:`validate`'s keys) for the console."""
    return (
        f"step {val['step']}: held-out mask accuracy {val['val_mask_acc']:.3f} "
        f"(mean class {val['val_mean_class_acc']:.3f}, chance {val['chance']:.3f}, "
        f"{val['val_masks']} masks), mIoU {val['val_mIoU']:.1f}, CE {val['val_ce']:.3f}"
    )


__all__ = ["MaskLogits", "val_line", "validate"]

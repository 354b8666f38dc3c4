"""Losses and mask bookkeeping of Mask-Adapter training (docs/architecture.md, Training).

* :func:`mask_iou`, :func:`match_by_iou`: pair predicted (SAM) masks with ground-truth masks whose
  IoU exceeds 0.7, at most 8 pairs, picked at random.
* :func:`compose_mixed`: which masks go into one image's mixed-mask batch: ``16 GT + 8 predicted +
  8 matched GT`` = 32 when there are 8 pairs; free pair slots go to more ground-truth masks.
* :func:`mask_ce_loss`: cross-entropy over the vocabulary plus the void class, with a weight, of
  the logits :func:`samadapter.modeling.classifier.classification_logits` gives (as at inference).
* :func:`consistency_loss`: ``1 - cosine(predicted-mask embedding, matched GT embedding)``, the
  GT side detached.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from samadapter.train.config import TrainConfig
from samadapter.train.gt_masks import random_subset


def mask_iou(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of two sets of binary masks.

    Args:
        a: ``[A, H, W]`` bool (or 0/1).
        b: ``[B, H, W]`` bool (or 0/1), same ``H, W``.

    Returns:
        ``[A, B]`` float32 IoU; a pair of empty masks has IoU 0.
    """
    ta = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    tb = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b)
    if ta.shape[1:] != tb.shape[1:]:
        raise ValueError(f"mask sizes differ: {tuple(ta.shape[1:])} vs {tuple(tb.shape[1:])}")
    fa = ta.reshape(len(ta), -1).float()
    fb = tb.reshape(len(tb), -1).float()
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def match_by_iou(
    iou: torch.Tensor,
    generator: torch.Generator,
    thresh: float = TrainConfig.iou_thresh,
    max_pairs: int = TrainConfig.max_pairs,
) -> torch.Tensor:
    """Pick predicted/ground-truth pairs whose IoU exceeds ``thresh``.

    Each predicted mask is paired with the ground-truth mask it overlaps most; pairs with
    IoU ``> thresh`` are candidates, and at most ``max_pairs`` of them are picked at random. Two
    predicted masks may share a ground-truth mask.

    Args:
        iou: ``[P, G]`` IoU of predicted (rows) and ground-truth (columns) masks.
        generator: random source for the pick.
        thresh: IoU a pair must exceed (strictly).
        max_pairs: most pairs returned.

    Returns:
        ``[N, 2]`` int64 rows ``(pred_index, gt_index)``, ``N <= max_pairs``, in picked order.
    """
    if iou.numel() == 0 or max_pairs <= 0:
        return torch.zeros((0, 2), dtype=torch.long)
    best, gt_idx = iou.max(dim=1)
    cand = torch.nonzero(best > thresh).flatten()
    pick = cand[torch.from_numpy(random_subset(len(cand), max_pairs, generator))]
    return torch.stack([pick, gt_idx[pick]], dim=1).long()


@dataclass
class MixedBatch:
    """Which masks of one image go into a mixed-mask batch, in order.

    The batch is ``gt_only`` ground-truth masks, then the ``pairs``' predicted masks, then their
    matched ground-truth masks.

    Attributes:
        gt_only: ``[n_gt]`` indices of ground-truth masks fed on their own.
        pairs: ``[n_pairs, 2]`` ``(pred_index, gt_index)``.
    """

    gt_only: np.ndarray
    pairs: np.ndarray

    @property
    def size(self) -> int:
        """Masks in the batch: ``n_gt + 2 * n_pairs``."""
        return len(self.gt_only) + 2 * len(self.pairs)

    def pred_rows(self) -> np.ndarray:
        """Batch rows of the predicted masks."""
        return len(self.gt_only) + np.arange(len(self.pairs))

    def matched_rows(self) -> np.ndarray:
        """Batch rows of the matched ground-truth masks (same order as :meth:`pred_rows`)."""
        return len(self.gt_only) + len(self.pairs) + np.arange(len(self.pairs))

    def gt_indices(self) -> np.ndarray:
        """Ground-truth index of every batch row (a predicted mask takes its match's)."""
        g = self.pairs[:, 1] if len(self.pairs) else np.zeros(0, dtype=np.int64)
        return np.concatenate([self.gt_only, g, g]).astype(np.int64)


def compose_mixed(
    num_gt: int,
    pairs: torch.Tensor | np.ndarray,
    generator: torch.Generator,
    max_masks: int = TrainConfig.max_masks,
    max_pairs: int = TrainConfig.max_pairs,
) -> MixedBatch:
    """Compose one image's mixed-mask batch (docs/architecture.md, Training).

    With ``max_masks=32, max_pairs=8`` and 8 pairs this is 16 ground-truth + 8 predicted + 8
    matched ground-truth masks. With ``p < 8`` pairs the ``2 (8 - p)`` free slots hold more
    ground-truth masks (``32 - 2p`` in all); with fewer ground-truth masks than slots, all of them
    are used once. Ground-truth-only masks are drawn at random without replacement from all
    ``num_gt`` masks (a matched mask may also be drawn).

    Args:
        num_gt: ground-truth masks of the image.
        pairs: ``[N, 2]`` candidate ``(pred, gt)`` pairs from :func:`match_by_iou`; only the first
            ``max_pairs`` are used.
        generator: random source for the ground-truth pick.
        max_masks: batch size per image (32).
        max_pairs: most pairs (8).

    Returns:
        The composition.
    """
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)[: max(0, min(max_pairs, max_masks // 2))]
    n_gt = max(0, min(num_gt, max_masks - 2 * len(p)))
    return MixedBatch(gt_only=random_subset(num_gt, n_gt, generator), pairs=p)


def mask_ce_loss(logits: torch.Tensor, targets: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """Weighted cross-entropy, averaged over masks.

    Args:
        logits: ``[Q, K + 1]`` (vocabulary plus void).
        targets: ``[Q]`` int64 class indices (``K`` would be void).
        weight: multiplies the mean loss (1.0 in the warm-up, 2.0 in mixed-mask training).

    Returns:
        A scalar; ``0`` (still differentiable) when ``Q == 0``.
    """
    if len(targets) == 0:
        return logits.sum() * 0.0
    return weight * F.cross_entropy(logits.float(), targets.long())


def consistency_loss(
    pred_embeddings: torch.Tensor, gt_embeddings: torch.Tensor, weight: float = 1.0
) -> torch.Tensor:
    """``weight * mean(1 - cosine(pred, gt))`` with the ground-truth side detached.

    Args:
        pred_embeddings: ``[N, C]`` embeddings of predicted masks.
        gt_embeddings: ``[N, C]`` embeddings of their matched ground-truth masks.
        weight: multiplies the mean (5.0 in mixed-mask training).

    Returns:
        A scalar: 0 for identical directions, ``weight`` for orthogonal ones; 0 when ``N == 0``.
    """
    if pred_embeddings.shape != gt_embeddings.shape:
        raise ValueError(
            f"shapes differ: {tuple(pred_embeddings.shape)} vs {tuple(gt_embeddings.shape)}"
        )
    if len(pred_embeddings) == 0:
        return pred_embeddings.sum() * 0.0
    cos = F.cosine_similarity(pred_embeddings.float(), gt_embeddings.detach().float(), dim=-1)
    return weight * (1.0 - cos).mean()


__all__ = [
    "MixedBatch",
    "compose_mixed",
    "consistency_loss",
    "mask_ce_loss",
    "mask_iou",
    "match_by_iou",
]

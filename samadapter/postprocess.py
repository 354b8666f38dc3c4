"""Class-aware post-processing of a :class:`~samadapter.structures.SegmentationResult`.

Every function returns a **new** result (the input is not modified) with the same
``class_names`` / ``synonyms``; kept rows keep their relative order. Masks named ``unknown`` (kept
with ``--keep-unknown``) are never merged with each other (they need not be the same thing) and are
exempt from the keep rule (they were kept for being void); :func:`top_k` ranks them like any other
mask.

* :func:`merge_same_class`: one instance per group of same-class masks that overlap or touch
  (8-connectivity), or per class (``require_contact=False``, a semantic result).
* :func:`keep_near_best` / :func:`per_class_keep`: the official demo's keep rule (a mask is kept
  when, for some class, its probability exceeds ``ratio`` times the best any mask has for that
  class; see docs/architecture.md).
* :func:`top_k`: the ``k`` best-scoring masks.

Pure numpy (plus OpenCV's 3x3 dilation on the small window where two masks could touch).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from samadapter.errors import ConfigError
from samadapter.structures import UNKNOWN_NAME, SegmentationResult, masks_to_boxes_xywh

_KERNEL = np.ones((3, 3), dtype=np.uint8)


def select(result: SegmentationResult, index: np.ndarray) -> SegmentationResult:
    """The rows ``index`` of a result (an integer index array or an ``[N]`` boolean mask)."""
    idx = np.asarray(index)
    if idx.dtype == bool:
        idx = np.flatnonzero(idx)
    idx = idx.astype(np.int64)
    return dataclasses.replace(
        result,
        masks=result.masks[idx],
        class_ids=result.class_ids[idx],
        scores=result.scores[idx],
        class_scores=result.class_scores[idx],
        class_names=list(result.class_names),
        synonyms=[list(s) for s in result.synonyms],
        predicted_iou=result.predicted_iou[idx],
        stability_score=result.stability_score[idx],
        point_coords=result.point_coords[idx],
        crop_box=result.crop_box[idx],
        timings=dict(result.timings),
    )


def _unknown_rows(result: SegmentationResult) -> np.ndarray:
    """``[N]`` bool: masks named ``unknown`` (the extra class after the vocabulary's)."""
    k = result.num_classes
    if len(result.class_names) > k and result.class_names[k] == UNKNOWN_NAME:
        return np.asarray(result.class_ids == k)
    return np.zeros(len(result), dtype=bool)


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def touching_groups(masks: np.ndarray) -> list[list[int]]:
    """Groups of masks connected by overlap or 8-neighbour contact (transitively).

    A pair is checked only when its boxes, grown by one pixel, meet; then only on the window where
    the two could touch, by dilating one mask with a 3x3 square there.

    Args:
        masks: ``[n, H, W]`` bool.

    Returns:
        Lists of row indices, each sorted, ordered by their first index; every row in one group.
    """
    n = len(masks)
    if n == 0:
        return []
    xywh = masks_to_boxes_xywh(masks).astype(np.int64)
    x0, y0 = xywh[:, 0], xywh[:, 1]
    x1, y1 = x0 + xywh[:, 2], y0 + xywh[:, 3]  # exclusive
    empty = (xywh[:, 2] == 0) | (xywh[:, 3] == 0)
    near = (
        (x0[:, None] <= x1[None, :])
        & (x0[None, :] <= x1[:, None])
        & (y0[:, None] <= y1[None, :])
        & (y0[None, :] <= y1[:, None])
    )
    near &= ~empty[:, None] & ~empty[None, :]
    h, w = masks.shape[1:]
    parent = list(range(n))
    for i, j in zip(*np.nonzero(np.triu(near, k=1)), strict=True):
        ri, rj = _find(parent, int(i)), _find(parent, int(j))
        if ri == rj:
            continue
        r0, r1 = max(max(y0[i], y0[j]) - 1, 0), min(min(y1[i], y1[j]) + 1, h)
        c0, c1 = max(max(x0[i], x0[j]) - 1, 0), min(min(x1[i], x1[j]) + 1, w)
        grown = cv2.dilate(masks[i, r0:r1, c0:c1].astype(np.uint8), _KERNEL)
        if np.logical_and(grown, masks[j, r0:r1, c0:c1]).any():
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(_find(parent, i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def merge_same_class(
    result: SegmentationResult, require_contact: bool = True
) -> SegmentationResult:
    """Join masks of the same class that overlap or touch into one instance.

    Two masks touch when a pixel of one is among the 8 neighbours of a pixel of the other (as if
    one were dilated by 1 px); joining is transitive (A touches B, B touches C: one instance).

    A merged instance gets: the union of the masks; ``score`` = the members' maximum;
    ``class_scores`` = the members' rows averaged with their areas (pixel counts) as weights, i.e.
    the class distribution of an average pixel of the instance (pixels covered by two members
    count twice); SAM's fields (``predicted_iou``, ``stability_score``, ``point_coords``,
    ``crop_box``) those of the best-scoring member. Instances are ordered by their first member's
    row.

    Args:
        result: the named masks (``[N, H, W]``).
        require_contact: ``False`` merges all masks of a class into one, whether they touch or not
            (one mask per class present: a semantic result).

    Returns:
        A new result with ``M <= N`` masks; ``unknown`` masks are left as they are.
    """
    n = len(result)
    if n == 0:
        return select(result, np.zeros(0, dtype=np.int64))
    unknown = _unknown_rows(result)
    groups: list[list[int]] = [[int(i)] for i in np.flatnonzero(unknown)]
    for c in np.unique(result.class_ids[~unknown]):
        rows = np.flatnonzero((result.class_ids == c) & ~unknown)
        if require_contact:
            groups += [
                [int(rows[g]) for g in group] for group in touching_groups(result.masks[rows])
            ]
        else:
            groups.append([int(r) for r in rows])
    groups.sort(key=lambda g: g[0])
    if all(len(g) == 1 for g in groups):
        return select(result, np.array([g[0] for g in groups], dtype=np.int64))

    # Each group starts as its best-scoring member (first on ties / NaN): score = the maximum.
    best = np.array(
        [g[int(np.argmax(np.nan_to_num(result.scores[g], nan=-np.inf)))] for g in groups],
        dtype=np.int64,
    )
    out = select(result, best)
    areas = result.areas.astype(np.float64)  # of the full-size masks
    for k, members in enumerate(groups):
        if len(members) == 1:
            continue
        out.masks[k] = result.masks[members].any(axis=0)
        weights = areas[members]
        weights = (
            weights / weights.sum()
            if weights.sum() > 0
            else np.full(len(members), 1.0 / len(members))
        )
        out.class_scores[k] = (weights[:, None] * result.class_scores[members]).sum(axis=0)
    return out


def keep_near_best(probs: np.ndarray, ratio: float) -> np.ndarray:
    """The official demo's keep rule on the class probabilities of ALL masks.

    ``thr[k] = ratio * max_q probs[q, k]``; mask ``q`` is kept if ``probs[q, k] > thr[k]`` for
    ANY class ``k``. Every class's best mask is therefore kept (when its probability is
    positive), and so is any mask nearly as good as it for some class.

    Args:
        probs: ``[Q, K]`` class probabilities.
        ratio: in ``[0, 1)``; 0.8 in the demo; ``0`` keeps every mask (at 1 nothing would
            exceed its class's best, so 1 is refused).

    Returns:
        ``[Q]`` bool.

    Raises:
        ConfigError: ``ratio`` outside ``[0, 1)``.
    """
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(
            f"the keep ratio must be in [0, 1), got {ratio}",
            hint="0.8 is the official demo's; 0 keeps every mask",
        )
    q = len(probs)
    if ratio == 0 or q == 0 or probs.shape[1] == 0:
        return np.ones(q, dtype=bool)
    p = np.asarray(probs, dtype=np.float64)
    thr = ratio * np.nanmax(p, axis=0)
    return np.asarray((p > thr[None, :]).any(axis=1))


def per_class_keep(result: SegmentationResult, ratio: float = 0.8) -> SegmentationResult:
    """Keep the masks :func:`keep_near_best` keeps, judged on their ``class_scores`` rows.

    ``unknown`` masks are always kept. The rule keeps each class's best mask, so applying it
    again to its own output changes nothing.

    Args:
        result: the named masks.
        ratio: in ``[0, 1)``; 0.8 in the demo; 0 keeps every mask.

    Returns:
        A new result with the kept masks.

    Raises:
        ConfigError: ``ratio`` outside ``[0, 1)``.
    """
    keep = keep_near_best(result.class_scores, ratio) | _unknown_rows(result)
    return select(result, keep)


def top_k(result: SegmentationResult, k: int) -> SegmentationResult:
    """Keep the ``k`` masks with the highest scores (ties: earlier rows first; NaN last).

    Args:
        result: the named masks.
        k: how many to keep (``>= 0``); all masks when there are fewer.

    Returns:
        A new result with ``min(k, N)`` masks in their original order.

    Raises:
        ConfigError: a negative ``k``.
    """
    if k < 0:
        raise ConfigError(f"--top-k must be >= 0, got {k}")
    scores = np.nan_to_num(np.asarray(result.scores, dtype=np.float64), nan=-np.inf)
    order = np.argsort(-scores, kind="stable")[:k]
    return select(result, np.sort(order))

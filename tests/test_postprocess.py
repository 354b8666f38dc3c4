"""Class-aware post-processing: merging touching same-class masks, per-class keep, top-k."""

from __future__ import annotations

import numpy as np
import pytest

from samadapter.errors import ConfigError
from samadapter.postprocess import (
    keep_near_best,
    merge_same_class,
    per_class_keep,
    select,
    top_k,
    touching_groups,
)
from samadapter.structures import UNKNOWN_NAME, SegmentationResult

H, W = 30, 40
Rect = tuple[int, int, int, int]  # y0 y1 x0 x1, exclusive ends


def make(
    rects: list[Rect],
    class_ids: list[int],
    scores: list[float],
    names: tuple[str, ...] = ("cat", "dog"),
    unknown: bool = False,
) -> SegmentationResult:
    n = len(rects)
    masks = np.zeros((n, H, W), dtype=bool)
    for i, (y0, y1, x0, x1) in enumerate(rects):
        masks[i, y0:y1, x0:x1] = True
    k = len(names)
    class_scores = np.zeros((n, k), dtype=np.float32)
    for i, c in enumerate(class_ids):
        class_scores[i, min(c, k - 1)] = scores[i]
    return SegmentationResult(
        masks=masks,
        class_ids=np.array(class_ids, dtype=np.int64),
        scores=np.array(scores, dtype=np.float32),
        class_scores=class_scores,
        class_names=list(names) + ([UNKNOWN_NAME] if unknown else []),
        synonyms=[[s] for s in names],
        predicted_iou=np.arange(n, dtype=np.float32) / 10,
        stability_score=np.arange(n, dtype=np.float32) / 20,
        point_coords=np.arange(2 * n, dtype=np.float32).reshape(n, 2),
        crop_box=np.tile(np.array([0, 0, W, H], np.float32), (n, 1)),
        file_name="t.png",
        timings={"classify": 1.0},
    )


def test_touching_groups_use_8_connectivity() -> None:
    masks = make(
        [
            (0, 5, 0, 5),  # 0
            (0, 5, 5, 10),  # 1: shares an edge with 0
            (5, 8, 10, 12),  # 2: touches 1 only at a corner (diagonal)
            (20, 25, 0, 5),  # 3: 1-px gap to 4
            (20, 25, 6, 10),  # 4
            (22, 24, 8, 20),
        ],  # 5: overlaps 4
        [0] * 6,
        [0.5] * 6,
    ).masks
    assert touching_groups(masks) == [[0, 1, 2], [3], [4, 5]]
    assert touching_groups(masks[:0]) == []


def test_merge_joins_touching_masks_of_one_class_only() -> None:
    r = make(
        [(0, 5, 0, 5), (0, 5, 5, 10), (5, 10, 0, 5), (20, 25, 20, 30)],
        [0, 0, 1, 0],
        [0.6, 0.9, 0.7, 0.4],
    )
    before = r.masks.copy()
    merged = merge_same_class(r)
    assert np.array_equal(r.masks, before)  # the input is untouched
    assert len(merged) == 3
    assert merged.class_ids.tolist() == [0, 1, 0]  # ordered by first member
    assert np.array_equal(merged.masks[0], r.masks[0] | r.masks[1])
    assert np.array_equal(merged.masks[1], r.masks[2])  # the dog touches but is another class
    assert merged.scores.tolist() == pytest.approx([0.9, 0.7, 0.4])  # max of the members
    # class scores: area-weighted mean (both members 25 px here)
    np.testing.assert_allclose(merged.class_scores[0], [(0.6 + 0.9) / 2, 0.0])
    # SAM's fields from the best-scoring member (row 1)
    assert merged.predicted_iou[0] == pytest.approx(0.1)
    assert merged.point_coords[0].tolist() == [2.0, 3.0]
    assert merged.class_names == r.class_names and merged.timings == r.timings


def test_merge_weights_class_scores_by_area() -> None:
    r = make([(0, 10, 0, 10), (0, 10, 10, 15)], [0, 0], [0.8, 0.2])  # 100 px and 50 px
    merged = merge_same_class(r)
    np.testing.assert_allclose(
        merged.class_scores[0], [(100 * 0.8 + 50 * 0.2) / 150, 0.0], rtol=1e-6
    )


def test_merge_without_contact_gives_one_mask_per_class() -> None:
    r = make([(0, 5, 0, 5), (20, 25, 30, 35), (10, 12, 10, 12)], [0, 0, 1], [0.3, 0.5, 0.9])
    semantic = merge_same_class(r, require_contact=False)
    assert semantic.class_ids.tolist() == [0, 1]
    assert np.array_equal(semantic.masks[0], r.masks[0] | r.masks[1])
    assert len(merge_same_class(r)) == 3  # they do not touch


def test_unknown_masks_are_never_merged() -> None:
    r = make(
        [(0, 5, 0, 5), (0, 5, 5, 10), (10, 15, 0, 5)], [2, 2, 0], [0.2, 0.3, 0.9], unknown=True
    )
    merged = merge_same_class(r, require_contact=False)
    assert merged.labels == [UNKNOWN_NAME, UNKNOWN_NAME, "cat"]


def test_merge_of_nothing_and_of_singletons() -> None:
    r = make([(0, 5, 0, 5), (10, 15, 10, 15)], [0, 0], [0.3, 0.4])
    assert len(merge_same_class(select(r, np.zeros(2, dtype=bool)))) == 0
    same = merge_same_class(r)
    assert np.array_equal(same.masks, r.masks) and same.scores.tolist() == r.scores.tolist()


def test_per_class_keep_is_the_demo_rule() -> None:
    # one-hot rows: the rule reduces to "per class, above 0.8 x that class's best"
    r = make(
        [(0, 2, 0, 2)] * 6,
        [0, 0, 0, 1, 1, 2],
        [0.9, 0.75, 0.7, 0.5, 0.41, 0.01],
        names=("cat", "dog", "owl"),
    )
    kept = per_class_keep(r)
    # cat: 0.75 > 0.72 kept, 0.7 dropped; dog: 0.41 > 0.40 kept; owl: its best is kept
    assert kept.scores.tolist() == pytest.approx([0.9, 0.75, 0.5, 0.41, 0.01])
    assert len(per_class_keep(r, ratio=0.999)) == 3  # each class's best only
    assert len(per_class_keep(r, ratio=0.0)) == 6
    assert len(per_class_keep(kept)) == len(kept)  # applying it again changes nothing
    with pytest.raises(ConfigError):
        per_class_keep(r, ratio=1.5)
    with pytest.raises(ConfigError):
        per_class_keep(r, ratio=1.0)  # nothing is above its class's best


def test_keep_near_best_hand_worked() -> None:
    # 4 masks x 3 classes; column maxima 0.60, 0.30, 0.10 -> thresholds 0.48, 0.24, 0.08
    p = np.array(
        [
            [0.60, 0.10, 0.05],  # best of class 0
            [0.50, 0.30, 0.10],  # 0.50 > 0.48
            [0.26, 0.25, 0.04],  # 0.25 > 0.24: near-best for class 1 only
            [0.30, 0.20, 0.07],
        ]
    )  # below all three thresholds
    assert keep_near_best(p, 0.8).tolist() == [True, True, True, False]
    # at 0.85 (thresholds 0.51, 0.255, 0.085) mask 2's 0.25 no longer counts; mask 1 is still
    # the best of classes 1 and 2
    assert keep_near_best(p, 0.85).tolist() == [True, True, False, False]
    assert keep_near_best(p, 0.0).all()
    assert keep_near_best(np.zeros((0, 3)), 0.8).shape == (0,)


def test_per_class_keep_uses_full_rows_and_spares_unknown() -> None:
    r = make([(0, 2, 0, 2)] * 4, [0, 0, 2, 2], [0.0, 0.0, 0.9, 0.1], unknown=True)
    r.class_scores[:] = [[0.0, 0.0], [0.0, 0.0], [0.0, 0.05], [0.0, 0.0]]
    kept = per_class_keep(r)
    # rows with zero probability are near-best for no class; unknown masks always stay
    assert kept.labels == [UNKNOWN_NAME, UNKNOWN_NAME]
    r2 = make([(0, 2, 0, 2)] * 2, [0, 0], [0.6, 0.5])
    r2.class_scores[:] = [[0.6, 0.1], [0.5, 0.3]]  # mask 1 survives as the best "dog"
    assert len(per_class_keep(r2, ratio=0.9)) == 2


def test_top_k_keeps_the_best_in_their_order() -> None:
    r = make([(0, 2, 0, 2)] * 5, [0, 1, 0, 1, 0], [0.2, 0.9, 0.5, 0.5, 0.1])
    best = top_k(r, 3)
    assert best.scores.tolist() == pytest.approx([0.9, 0.5, 0.5])
    assert best.point_coords[:, 0].tolist() == [2.0, 4.0, 6.0]  # rows 1, 2, 3 in order
    assert len(top_k(r, 0)) == 0 and len(top_k(r, 99)) == 5
    with pytest.raises(ConfigError, match="top-k"):
        top_k(r, -1)


def test_select_with_indices_or_a_boolean_mask() -> None:
    r = make([(0, 2, 0, 2), (3, 5, 3, 5), (6, 8, 6, 8)], [0, 1, 0], [0.1, 0.2, 0.3])
    a = select(r, np.array([2, 0]))
    b = select(r, np.array([True, False, True]))
    assert a.scores.tolist() == pytest.approx([0.3, 0.1])
    assert b.scores.tolist() == pytest.approx([0.1, 0.3])
    a.masks[0, 0, 0] = True
    assert not r.masks[2, 0, 0]  # a copy

"""The result dataclass and its helpers: boxes, RLE, the einsum semantic rule."""

from __future__ import annotations

import numpy as np
import pytest

from samadapter.structures import (
    SegmentationResult,
    masks_to_boxes_xywh,
    masks_to_rle,
    rle_to_masks,
    semantic_from_scores,
)


def test_semantic_rule_by_hand() -> None:
    masks = np.zeros((2, 1, 4), dtype=bool)
    masks[0, 0, :3] = True  # pixels 0..2
    masks[1, 0, 1:] = True  # pixels 1..3
    scores = np.array([[0.6, 0.1], [0.2, 0.5]], dtype=np.float32)
    # pixel 0: only mask 0 -> class 0; pixels 1, 2: 0.8 vs 0.6 -> class 0; pixel 3: class 1
    assert semantic_from_scores(scores, masks).tolist() == [[0, 0, 0, 1]]
    assert semantic_from_scores(scores, np.zeros((2, 1, 4), bool)).tolist() == [[-1] * 4]


@pytest.mark.parametrize("max_elements", [9, 50, 1000, 1 << 24])
def test_semantic_rule_in_chunks_equals_the_einsum(max_elements: int) -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((5, 13, 17)) > 0.7
    scores = rng.random((5, 9)).astype(np.float32)
    dense = np.einsum("qc,qhw->chw", scores, masks.astype(np.float32))
    expected = np.where(masks.any(axis=0), dense.argmax(axis=0), -1)
    assert (expected == -1).any()
    np.testing.assert_array_equal(semantic_from_scores(scores, masks, max_elements), expected)
    empty = semantic_from_scores(np.zeros((0, 9), np.float32), np.zeros((0, 4, 4), bool), 3)
    assert (empty == -1).all()


def test_boxes_and_rle_round_trip() -> None:
    masks = np.zeros((3, 6, 8), dtype=bool)
    masks[0, 1:4, 2:7] = True
    masks[1, 5, 0] = True
    assert masks_to_boxes_xywh(masks).tolist() == [[2, 1, 5, 3], [0, 5, 1, 1], [0, 0, 0, 0]]
    rles = masks_to_rle(masks)
    assert all(isinstance(r["counts"], str) and r["size"] == [6, 8] for r in rles)
    np.testing.assert_array_equal(rle_to_masks(rles), masks)


def test_result_validates_row_counts_and_votes_only_for_assigned_classes() -> None:
    masks = np.zeros((2, 2, 3), dtype=bool)
    masks[0, :, :2] = True
    masks[1, :, 1:] = True
    nan = np.full(2, np.nan, np.float32)
    result = SegmentationResult(
        masks=masks, class_ids=np.array([1, 0]), scores=np.array([0.9, 0.4], np.float32),
        class_scores=np.array([[0.05, 0.9], [0.4, 0.3]], np.float32), class_names=["a", "b"],
        synonyms=[["a"], ["b"]], predicted_iou=nan, stability_score=nan,
        point_coords=np.zeros((2, 2), np.float32), crop_box=np.zeros((2, 4), np.float32))
    assert result.semantic_map().tolist() == [[1, 1, 0], [1, 1, 0]]
    assert result.areas.tolist() == [4, 4] and result.labels == ["b", "a"]
    with pytest.raises(ValueError, match="scores has 1 rows"):
        SegmentationResult(masks=masks, class_ids=np.array([1, 0]),
                           scores=np.array([0.9], np.float32), class_scores=np.zeros((2, 2)),
                           class_names=["a", "b"], synonyms=[["a"], ["b"]], predicted_iou=nan,
                           stability_score=nan, point_coords=np.zeros((2, 2)),
                           crop_box=np.zeros((2, 4)))

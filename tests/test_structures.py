"""The result dataclass and its helpers: boxes, RLE, the einsum semantic rule."""

from __future__ import annotations

import numpy as np
import pytest

from samadapter.structures import (
    SegmentationResult,
    masks_to_boxes_xywh,
    masks_to_rle,
    nearest_index,
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
        masks=masks,
        class_ids=np.array([1, 0]),
        scores=np.array([0.9, 0.4], np.float32),
        class_scores=np.array([[0.05, 0.9], [0.4, 0.3]], np.float32),
        class_names=["a", "b"],
        synonyms=[["a"], ["b"]],
        predicted_iou=nan,
        stability_score=nan,
        point_coords=np.zeros((2, 2), np.float32),
        crop_box=np.zeros((2, 4), np.float32),
    )
    assert result.semantic_map().tolist() == [[1, 1, 0], [1, 1, 0]]
    assert result.areas.tolist() == [4, 4] and result.labels == ["b", "a"]
    with pytest.raises(ValueError, match="scores has 1 rows"):
        SegmentationResult(
            masks=masks,
            class_ids=np.array([1, 0]),
            scores=np.array([0.9], np.float32),
            class_scores=np.zeros((2, 2)),
            class_names=["a", "b"],
            synonyms=[["a"], ["b"]],
            predicted_iou=nan,
            stability_score=nan,
            point_coords=np.zeros((2, 2)),
            crop_box=np.zeros((2, 4)),
        )


# -- masks at a working resolution ------------------------------------------------------------


def _random_result(masks: np.ndarray, original_size: tuple[int, int] | None) -> SegmentationResult:
    n = len(masks)
    nan = np.full(n, np.nan, np.float32)
    return SegmentationResult(
        masks=masks,
        class_ids=np.arange(n) % 3,
        scores=np.linspace(0.3, 0.9, n, dtype=np.float32),
        class_scores=np.zeros((n, 3), np.float32),
        class_names=["a", "b", "c"],
        synonyms=[["a"], ["b"], ["c"]],
        predicted_iou=nan,
        stability_score=nan,
        point_coords=np.zeros((n, 2), np.float32),
        crop_box=np.zeros((n, 4), np.float32),
        original_size=original_size,
    )


def test_nearest_index_maps_pixel_centres_and_covers_every_source_pixel() -> None:
    assert nearest_index(2, 5).tolist() == [0, 0, 1, 1, 1]  # centres 0.2 0.6 1.0 1.4 1.8 of 2
    assert nearest_index(3, 3).tolist() == [0, 1, 2]
    big = nearest_index(1024, 6000)
    assert big[0] == 0 and big[-1] == 1023
    assert set(np.diff(big).tolist()) == {0, 1}  # non-decreasing, every source row used
    with pytest.raises(ValueError):
        nearest_index(0, 4)


@pytest.mark.parametrize("size", [(37, 53), (11, 17), (100, 17)])
def test_resampled_result_equals_its_materialised_full_size_masks(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    masks = rng.random((6, 11, 17)) > 0.6
    masks[3] = False  # an empty mask
    masks[4] = False
    masks[4, 10, 16] = True  # a single corner pixel
    lazy = _random_result(masks, size)
    full = lazy.full_masks()
    assert full.shape == (6, *size) and lazy.image_size == size
    assert lazy.mask_size == (11, 17) and lazy.resampled == (size != (11, 17))
    ref = _random_result(full, None)
    np.testing.assert_array_equal(lazy.areas, full.sum(axis=(1, 2)))
    np.testing.assert_array_equal(lazy.boxes_xywh, masks_to_boxes_xywh(full))
    assert lazy.rles() == ref.rles() == masks_to_rle(full)
    np.testing.assert_array_equal(lazy.semantic_map(), ref.semantic_map())
    assert lazy.semantic_map(full_size=False).shape == (11, 17)
    sem = ref.semantic_map()
    np.testing.assert_array_equal(lazy.class_pixels(), np.bincount(sem[sem >= 0], minlength=3))
    for i, mask in enumerate(lazy.iter_full_masks()):
        np.testing.assert_array_equal(mask, full[i])
        x, y, w, h = (int(v) for v in ref.boxes_xywh[i])
        np.testing.assert_array_equal(
            lazy.full_crop(i, (x, y, w, h)), full[i, y : y + h, x : x + w]
        )


def test_upsampling_whole_blocks_and_original_size_checks() -> None:
    masks = np.zeros((1, 2, 3), dtype=bool)
    masks[0, 0, 1] = True
    lazy = _random_result(masks, (4, 6))  # exactly 2x: each pixel becomes a 2x2 block
    assert lazy.full_mask(0).astype(int).tolist() == [
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0] * 6,
        [0] * 6,
    ]
    assert lazy.areas.tolist() == [4] and lazy.boxes_xywh.tolist() == [[2, 0, 2, 2]]
    assert lazy.working_point(1, 0) == (2, 0)  # centre of the block (rounded down)
    same = _random_result(masks, (2, 3))
    assert not same.resampled and same.full_masks() is masks
    with pytest.raises(ValueError, match="smaller than the masks"):
        _random_result(masks, (1, 6))
    empty = _random_result(np.zeros((0, 5, 5), bool), (50, 50))
    assert empty.areas.shape == (0,) and empty.rles() == [] and empty.image_size == (50, 50)
    assert (empty.semantic_map() == -1).all() and empty.semantic_map().shape == (50, 50)

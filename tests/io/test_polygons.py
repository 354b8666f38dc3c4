"""Mask <-> polygon conversion: exact round trips, holes, several parts, other rasterisers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from samadapter.io.polygons import (
    bridge,
    mask_iou,
    mask_to_parts,
    mask_to_polygons,
    polygons_to_mask,
    signed_area,
)


def ring(h: int = 40, w: int = 50, outer: float = 15, inner: float = 7) -> np.ndarray:
    """``[h, w]`` annulus centred in the image."""
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(yy - h / 2, xx - w / 2)
    return (d <= outer) & (d > inner)


def two_parts(h: int = 30, w: int = 40) -> np.ndarray:
    """Two disjoint rectangles."""
    m = np.zeros((h, w), dtype=bool)
    m[3:12, 2:15] = True
    m[18:27, 20:38] = True
    return m


def fill_each(polygons: list[np.ndarray], h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w), dtype=bool)
    for p in polygons:
        out |= polygons_to_mask([p], h, w)
    return out


def ultralytics_fill(polygons: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """Like Ultralytics' polygon2mask: coordinates truncated to int32, boundary filled too."""
    out = np.zeros((h, w), dtype=np.uint8)
    for p in polygons:
        cv2.fillPoly(out, [p.astype(np.int32)], 1)
    return out.astype(bool)


def test_ring_has_one_part_with_a_hole_and_round_trips_exactly() -> None:
    mask = ring()
    parts = mask_to_parts(mask)
    assert len(parts) == 1 and len(parts[0].holes) == 1
    assert signed_area(parts[0].outer) > 0 > signed_area(parts[0].holes[0])
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 1  # the hole is bridged into the outer ring
    assert np.array_equal(polygons_to_mask(polygons, *mask.shape), mask)
    # Outer and hole rings given together also give the ring (even-odd).
    rings = [parts[0].outer, *parts[0].holes]
    assert np.array_equal(polygons_to_mask(rings, *mask.shape), mask)


def test_two_parts_split_or_joined() -> None:
    mask = two_parts()
    split = mask_to_polygons(mask)
    assert len(split) == 2
    assert np.array_equal(fill_each(split, *mask.shape), mask)
    joined = mask_to_polygons(mask, join_parts=True)
    assert len(joined) == 1
    assert np.array_equal(polygons_to_mask(joined, *mask.shape), mask)


def test_island_inside_a_hole_is_a_part_of_its_own() -> None:
    mask = ring(outer=15, inner=9)
    mask[18:23, 23:28] = True  # a dot in the hole's middle
    parts = mask_to_parts(mask)
    assert len(parts) == 2
    assert np.array_equal(polygons_to_mask(mask_to_polygons(mask, join_parts=True), 40, 50), mask)


def test_random_masks_round_trip_exactly() -> None:
    rng = np.random.default_rng(0)
    for trial in range(60):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        mask = rng.random((h, w)) < rng.random()
        if trial % 2:
            mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert np.array_equal(fill_each(mask_to_polygons(mask), h, w), mask), trial
        joined = mask_to_polygons(mask, join_parts=True)
        assert np.array_equal(polygons_to_mask(joined, h, w), mask), trial


def test_other_rasterisers_agree() -> None:
    """pycocotools (COCO / CVAT) and Ultralytics' truncating fill give the mask back."""
    for mask in (two_parts(), ring()):
        h, w = mask.shape
        polygons = mask_to_polygons(mask)
        coco = mask_utils.merge(
            mask_utils.frPyObjects([p.reshape(-1).tolist() for p in polygons], h, w)
        )
        assert np.array_equal(mask_utils.decode(coco).astype(bool), mask)
        yolo = ultralytics_fill(mask_to_polygons(mask, join_parts=True), h, w)
        assert mask_iou(yolo, mask) >= 0.95
    hole_free = two_parts()
    assert np.array_equal(
        ultralytics_fill(mask_to_polygons(hole_free), *hole_free.shape), hole_free
    )


def test_outline_sits_a_quarter_pixel_inside_the_pixel_edges() -> None:
    mask = np.zeros((6, 8), dtype=bool)
    mask[2, 3] = True
    (poly,) = mask_to_polygons(mask)
    assert sorted(map(tuple, poly.tolist())) == [
        (3.25, 2.25),
        (3.25, 2.75),
        (3.75, 2.25),
        (3.75, 2.75),
    ]
    full = np.ones((5, 7), dtype=bool)  # touching every border
    (poly,) = mask_to_polygons(full)
    assert poly.min(axis=0).tolist() == [0.25, 0.25] and poly.max(axis=0).tolist() == [6.75, 4.75]
    assert np.array_equal(polygons_to_mask([poly], 5, 7), full)


def test_empty_mask_has_no_polygons() -> None:
    assert mask_to_polygons(np.zeros((4, 4), dtype=bool)) == []
    assert not polygons_to_mask([], 4, 4).any()


def test_tolerance_simplifies_but_keeps_the_shape() -> None:
    yy, xx = np.mgrid[0:100, 0:100]
    disc = np.hypot(yy - 50, xx - 50) < 40
    exact = mask_to_polygons(disc)[0]
    simple = mask_to_polygons(disc, tolerance=1.0)[0]
    assert len(simple) < len(exact) / 3
    assert mask_iou(polygons_to_mask([simple], 100, 100), disc) >= 0.97


def test_bridge_keeps_both_rings() -> None:
    outer = np.array([[0, 0], [0, 10], [10, 10], [10, 0]], dtype=float)
    hole = np.array([[3, 3], [7, 3], [7, 7], [3, 7]], dtype=float)
    joined = bridge(outer, hole)
    assert len(joined) == len(outer) + len(hole) + 2
    filled = polygons_to_mask([joined], 10, 10)
    assert filled.sum() == 100 - 16


def test_mask_must_be_2d() -> None:
    with pytest.raises(ValueError, match="H, W"):
        mask_to_parts(np.zeros((1, 4, 4), dtype=bool))

"""Overlay rendering: colours, blending, draw order, outlines, labels, sizes."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from samadapter.io.overlay import (
    UNKNOWN_COLOR,
    class_color,
    drawing_sizes,
    label_text,
    render_overlay,
    write_overlay,
)
from samadapter.structures import SegmentationResult


def _dist(a: np.ndarray, b: tuple[int, int, int]) -> np.ndarray:
    return np.abs(a.astype(np.int64) - np.array(b)).sum(axis=-1)


def test_class_color_is_stable() -> None:
    # Hard-coded: must not change between runs, machines or Python hash seeds.
    assert class_color("cat") == (177, 213, 31)
    assert class_color("sofa") == (84, 180, 250)
    assert class_color("cat") == class_color("cat")
    assert class_color("unknown") == UNKNOWN_COLOR
    names = ["cat", "sofa", "traffic light", "person", "tree", "sky", "road", "猫"]
    colors = [class_color(n) for n in names]
    assert len(set(colors)) == len(colors)
    for c in colors:
        assert all(isinstance(v, int) and 0 <= v <= 255 for v in c)
        assert max(c) >= 0.8 * 255 - 1  # bright


def test_label_text() -> None:
    assert label_text("cat", 0.8749) == "cat 0.87"
    assert label_text("café", 0.5) == "cafe 0.50"
    assert label_text("猫", 0.5) == "? 0.50"
    assert label_text("sofa", float("nan")) == "sofa"


def test_fill_only_blends_towards_top_colour(result: SegmentationResult, image: np.ndarray) -> None:
    before = image.copy()
    out = render_overlay(image, result, alpha=0.5, outlines=False, labels=False)
    np.testing.assert_array_equal(image, before)  # input untouched
    assert out.shape == image.shape and out.dtype == np.uint8
    covered = result.masks.any(axis=0)
    np.testing.assert_array_equal(out[~covered], image[~covered])  # outside: unchanged
    sofa, cat = class_color("sofa"), class_color("cat")
    only_sofa = result.masks[0] & ~result.masks[1]
    expected = np.rint(image[only_sofa] * 0.5 + np.array(sofa) * 0.5)
    np.testing.assert_array_equal(out[only_sofa], expected.astype(np.uint8))
    assert (_dist(out[only_sofa], sofa) < _dist(image[only_sofa], sofa)).all()
    # the small cat mask lies on the big sofa: drawn on top, so cat-coloured
    both = result.masks[0] & result.masks[1]
    assert both.any()
    expected_cat = np.rint(image[both] * 0.5 + np.array(cat) * 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out[both], expected_cat)


def test_alpha_extremes(result: SegmentationResult, image: np.ndarray) -> None:
    np.testing.assert_array_equal(
        render_overlay(image, result, alpha=0.0, outlines=False, labels=False), image
    )
    opaque = render_overlay(image, result, alpha=1.0, outlines=False, labels=False)
    assert (opaque[result.masks[3]] == np.array(class_color("traffic light"))).all()
    with pytest.raises(ValueError, match="alpha"):
        render_overlay(image, result, alpha=1.5)


def test_wrong_image_shape(result: SegmentationResult, image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="image must be"):
        render_overlay(image[:30], result)
    with pytest.raises(ValueError, match="image must be"):
        render_overlay(image.astype(np.float32), result)


def test_empty_result(result: SegmentationResult, image: np.ndarray) -> None:
    empty = dataclasses.replace(
        result,
        masks=np.zeros((0, 40, 60), bool),
        class_ids=np.zeros(0, np.int64),
        scores=np.zeros(0, np.float32),
        class_scores=np.zeros((0, 3), np.float32),
        predicted_iou=np.zeros(0, np.float32),
        stability_score=np.zeros(0, np.float32),
        point_coords=np.zeros((0, 2), np.float32),
        crop_box=np.zeros((0, 4), np.float32),
    )
    np.testing.assert_array_equal(render_overlay(image, empty), image)


def test_outlines_and_labels(
    result_factory: Callable[..., SegmentationResult],
    image_factory: Callable[[int, int], np.ndarray],
) -> None:
    res = result_factory(scale=10)  # 400 x 600
    img = image_factory(400, 600)
    fill = render_overlay(img, res, outlines=False, labels=False)
    full = render_overlay(img, res)
    sofa = class_color("sofa")
    # outline: the sofa's top edge (row 50) is closer to the sofa colour than the plain fill
    assert _dist(full[50, 100:240], sofa).mean() < _dist(fill[50, 100:240], sofa).mean()
    # label "sofa 0.91": a filled box of exactly the sofa colour around its innermost point
    window = full[150:200, 120:300]
    assert (_dist(window, sofa) == 0).sum() > 300
    assert (_dist(window, (0, 0, 0)) < 60).sum() > 30  # dark text on the bright box
    # far from every mask and label: untouched
    np.testing.assert_array_equal(full[330:400, 0:420], img[330:400, 0:420])
    np.testing.assert_array_equal(full[0:40, 0:460], img[0:40, 0:460])
    # labels only touch pixels near masks
    covered = np.asarray(res.masks.any(axis=0), dtype=np.uint8)
    near = cv2.dilate(covered, np.ones((61, 121), np.uint8)) > 0
    np.testing.assert_array_equal(full[~near], img[~near])


def test_sizes_scale_with_image() -> None:
    small = drawing_sizes(200, 150)
    large = drawing_sizes(3000, 4000)
    assert small == (0.4, 1, 1)
    assert large[0] > 6 * small[0] and large[1] >= 3 and large[2] >= 5
    (_, th_small), _ = cv2.getTextSize("sofa 0.91", cv2.FONT_HERSHEY_SIMPLEX, *small[:2])
    (_, th_large), _ = cv2.getTextSize("sofa 0.91", cv2.FONT_HERSHEY_SIMPLEX, *large[:2])
    assert th_small >= 8  # legible on a 200 px image
    assert th_large >= 0.01 * 4000  # ~ same share of a 4000 px image


def test_large_image_is_fast(
    result_factory: Callable[..., SegmentationResult],
    image_factory: Callable[[int, int], np.ndarray],
) -> None:
    res = result_factory(scale=50)  # 2000 x 3000
    img = image_factory(2000, 3000)
    start = time.perf_counter()
    out = render_overlay(img, res)
    assert time.perf_counter() - start < 5.0  # vectorised: well under a second in practice
    assert out.shape == (2000, 3000, 3)
    # label box of the traffic light (big font) drawn near its mask
    assert (_dist(out[0:600, 2200:3000], class_color("traffic light")) == 0).sum() > 2000


def test_write_overlay(tmp_path: Path, result: SegmentationResult, image: np.ndarray) -> None:
    path = write_overlay(image, result, tmp_path / "x.overlay.png")
    assert [p.name for p in tmp_path.iterdir()] == ["x.overlay.png"]
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "RGB"
        back = np.array(png)
    np.testing.assert_array_equal(back, render_overlay(image, result))

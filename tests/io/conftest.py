"""Shared fixtures: small synthetic results and images for the writer tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from samadapter.structures import UNKNOWN_NAME, SegmentationResult

CLASS_NAMES = ["cat", "sofa", "traffic light"]
SYNONYMS = [["cat"], ["sofa", "couch", "settee"], ["traffic light"]]


def make_result(scale: int = 1, unknown: bool = False) -> SegmentationResult:
    """Four masks on a ``40*scale x 60*scale`` image.

    Mask 0: sofa, a big rectangle; mask 1: cat, overlapping the sofa; mask 2: cat, a second
    separate blob; mask 3: traffic light, small. With ``unknown``, a fifth mask named ``unknown``.
    """
    s = scale
    h, w = 40 * s, 60 * s
    rects = [(5, 30, 2, 40), (10, 20, 25, 35), (30, 38, 45, 58), (2, 6, 50, 54)]  # y0 y1 x0 x1
    class_ids = [1, 0, 0, 2]
    scores = [0.91, 0.87, 0.55, 0.42]
    if unknown:
        rects.append((34, 39, 2, 8))
        class_ids.append(3)
        scores.append(0.12)
    n = len(rects)
    masks = np.zeros((n, h, w), dtype=bool)
    for i, (y0, y1, x0, x1) in enumerate(rects):
        masks[i, y0 * s : y1 * s, x0 * s : x1 * s] = True
    # Realistic probability rows: each named mask's label is the argmax of its row; the unknown
    # mask's row is small everywhere (void took the rest).
    rng = np.random.default_rng(0)
    class_scores = (rng.random((n, len(CLASS_NAMES))) * 0.1).astype(np.float32)
    for i, (c, p) in enumerate(zip(class_ids, scores, strict=True)):
        if c < len(CLASS_NAMES):
            class_scores[i, c] = p
    boxes = np.array(
        [[x0 * s, y0 * s, (x1 - x0) * s, (y1 - y0) * s] for y0, y1, x0, x1 in rects],
        dtype=np.float32,
    )
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    return SegmentationResult(
        masks=masks,
        class_ids=np.array(class_ids, dtype=np.int64),
        scores=np.array(scores, dtype=np.float32),
        class_scores=class_scores,
        class_names=CLASS_NAMES + ([UNKNOWN_NAME] if unknown else []),
        synonyms=[list(s_) for s_ in SYNONYMS],
        predicted_iou=np.linspace(0.8, 0.95, n).astype(np.float32),
        stability_score=np.linspace(0.9, 0.99, n).astype(np.float32),
        point_coords=centres.astype(np.float32),
        crop_box=np.tile(np.array([0, 0, w, h], dtype=np.float32), (n, 1)),
        file_name="living_room.jpg",
    )


def make_image(h: int, w: int) -> np.ndarray:
    """``[h, w, 3]`` uint8 mid-grey gradient (far from every class colour's extremes)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack(
        [60 + (xx * 80 // max(w - 1, 1)), 60 + (yy * 80 // max(h - 1, 1)), np.full_like(xx, 100)],
        axis=2,
    )
    return img.astype(np.uint8)


@pytest.fixture
def result() -> SegmentationResult:
    """Four masks, classes cat (two masks), sofa, traffic light, on a 40x60 image."""
    return make_result()


@pytest.fixture
def result_unknown() -> SegmentationResult:
    """Like ``result`` plus one mask named ``unknown``."""
    return make_result(unknown=True)


@pytest.fixture
def image() -> np.ndarray:
    """``[40, 60, 3]`` uint8 image matching ``result``."""
    return make_image(40, 60)


@pytest.fixture
def result_factory() -> Callable[..., SegmentationResult]:
    """The :func:`make_result` factory (test modules must not import ``conftest``)."""
    return make_result


@pytest.fixture
def image_factory() -> Callable[[int, int], np.ndarray]:
    """The :func:`make_image` factory."""
    return make_image

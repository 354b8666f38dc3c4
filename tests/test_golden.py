"""Golden outputs of the ``tiny-random`` pipeline on ``samples/chelsea.jpg``.

Any change to what samadapter outputs (resize, mask placement, head, pooling, text, keep rule,
SAM settings) changes these numbers: update them only on purpose, and say why in the commit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synth_data import five_masks  # tests/synth_data.py (tests/ is on sys.path)

from samadapter.models import load_segmenter
from samadapter.pipeline import Segmenter

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "chelsea.jpg"
CLASSES = "cat,sofa|couch,floor,wall,blanket"


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return load_segmenter("tiny-random", device="cpu", progress=False, text_cache=False)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    with Image.open(SAMPLE) as img:
        return np.asarray(img.convert("RGB"))


def test_golden_segment(seg: Segmenter, image: np.ndarray) -> None:
    result = seg(image, CLASSES)
    assert result.masks.shape == (1, 300, 451)
    assert result.labels == ["cat"]
    np.testing.assert_allclose(result.scores, [0.41434], atol=1e-4)
    assert result.areas.tolist() == [34144]
    np.testing.assert_allclose(result.class_scores.sum(axis=1), [0.99782], atol=1e-4)


GOLDEN_P = np.array(
    [
        [0.41007, 0.26023, 0.09626, 0.11045, 0.12102],
        [0.41675, 0.26325, 0.09134, 0.10874, 0.11757],
        [0.41875, 0.26337, 0.09021, 0.10842, 0.11679],
        [0.41722, 0.26397, 0.09033, 0.10877, 0.11734],
        [0.41943, 0.26259, 0.09057, 0.10820, 0.11672],
    ]
)


def test_golden_classify(seg: Segmenter, image: np.ndarray) -> None:
    masks = five_masks(*image.shape[:2])
    assert masks.sum(axis=(1, 2)).tolist() == [11294, 18180, 26609, 6854, 13596]
    result = seg.classify(image, masks, CLASSES)
    np.testing.assert_allclose(result.class_scores, GOLDEN_P, atol=1e-4)
    assert result.labels == ["cat"] * 5  # all five are near-best (> 0.8 x) for some class
    np.testing.assert_allclose(result.scores, GOLDEN_P.max(axis=1), atol=1e-4)
    values, counts = np.unique(result.semantic_map(), return_counts=True)
    assert values.tolist() == [-1, 0] and counts.tolist() == [59635, 75665]

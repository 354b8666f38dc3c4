"""The synthetic coloured-shapes dataset and the colour calibration for a random CLIP."""

from __future__ import annotations

import numpy as np
import pytest

from samadapter.data.base import IGNORE
from samadapter.data.synthetic import BACKGROUND, DEFAULT_CLASSES, SyntheticClass, SyntheticShapes
from samadapter.train.synthetic import calibrated_classes


def test_samples_are_deterministic_and_consistent() -> None:
    ds = SyntheticShapes(5, size=(48, 64), seed=7)
    assert len(ds) == 5 and ds.vocab.names == [c.name for c in DEFAULT_CLASSES]
    assert ds.names() == [f"synthetic-7/{i:05d}" for i in range(5)]
    a, b = ds[3], SyntheticShapes(5, size=(48, 64), seed=7)[3]
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.image.shape == (48, 64, 3) and a.image.dtype == np.uint8
    assert a.label.dtype == np.int32 and a.name == "synthetic-7/00003"
    assert a.instances is not None
    np.testing.assert_array_equal(a.instances > 0, a.label != IGNORE)
    assert set(np.unique(a.label)) <= {IGNORE, *range(len(DEFAULT_CLASSES))}
    # the background is grey (up to noise) where nothing is labelled
    bg = a.image[a.label == IGNORE].astype(int)
    assert np.abs(bg - np.array(BACKGROUND)).max() <= ds.noise
    assert not np.array_equal(SyntheticShapes(5, size=(48, 64), seed=8)[3].image, a.image)
    with pytest.raises(IndexError):
        ds[5]


def test_classes_look_different() -> None:
    ds = SyntheticShapes(30, size=(48, 64), seed=0, noise=0)
    means = {}
    for i in range(len(ds)):
        s = ds[i]
        for k in np.unique(s.label[s.label >= 0]):
            means.setdefault(int(k), []).append(s.image[s.label == k].mean(axis=0))
    centre = {k: np.mean(v, axis=0) for k, v in means.items()}
    assert len(centre) == len(DEFAULT_CLASSES)
    flat = [k for k, c in enumerate(DEFAULT_CLASSES) if c.pattern == "flat"]
    for i in flat:
        for j in flat:
            if i < j:
                assert np.abs(centre[i] - centre[j]).max() > 50


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="pattern"):
        SyntheticClass("x", (1, 2, 3), "plaid")
    with pytest.raises(ValueError, match="two classes"):
        SyntheticShapes(3, classes=DEFAULT_CLASSES[:1])


def test_calibrated_colours_suit_the_frozen_clip(tiny) -> None:
    backbone, _ = tiny()
    classes = calibrated_classes(backbone, ["cat", "dog", "car"], clip_size=64, candidates=32)
    assert [c.name for c in classes] == ["cat", "dog", "car"]
    assert len({c.colour for c in classes}) == 3 and all(c.pattern == "flat" for c in classes)
    again = calibrated_classes(backbone, ["cat", "dog", "car"], clip_size=64, candidates=32)
    assert again == classes

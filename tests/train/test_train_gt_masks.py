"""Ground-truth masks per image: one per connected class region, or per instance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samadapter.data.base import IGNORE, Sample
from samadapter.data.synthetic import SyntheticShapes
from samadapter.train.gt_masks import RegionSettings, random_subset, region_masks, sample_gt_masks


def label_map() -> np.ndarray:
    lab = np.full((10, 12), IGNORE, dtype=np.int32)
    lab[0:4, 0:4] = 2  # class 2, region A (16 px)
    lab[6:10, 8:12] = 2  # class 2, region B (16 px), not touching A
    lab[0:5, 6:12] = 0  # class 0 (30 px)
    lab[8:10, 0:2] = 1  # class 1, 4 px
    return lab


def test_one_mask_per_connected_region() -> None:
    gt = region_masks(label_map(), settings=RegionSettings(min_area=1))
    assert gt.classes.tolist() == [0, 1, 2, 2]
    assert gt.masks.sum(axis=(1, 2)).tolist() == [30, 4, 16, 16]
    assert not (gt.masks.sum(axis=0) > 1).any()  # disjoint
    np.testing.assert_array_equal(gt.masks.any(axis=0), label_map() >= 0)


def test_one_mask_per_class_and_min_area() -> None:
    gt = region_masks(label_map(), settings=RegionSettings(mode="class", min_area=1))
    assert gt.classes.tolist() == [0, 1, 2]
    assert gt.masks.sum(axis=(1, 2)).tolist() == [30, 4, 32]
    small = region_masks(label_map(), settings=RegionSettings(min_area=5))
    assert small.classes.tolist() == [0, 2, 2]  # the 4-pixel region is dropped


def test_instances_split_touching_objects_of_one_class() -> None:
    lab = np.full((8, 8), IGNORE, dtype=np.int32)
    lab[:, :4] = 3
    lab[:, 4:] = 3  # one connected class-3 region ...
    lab[6:, :] = 1  # ... above a stuff strip of class 1
    inst = np.zeros((8, 8), dtype=np.int32)
    inst[:6, :4] = 7
    inst[:6, 4:] = 9  # ... made of two instances
    gt = region_masks(lab, inst, RegionSettings(min_area=1))
    assert gt.classes.tolist() == [3, 3, 1]
    assert gt.masks.sum(axis=(1, 2)).tolist() == [24, 24, 16]
    without = region_masks(lab, None, RegionSettings(min_area=1))
    assert without.classes.tolist() == [1, 3]


def test_sample_uses_its_instances_attribute() -> None:
    sample = SyntheticShapes(4, seed=3)[2]
    assert sample.instances is not None
    gt = sample_gt_masks(sample, RegionSettings(min_area=1))
    labelled = sample.label >= 0
    np.testing.assert_array_equal(gt.masks.any(axis=0), labelled)
    for m, c in zip(gt.masks, gt.classes, strict=True):
        assert (sample.label[m] == c).all()
        assert len(np.unique(sample.instances[m])) == 1
    plain = Sample(sample.image, sample.label, sample.name)  # no instances: regions
    assert len(sample_gt_masks(plain)) >= 1


def test_empty_label_gives_no_masks() -> None:
    gt = region_masks(np.full((5, 6), IGNORE, dtype=np.int32))
    assert len(gt) == 0 and gt.masks.shape == (0, 5, 6)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="mode"):
        RegionSettings(mode="instance")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="connectivity"):
        RegionSettings(connectivity=6)


def test_random_subset() -> None:
    g = torch.Generator().manual_seed(0)
    idx = random_subset(50, 32, g)
    assert len(idx) == 32 and len(set(idx.tolist())) == 32 and idx.max() < 50
    assert sorted(random_subset(5, 32, g).tolist()) == [0, 1, 2, 3, 4]
    assert len(random_subset(0, 32, g)) == 0

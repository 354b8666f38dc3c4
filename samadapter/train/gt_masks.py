"""Ground-truth masks of an image for adapter training: one per class region, or per instance.

A semantic label map (class index per pixel, :data:`~samadapter.data.base.IGNORE` for unlabelled
pixels) becomes a set of binary masks with their classes:

* ``connected`` (default): one mask per 8-connected region of each class;
* ``class``: one mask per class present (all its pixels), as the official semantic data mappers do.

When a sample also carries an instance map (an optional ``instances`` attribute, ``[H, W]`` int,
``0`` = not part of an instance, e.g. stuff), each instance becomes one mask of its majority class
and only the remaining pixels are split into regions as above (COCO panoptic style).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from samadapter.data.base import IGNORE
from samadapter.train.config import REGION_MODES, RegionSettings


@dataclass
class GtMasks:
    """Binary ground-truth masks of one image with their classes.

    Attributes:
        masks: ``[G, H, W]`` bool, pairwise disjoint.
        classes: ``[G]`` int64 class indices ``0..K-1``.
    """

    masks: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)

    @classmethod
    def empty(cls, height: int, width: int) -> GtMasks:
        """No masks for an ``H x W`` image."""
        return cls(np.zeros((0, height, width), dtype=bool), np.zeros(0, dtype=np.int64))


def region_masks(
    label: np.ndarray, instances: np.ndarray | None = None, settings: RegionSettings | None = None
) -> GtMasks:
    """Ground-truth masks of a label map (see the module docstring for the rules).

    Args:
        label: ``[H, W]`` int class indices, :data:`IGNORE` (or any negative value) = unlabelled.
        instances: optional ``[H, W]`` int instance ids (``0`` = none); an instance's class is its
            most frequent labelled class; an instance with no labelled pixel is skipped.
        settings: the cutting rules (default :class:`RegionSettings`).

    Returns:
        The masks, in a deterministic order: instances by id, then regions by class index and, for
        one class, by the position of their first pixel in raster order.
    """
    s = settings or RegionSettings()
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label must be [H, W], got shape {label.shape}")
    h, w = label.shape
    masks: list[np.ndarray] = []
    classes: list[int] = []
    rest = label >= 0
    if instances is not None:
        inst = np.asarray(instances)
        if inst.shape != label.shape:
            raise ValueError(f"instances {inst.shape} and label {label.shape} differ in shape")
        for iid in np.unique(inst):
            if iid <= 0:
                continue
            m = inst == iid
            rest &= ~m
            labelled = label[m & (label >= 0)]
            if labelled.size == 0:
                continue
            values, counts = np.unique(labelled, return_counts=True)
            m = m & (label >= 0)
            if int(m.sum()) >= s.min_area:
                masks.append(m)
                classes.append(int(values[np.argmax(counts)]))
    for c in np.unique(label[rest]):
        cm = rest & (label == c)
        if s.mode == "class":
            parts = [cm]
        else:
            n, comp = cv2.connectedComponents(cm.astype(np.uint8), connectivity=s.connectivity)
            parts = [comp == j for j in range(1, n)]
        for m in parts:
            if int(m.sum()) >= s.min_area:
                masks.append(m)
                classes.append(int(c))
    if not masks:
        return GtMasks.empty(h, w)
    return GtMasks(np.stack(masks), np.asarray(classes, dtype=np.int64))


def sample_gt_masks(sample: Any, settings: RegionSettings | None = None) -> GtMasks:
    """:func:`region_masks` of a :class:`~samadapter.data.base.Sample`.

    Uses the sample's optional ``instances`` attribute (``[H, W]`` int, ``0`` = none) when present.
    """
    return region_masks(sample.label, getattr(sample, "instances", None), settings)


def random_subset(n: int, k: int, generator: torch.Generator) -> np.ndarray:
    """``min(n, k)`` distinct indices of ``range(n)`` drawn at random, in drawn order.

    Args:
        n: population size.
        k: how many to draw.
        generator: the random source (a seeded :class:`torch.Generator`).

    Returns:
        ``[min(n, k)]`` int64 indices.
    """
    if n <= 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    return torch.randperm(n, generator=generator)[:k].numpy().astype(np.int64)


__all__ = [
    "IGNORE",
    "REGION_MODES",
    "GtMasks",
    "RegionSettings",
    "random_subset",
    "region_masks",
    "sample_gt_masks",
]

"""Helpers for the training tests: tiny models, small synthetic datasets, a colour proposer."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest
import torch

from samadapter.data.synthetic import BACKGROUND
from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.mask_adapter import MaskAdapter
from samadapter.models import build_tiny_classifier


def colour_proposer(image: np.ndarray) -> np.ndarray:
    """A stand-in for SAM: the connected regions that differ from the grey background.

    Args:
        image: ``[H, W, 3]`` uint8 synthetic image.

    Returns:
        ``[P, H, W]`` bool masks (shape silhouettes; overlapping shapes merge), plus one mask of
        the whole background, so some proposals match a ground-truth mask and some do not.
    """
    diff = np.abs(image.astype(np.int32) - np.array(BACKGROUND)).max(axis=-1) > 40
    n, comp = cv2.connectedComponents(diff.astype(np.uint8), connectivity=8)
    masks = [comp == j for j in range(1, n) if (comp == j).sum() >= 16]
    masks.append(~diff)
    return np.stack(masks)


@pytest.fixture
def proposer() -> Callable[[np.ndarray], np.ndarray]:
    """:func:`colour_proposer`."""
    return colour_proposer


@functools.cache
def _shared_tiny() -> tuple[ClipBackbone, MaskAdapter]:
    backbone, adapter = build_tiny_classifier()
    assert adapter is not None
    return backbone, adapter


@pytest.fixture(scope="session")
def tiny() -> Callable[[], tuple[ClipBackbone, MaskAdapter]]:
    """Makes the seeded tiny models: the frozen CLIP is shared (training never changes it), the
    adapter is a fresh copy each call."""

    def make() -> tuple[ClipBackbone, MaskAdapter]:
        backbone, adapter = _shared_tiny()
        return backbone, copy.deepcopy(adapter)

    return make


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and 2-thread OpenMP spin-waiting makes them up to
    100x slower on a busy machine; results do not depend on it beyond float rounding."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

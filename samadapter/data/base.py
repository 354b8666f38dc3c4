"""The interface every semantic-segmentation dataset offers to the benchmark and to training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from samadapter.vocab import Vocabulary

IGNORE = -1
"""Label value of pixels that count for nothing (unlabelled in the ground truth)."""


@dataclass
class Sample:
    """One image with its semantic ground truth.

    Attributes:
        image: ``[H, W, 3]`` uint8 RGB.
        label: ``[H, W]`` int32 class index into the dataset's vocabulary (``0..K-1``), or
            :data:`IGNORE`.
        name: a stable identifier, the image file's path relative to the dataset's image root
            without suffix (used for output file names and resume).
        instances: ``[H, W]`` int instance ids (0 = none) where the dataset has instances
            (panoptic / instance layouts); training then makes one mask per instance.
    """

    image: np.ndarray
    label: np.ndarray
    name: str
    instances: np.ndarray | None = None


class SemanticDataset(Protocol):
    """A sized, indexable collection of :class:`Sample` with its vocabulary."""

    vocab: Vocabulary

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...

    def names(self) -> list[str]:
        """The samples' names in index order (cheap: no image is read)."""
        ...

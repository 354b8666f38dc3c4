"""A small synthetic dataset of coloured and textured shapes, for smoke tests and demos.

Each image is a noisy grey background (unlabelled) with a few rectangles and ellipses; every shape
is one instance of a class that has its own colour and texture (flat, stripes, checker, dots).
Samples carry an ``instances`` map besides the semantic label, so both ground-truth modes of
:mod:`samadapter.train.gt_masks` are exercised.

The default classes are named after what they look like ("red", "zebra stripes", ...), which a
real CLIP recognises. A random test CLIP (``tiny-random``) embeds names and colours arbitrarily;
:func:`samadapter.train.synthetic.calibrated_classes` picks, for each class name, a colour that
such a frozen CLIP embeds closer to that name than to the others, so that the classes are
separable for it at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from samadapter.data.base import IGNORE, Sample
from samadapter.vocab import Vocabulary

PATTERNS = ("flat", "stripes", "checker", "dots")


@dataclass(frozen=True)
class SyntheticClass:
    """How one class looks.

    Attributes:
        name: the class name (used for the text embedding).
        colour: RGB 0-255 of the class's main colour.
        pattern: ``flat``, ``stripes``, ``checker`` or ``dots`` (main colour on black).
    """

    name: str
    colour: tuple[int, int, int]
    pattern: str = "flat"

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}, got {self.pattern!r}")


DEFAULT_CLASSES: tuple[SyntheticClass, ...] = (
    SyntheticClass("red", (220, 40, 40)),
    SyntheticClass("green", (40, 190, 60)),
    SyntheticClass("blue", (40, 70, 220)),
    SyntheticClass("yellow", (235, 215, 40)),
    SyntheticClass("zebra stripes", (235, 235, 235), "stripes"),
    SyntheticClass("checkerboard", (235, 235, 235), "checker"),
)
"""Six classes a real CLIP can tell apart: four flat colours and two black-and-white textures."""

BACKGROUND = (110, 110, 110)


def _texture(pattern: str, colour: tuple[int, int, int], h: int, w: int, phase: int) -> np.ndarray:
    """``[h, w, 3]`` uint8 patch of ``colour`` in ``pattern`` (on black)."""
    yy, xx = np.mgrid[0:h, 0:w]
    if pattern == "flat":
        on = np.ones((h, w), dtype=bool)
    elif pattern == "stripes":
        on = ((xx + yy + phase) // 4) % 2 == 0
    elif pattern == "checker":
        on = ((xx + phase) // 6 + (yy + phase) // 6) % 2 == 0
    else:  # dots
        on = (((xx + phase) % 8) - 4) ** 2 + (((yy + phase) % 8) - 4) ** 2 <= 5
    out = np.zeros((h, w, 3), dtype=np.uint8)
    out[on] = colour
    return out


class SyntheticShapes:
    """Images of coloured / textured shapes on grey, with semantic and instance ground truth.

    Implements the :class:`~samadapter.data.base.SemanticDataset` protocol. Sample ``i`` depends
    only on ``(seed, i)``: use different seeds for training and held-out splits. Its
    ``instances`` map is ``[H, W]`` int32: the instance id (``1..n`` per shape), 0 on the
    background.

    Args:
        num_images: dataset length.
        size: ``(H, W)`` of every image.
        classes: the classes (default :data:`DEFAULT_CLASSES`).
        shapes: ``(min, max)`` shapes per image.
        seed: random seed of the dataset.
        noise: amplitude of uniform pixel noise added everywhere.
    """

    def __init__(
        self,
        num_images: int = 64,
        size: tuple[int, int] = (96, 128),
        classes: Sequence[SyntheticClass] = DEFAULT_CLASSES,
        shapes: tuple[int, int] = (2, 4),
        seed: int = 0,
        noise: int = 12,
    ) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        if len(classes) < 2:
            raise ValueError("a synthetic dataset needs at least two classes")
        if not 1 <= shapes[0] <= shapes[1]:
            raise ValueError(f"shapes must be (min, max) with 1 <= min <= max, got {shapes}")
        self.num_images = num_images
        self.size = (int(size[0]), int(size[1]))
        self.classes = tuple(classes)
        self.shapes = shapes
        self.seed = seed
        self.noise = noise
        self.vocab = Vocabulary(
            tuple((c.name,) for c in self.classes),
            tuple(range(1, len(self.classes) + 1)),
            "synthetic",
        )

    def __len__(self) -> int:
        return self.num_images

    def names(self) -> list[str]:
        """``synthetic-<seed>/<index>`` of each sample."""
        return [f"synthetic-{self.seed}/{i:05d}" for i in range(self.num_images)]

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        rng = np.random.default_rng([self.seed, index])
        h, w = self.size
        image = np.empty((h, w, 3), dtype=np.uint8)
        image[:] = BACKGROUND
        label = np.full((h, w), IGNORE, dtype=np.int32)
        instances = np.zeros((h, w), dtype=np.int32)
        yy, xx = np.mgrid[0:h, 0:w]
        for j in range(int(rng.integers(self.shapes[0], self.shapes[1] + 1))):
            k = int(rng.integers(len(self.classes)))
            sh, sw = (int(rng.integers(max(4, s // 4), max(5, s // 2) + 1)) for s in (h, w))
            y0, x0 = int(rng.integers(0, h - sh + 1)), int(rng.integers(0, w - sw + 1))
            if rng.random() < 0.5:
                m = (yy >= y0) & (yy < y0 + sh) & (xx >= x0) & (xx < x0 + sw)
            else:
                cy, cx = y0 + sh / 2, x0 + sw / 2
                m = ((yy + 0.5 - cy) / (sh / 2)) ** 2 + ((xx + 0.5 - cx) / (sw / 2)) ** 2 <= 1
            c = self.classes[k]
            image[m] = _texture(c.pattern, c.colour, h, w, int(rng.integers(8)))[m]
            label[m] = k
            instances[m] = j + 1
        if self.noise:
            jitter = rng.integers(-self.noise, self.noise + 1, size=image.shape)
            image = np.clip(image.astype(np.int32) + jitter, 0, 255).astype(np.uint8)
        return Sample(image=image, label=label, name=self.names()[index], instances=instances)


__all__ = ["BACKGROUND", "DEFAULT_CLASSES", "PATTERNS", "SyntheticClass", "SyntheticShapes"]

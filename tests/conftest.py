"""Shared fixtures: tiny random models (no weights, no network) and a small test image."""

from __future__ import annotations

import numpy as np
import pytest

from samadapter.models import load_segmenter
from samadapter.pipeline import Segmenter

SAMPLES = __import__("pathlib").Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture(autouse=True)
def _no_network_and_private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    """Every test runs offline with an empty private weights cache."""
    monkeypatch.setenv("SAMADAPTER_OFFLINE", "1")
    monkeypatch.setenv("SAMADAPTER_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("SAMADAPTER_COMPILE", "0")  # torch.compile takes minutes on 2 cores
    monkeypatch.setenv("SAMADAPTER_RUNTIME", "torch")  # no OpenVINO conversions unless asked


@pytest.fixture(scope="session")
def tiny_segmenter() -> Segmenter:
    """The ``tiny-random`` preset on the CPU."""
    return load_segmenter("tiny-random", device="cpu", progress=False)


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray]:
    """A 48x64 image with three coloured rectangles and their masks ``[3, 48, 64]``."""
    image = np.full((48, 64, 3), 30, dtype=np.uint8)
    masks = np.zeros((3, 48, 64), dtype=bool)
    for i, (y0, y1, x0, x1, colour) in enumerate(
        [
            (2, 30, 2, 40, (220, 40, 40)),
            (20, 46, 30, 62, (40, 220, 40)),
            (35, 45, 5, 15, (40, 40, 220)),
        ]
    ):
        image[y0:y1, x0:x1] = colour
        masks[i, y0:y1, x0:x1] = True
    return image, masks

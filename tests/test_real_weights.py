"""Checks with the real official weights; skipped where they are absent (as on CI here).

Put ``sam_vit_b_01ec64.pth`` and ``fcclip_convnext_large_maskadapter.pth`` in
``$SAMADAPTER_HOME`` (default ``~/.cache/samadapter``; ``SAMADAPTER_REAL_HOME`` overrides it for
the tests) and run ``pytest -m weights``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from samadapter.weights import find_file, get_spec

NEEDED = ("sam_vit_b", "fcclip_convnext_large")
SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "chelsea.jpg"


def _real_home() -> Path:
    # Read at collection time, before the autouse fixture points SAMADAPTER_HOME at a temp dir.
    given = os.environ.get("SAMADAPTER_REAL_HOME") or os.environ.get("SAMADAPTER_HOME")
    return Path(given or Path.home() / ".cache" / "samadapter").expanduser()


HAVE_WEIGHTS = all(find_file(get_spec(n), _real_home()) is not None for n in NEEDED)

pytestmark = [
    pytest.mark.weights,
    pytest.mark.skipif(
        not HAVE_WEIGHTS,
        reason=f"needs {', '.join(get_spec(n).filename for n in NEEDED)} in {_real_home()}",
    ),
]


def test_the_cat_is_named_cat() -> None:
    from samadapter import load_segmenter

    seg = load_segmenter("fast", device="cpu", weights_dir=_real_home(), offline=True)
    result = seg(str(SAMPLE), classes="cat,sofa|couch,floor,wall,blanket")
    cats = [i for i, name in enumerate(result.labels) if name == "cat"]
    assert cats, f"no cat among {result.labels}"
    best = max(cats, key=lambda i: result.areas[i])
    assert result.scores[best] > 0.5
    h, w = result.image_size
    ys, xs = np.nonzero(result.masks[best])
    assert 0.05 * h * w < len(ys) < 0.9 * h * w
    assert abs(xs.mean() - w / 2) < w / 3  # the cat sits in the middle of the photo

"""Synthetic classes a random test CLIP can tell apart (for :mod:`samadapter.data.synthetic`).

The synthetic dataset's default classes are named after what they look like ("red", "zebra
stripes", ...), which a real CLIP recognises. A random test CLIP (``tiny-random``) embeds names and
colours arbitrarily; :func:`calibrated_classes` picks, for each class name, a colour that such a
frozen CLIP embeds closer to that name than to the others, so that the classes are separable for
it at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from samadapter.data.synthetic import BACKGROUND, SyntheticClass
from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.mask_adapter import average_mask_pool
from samadapter.vocab import Vocabulary, build_text_classifier


@torch.no_grad()
def calibrated_classes(
    backbone: ClipBackbone,
    names: Sequence[str],
    clip_size: int = 128,
    candidates: int = 256,
    seed: int = 0,
) -> tuple[SyntheticClass, ...]:
    """Flat-colour classes that a given frozen CLIP can tell apart by their names.

    Each of ``candidates`` random colours is drawn as a square on the grey background and
    embedded by plain mask pooling of the CLIP features under the square; each name gets the
    colour whose embedding is most similar to that name's text embedding relative to the other
    names (largest margin ``cos(own) - max cos(other)``; colours are not reused).

    Args:
        backbone: the frozen CLIP.
        names: the class names.
        clip_size: CLIP input size used for the trial images.
        candidates: random colours tried.
        seed: seed of the candidate colours.

    Returns:
        One flat :class:`SyntheticClass` per name, in order.
    """
    vocab = Vocabulary(tuple((n,) for n in names), tuple(range(1, len(names) + 1)))
    text = build_text_classifier(backbone.encode_text, vocab).to(backbone.device)
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(candidates, 3))
    s = clip_size
    lo, hi = s // 4, 3 * s // 4
    mask = torch.zeros(1, 1, s, s, device=backbone.device)
    mask[..., lo:hi, lo:hi] = 1
    images = np.empty((candidates, s, s, 3), dtype=np.uint8)
    images[:] = BACKGROUND
    images[:, lo:hi, lo:hi] = colours[:, None, None, :]
    embs = []
    for start in range(0, candidates, 64):
        pixels = torch.cat([backbone.preprocess(img, s)[0] for img in images[start : start + 64]])
        raw = backbone.dense_features(pixels)
        pooled = average_mask_pool(mask.expand(len(pixels), -1, -1, -1), raw)
        embs.append(backbone.project_pooled(pooled)[:, 0].float())
    cos = F.normalize(torch.cat(embs), dim=-1) @ text.T  # [candidates, K]
    taken: set[int] = set()
    out = []
    for k, name in enumerate(names):
        others = torch.cat([cos[:, :k], cos[:, k + 1 :]], dim=1)
        margin = cos[:, k] - (others.max(dim=1).values if others.shape[1] else 0.0)
        for idx in torch.argsort(margin, descending=True).tolist():
            if idx not in taken:
                taken.add(idx)
                rgb = tuple(int(v) for v in colours[idx])
                out.append(SyntheticClass(name, (rgb[0], rgb[1], rgb[2])))
                break
    return tuple(out)


__all__ = ["calibrated_classes"]

"""Differentiable mask embeddings: gradients through the Mask-Adapter only, CLIP frozen.

The same computation as :meth:`samadapter.pipeline.Segmenter.class_probabilities` with the
adapter (docs/architecture.md), minus ``inference_mode``: masks are resized like the image and
zero-padded onto the CLIP canvas, the adapter turns them into activation maps, the maps pool the
raw dense features, and the frozen CLIP head projects the pooled features (mean over maps).
"""

from __future__ import annotations

from typing import TypeVar

import torch

from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.embeddings import adapter_embeddings, adapter_input, canvas_masks
from samadapter.modeling.mask_adapter import MaskAdapter

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def freeze(module: ModuleT) -> ModuleT:
    """Switch off gradients of every parameter of ``module`` and put it in eval mode."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def project_features(
    backbone: ClipBackbone, raw: torch.Tensor, adapter: MaskAdapter | None = None
) -> torch.Tensor:
    """Projected dense features, the adapter's input (no gradient: CLIP is frozen).

    Args:
        backbone: the frozen CLIP.
        raw: ``[1, D, h, w]`` raw dense features.
        adapter: the adapter they are for: a MAFT+ one takes MAFT+'s reshape-quirk projection
            (:func:`~samadapter.modeling.embeddings.adapter_input`); default the clean one.

    Returns:
        ``[1, C, h, w]``.
    """
    with torch.no_grad():
        return adapter_input(backbone, adapter, raw)


def mask_embeddings(
    backbone: ClipBackbone,
    adapter: MaskAdapter,
    raw: torch.Tensor,
    masks: torch.Tensor,
    projected: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mask-Adapter embeddings of one image's masks, differentiable w.r.t. the adapter
    (:func:`samadapter.modeling.embeddings.adapter_embeddings`, B = 1; CLIP's projection of
    ``raw`` runs without gradient).

    Args:
        backbone: the frozen CLIP.
        adapter: the Mask-Adapter being trained.
        raw: ``[1, D, h, w]`` raw dense CLIP features of the image.
        masks: ``[1, Q, Hp, Wp]`` float masks on the canvas (:func:`canvas_masks`).
        projected: ``[1, C, h, w]`` :func:`project_features` of ``raw``, when already computed.

    Returns:
        ``[Q, C]`` embeddings.
    """
    if projected is None:
        projected = project_features(backbone, raw, adapter)
    return adapter_embeddings(backbone, adapter, raw, masks, projected)[0]


__all__ = [
    "canvas_masks",
    "freeze",
    "mask_embeddings",
    "project_features",
]

"""Mask embeddings in CLIP space: the one computation inference and training share.

Masks at the image's resolution are put on the CLIP input canvas (:func:`canvas_masks`); the
Mask-Adapter turns them into activation maps that pool the raw dense features, which the CLIP
head projects, averaged over the maps (:func:`adapter_embeddings`, DESIGN.md §1.3-1.4); the
baseline averages the raw features under each mask instead (:func:`pooling_embeddings`).
Gradients flow wherever the caller allows them (training runs these outside ``no_grad``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.mask_adapter import MaskAdapter, average_mask_pool, pool_with_maps


def canvas_masks(masks: np.ndarray | torch.Tensor, resized: tuple[int, int],
                 canvas: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Put image-resolution masks on the CLIP input canvas.

    Args:
        masks: ``[Q, H, W]`` bool (or 0/1) at the original image size.
        resized: ``(h, w)`` of the resized image inside the canvas.
        canvas: ``(Hp, Wp)`` padded canvas size.
        device: where the result lives.

    Returns:
        ``[1, Q, Hp, Wp]`` float32: bilinearly resized to ``(h, w)``, zero-padded right/bottom.
    """
    m = torch.as_tensor(masks, device=device)[None].float()
    if tuple(m.shape[-2:]) != tuple(resized):
        m = F.interpolate(m, size=resized, mode="bilinear", align_corners=False)
    return F.pad(m, (0, canvas[1] - resized[1], 0, canvas[0] - resized[0]))


def adapter_embeddings(backbone: ClipBackbone, adapter: MaskAdapter, raw: torch.Tensor,
                       masks: torch.Tensor, projected: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """Mask-Adapter embeddings of the masks of ``B`` images sharing a feature shape.

    Args:
        backbone: the CLIP backbone (its pooled-feature projection is applied).
        adapter: the Mask-Adapter.
        raw: ``[B, D, h, w]`` raw dense CLIP features.
        masks: ``[B, Q, Hp, Wp]`` float masks on the canvas (:func:`canvas_masks`).
        projected: ``[B, C, h, w]`` ``backbone.project_dense(raw)``, when already computed.

    Returns:
        ``[B, Q, C]`` embeddings (the autocast dtype under autocast).
    """
    if projected is None:
        projected = backbone.project_dense(raw)
    maps = adapter.mask_adapter(projected, masks)  # [B, Q, M, h, w]
    pooled = pool_with_maps(maps, raw)  # [B, Q, M, D]
    return backbone.project_pooled(pooled).mean(dim=2)  # [B, Q, C]


def pooling_embeddings(backbone: ClipBackbone, raw: torch.Tensor, masks: torch.Tensor
                       ) -> torch.Tensor:
    """Plain mask-pooling embeddings (the baseline without adapter).

    Args:
        backbone: the CLIP backbone.
        raw: ``[B, D, h, w]`` raw dense CLIP features.
        masks: ``[B, Q, Hp, Wp]`` float masks on the canvas.

    Returns:
        ``[B, Q, C]`` embeddings.
    """
    return backbone.project_pooled(average_mask_pool(masks, raw))

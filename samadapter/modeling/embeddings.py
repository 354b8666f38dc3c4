"""Mask embeddings in CLIP space: the one computation inference and training share.

Masks at the image's resolution are put on the CLIP input canvas (:func:`canvas_masks`); the
Mask-Adapter turns them into activation maps that pool the raw dense features, which the CLIP
head projects, averaged over the maps (:func:`adapter_embeddings`, docs/architecture.md); the
baseline averages the raw features under each mask instead (:func:`pooling_embeddings`). MAFT+
adapters take the features of MAFT+'s reshape quirk (:func:`adapter_input`) and classify against
a text classifier their cdt refines per image (:func:`refine_text`; docs/maftp.md).
Gradients flow wherever the caller allows them (training runs these outside ``no_grad``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.mask_adapter import MaskAdapter, average_mask_pool, pool_with_maps


@dataclass
class ImageFeatures:
    """Dense CLIP features of one image and where the image sits on their canvas.

    Attributes:
        raw: ``[1, D, Hp/32, Wp/32]`` trunk features (``clip_vis_dense``).
        resized: ``(h, w)`` of the resized image inside the padded canvas.
        canvas: ``(Hp, Wp)`` padded input size (multiples of 32).
        image_size: ``(H, W)`` of the original image (masks come at this size or at a working
            resolution of it).
        cdt_context: MAFT+ adapters only: ``[1, C, h, w]`` the reshape-quirk projection of
            ``raw``, which is both the adapter's input and what MAFT+'s cdt refines the text
            with (the pipeline fills it in once; caches store it so a relabel refines the text
            exactly as the first run did).
    """

    raw: torch.Tensor
    resized: tuple[int, int]
    canvas: tuple[int, int]
    image_size: tuple[int, int]
    cdt_context: torch.Tensor | None = None


def nearest_index(src: int, dst: int) -> np.ndarray:
    """Source index of each output pixel when resizing ``src`` pixels to ``dst`` by nearest
    neighbour with pixel centres aligned, bit for bit as Pillow's ``NEAREST`` (which detectron2
    uses for label maps): about ``floor((i + 0.5) * src / dst)``, computed as Pillow does, by
    adding ``src / dst`` once per pixel in double precision (exact ties can fall one pixel lower
    than the closed form).

    Returns:
        ``[dst]`` int64 indices in ``[0, src)``.
    """
    step = src / dst
    pos = np.cumsum(np.concatenate([[0.5 * step], np.full(dst - 1, step)]))
    return np.minimum(pos.astype(np.int64), src - 1)


def canvas_masks(
    masks: np.ndarray | torch.Tensor,
    resized: tuple[int, int],
    canvas: tuple[int, int],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Put image-resolution masks on the CLIP input canvas as hard 0/1 masks.

    Each mask is resized to the resized image's size by nearest neighbour (as detectron2 resizes
    label maps), so it stays 0/1, and zero-padded right and bottom like the image. The adapter
    then resizes it bilinearly to 4x its feature size.

    Args:
        masks: ``[Q, H, W]`` bool (or 0/1) at the original image size.
        resized: ``(h, w)`` of the resized image inside the canvas.
        canvas: ``(Hp, Wp)`` padded canvas size.
        device: where the result lives.

    Returns:
        ``[1, Q, Hp, Wp]`` float32 0/1.
    """
    m = torch.as_tensor(masks, device=device)
    if tuple(m.shape[-2:]) != tuple(resized):
        rows = torch.from_numpy(nearest_index(int(m.shape[-2]), resized[0])).to(m.device)
        cols = torch.from_numpy(nearest_index(int(m.shape[-1]), resized[1])).to(m.device)
        m = m.index_select(-2, rows).index_select(-1, cols)
    m = m[None].float()
    return F.pad(m, (0, canvas[1] - resized[1], 0, canvas[0] - resized[0]))


def adapter_input(
    backbone: ClipBackbone, adapter: MaskAdapter | None, raw: torch.Tensor
) -> torch.Tensor:
    """The projected dense features an adapter takes (and MAFT+'s cdt attends over).

    FC-CLIP / demo adapters: the clean per-pixel projection (``backbone.project_dense``). MAFT+
    adapters: the reshape-quirk projection MAFT+ was trained with
    (``backbone.project_dense_maftp``; the quirk is described there and in docs/maftp.md).

    Args:
        backbone: the CLIP backbone.
        adapter: the adapter (``None``: the clean projection).
        raw: ``[B, D, h, w]`` raw dense CLIP features.

    Returns:
        ``[B, C, h, w]``.
    """
    if adapter is not None and adapter.is_maftp:
        return backbone.project_dense_maftp(raw)
    return backbone.project_dense(raw)


def refine_text(adapter: MaskAdapter, context: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """MAFT+'s per-image text classifier: the names' embeddings and the void embedding, refined
    by the adapter's cdt with the image's :func:`adapter_input` features.

    As MAFT+ does at inference: the normalised void embedding is appended to the unit-norm text
    rows, then all rows go through the cdt together (each row is refined independently).

    Args:
        adapter: a MAFT+ adapter (``adapter.cdt`` set).
        context: ``[1, C, h, w]`` the image's :func:`adapter_input` features (whole canvas).
        text: ``[T, C]`` unit-norm text embeddings.

    Returns:
        ``[T + 1, C]`` refined rows, the void row last.

    Raises:
        ValueError: the adapter has no cdt.
    """
    if adapter.cdt is None:
        raise ValueError("refine_text needs a MAFT+ adapter (one with a cdt)")
    void = F.normalize(adapter.void_embedding.weight.reshape(1, -1), dim=-1)
    rows = torch.cat([text.to(void.dtype), void], dim=0)
    return adapter.cdt(context.to(void.dtype), rows)[0]


def adapter_embeddings(
    backbone: ClipBackbone,
    adapter: MaskAdapter,
    raw: torch.Tensor,
    masks: torch.Tensor,
    projected: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mask-Adapter embeddings of the masks of ``B`` images sharing a feature shape.

    Args:
        backbone: the CLIP backbone (its pooled-feature projection is applied).
        adapter: the Mask-Adapter.
        raw: ``[B, D, h, w]`` raw dense CLIP features.
        masks: ``[B, Q, Hp, Wp]`` float masks on the canvas (:func:`canvas_masks`).
        projected: ``[B, C, h, w]`` :func:`adapter_input` of ``raw``, when already computed.

    Returns:
        ``[B, Q, C]`` embeddings (the autocast dtype under autocast).
    """
    if projected is None:
        projected = adapter_input(backbone, adapter, raw)
    maps = adapter.mask_adapter(projected, masks)  # [B, Q, M, h, w]
    pooled = pool_with_maps(maps, raw)  # [B, Q, M, D]
    return backbone.project_pooled(pooled).mean(dim=2)  # [B, Q, C]


def pooling_embeddings(
    backbone: ClipBackbone, raw: torch.Tensor, masks: torch.Tensor
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

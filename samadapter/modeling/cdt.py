"""MAFT+'s content-dependent transfer (``cdt``): text embeddings refined by the image, pure torch.

MAFT+ (Jiao et al., ECCV 2024) does not classify with fixed text embeddings: before scoring, every
row of the text classifier (each class name, and the void embedding appended last) is a query of
one cross-attention layer over the image's dense projected CLIP features, with a sine position
encoding added to the keys. The attention output goes through a linear layer and a LayerNorm and
is added to the text row. Each text row attends on its own (no attention between rows), so a row's
refined value depends only on that row and the image.

Parameter names and shapes follow the official module so that the ``cdt.*`` tensors of the MAFT+
Mask-Adapter checkpoints load with ``strict=True``::

    cdt.cross_atten.multihead_attn.in_proj_weight   [3C, C]
    cdt.cross_atten.multihead_attn.in_proj_bias     [3C]
    cdt.cross_atten.multihead_attn.out_proj.weight  [C, C]
    cdt.cross_atten.multihead_attn.out_proj.bias    [C]
    cdt.cross_atten.norm.weight / .bias             [C]
    cdt.cross_atten.MLP.weight                      [C, C]
    cdt.cross_atten.MLP.bias                        [C]

``C`` is the CLIP embedding width (768 ConvNeXt-L, 640 ConvNeXt-B), with 8 heads.

Two ways of adding the update exist in the official code, chosen by its ``PANOPTIC_ON`` test
flag: ``t + LayerNorm(MLP(a))`` (``norm_update=True``) or ``LayerNorm(t + MLP(a))``
(``norm_update=False``), ``a`` being the attention output: the MAFTP-Large config's
``PANOPTIC_ON: True`` selects the first, the MAFTP-Base config's False the second (the registry's
``cdt_norm_update`` of each CLIP model).
"""

from __future__ import annotations

import math

import torch
from torch import nn

CDT_HEADS = 8
"""Attention heads of the official cdt (both sizes)."""


def sine_position_encoding(
    height: int,
    width: int,
    channels: int,
    device: torch.device | str = "cpu",
    temperature: float = 10000.0,
) -> torch.Tensor:
    """The normalised 2-D sine position encoding of DETR / Mask2Former (no padding mask).

    Row and column indices ``1..h`` / ``1..w`` are scaled to ``(0, 2π]`` (divided by the last
    index plus 1e-6, times 2π); each is encoded with ``channels / 2`` features: for feature ``j``
    the angle is ``pos / temperature ** (2 * (j // 2) / (channels / 2))``, sine on even ``j``,
    cosine on odd ``j``, interleaved. The row (y) features come first, then the column (x) ones.

    Args:
        height: ``h`` of the feature map.
        width: ``w`` of the feature map.
        channels: ``C``, even.
        device: where the result lives.
        temperature: the frequency base (10000).

    Returns:
        ``[1, C, h, w]`` float32.
    """
    half = channels // 2
    eps = 1e-6
    scale = 2 * math.pi
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    y = y / (y[-1] + eps) * scale
    x = x / (x[-1] + eps) * scale
    j = torch.arange(half, dtype=torch.float32, device=device)
    freq = temperature ** (2 * torch.div(j, 2, rounding_mode="floor") / half)

    def encode(pos: torch.Tensor) -> torch.Tensor:  # [n] -> [n, half]
        angle = pos[:, None] / freq
        return torch.stack((angle[:, 0::2].sin(), angle[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(y)[:, None, :].expand(height, width, half)
    pos_x = encode(x)[None, :, :].expand(height, width, half)
    return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)[None].contiguous()


class ShortcutCrossAttention(nn.Module):
    """Text rows attend over image tokens; the projected update is added with a LayerNorm.

    Args:
        dim: embedding width ``C``.
        heads: attention heads.
        norm_update: ``True``: ``t + norm(MLP(a))``; ``False``: ``norm(t + MLP(a))``.
    """

    def __init__(self, dim: int, heads: int = CDT_HEADS, norm_update: bool = False) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=0.0)
        self.norm = nn.LayerNorm(dim)
        self.MLP = nn.Linear(dim, dim)  # the official (upper-case) name, for the checkpoint keys
        self.norm_update = norm_update
        for p in self.multihead_attn.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, text: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Refine the text rows.

        Args:
            text: ``[T, B, C]`` queries (sequence first).
            memory: ``[L, B, C]`` image tokens (values).
            pos: ``[L, B, C]`` position encoding added to the keys.

        Returns:
            ``[T, B, C]``.
        """
        update = self.multihead_attn(
            query=text, key=memory + pos, value=memory, need_weights=False
        )[0]
        if self.norm_update:
            return text + self.norm(self.MLP(update))
        return self.norm(text + self.MLP(update))


class ContentDependentTransfer(nn.Module):
    """MAFT+'s ``cdt``: refines a text classifier with one image's dense features.

    Args:
        dim: embedding width ``C`` (768 ConvNeXt-L, 640 ConvNeXt-B).
        heads: attention heads (8).
        norm_update: residual form, see :class:`ShortcutCrossAttention`.
    """

    def __init__(self, dim: int, heads: int = CDT_HEADS, norm_update: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.cross_atten = ShortcutCrossAttention(dim, heads, norm_update)

    @property
    def norm_update(self) -> bool:
        """The residual form (see :class:`ShortcutCrossAttention`)."""
        return self.cross_atten.norm_update

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Per-image text classifier.

        Args:
            image: ``[B, C, h, w]`` the image's dense features as MAFT+ makes them (the
                reshape-quirk projection, :meth:`~samadapter.modeling.clip_backbone.ClipBackbone.
                project_dense_maftp`), over the whole padded canvas.
            text: ``[T, C]`` text classifier (unit-norm class-name rows, the normalised void
                embedding last), shared by the ``B`` images.

        Returns:
            ``[B, T, C]`` refined rows (not normalised; the official scoring uses them as they
            are, only the mask embeddings are normalised).
        """
        b, c, h, w = image.shape
        pos = sine_position_encoding(h, w, c, image.device).to(image.dtype)
        pos = pos.flatten(2).permute(2, 0, 1).expand(h * w, b, c)  # [L, B, C]
        memory = image.flatten(2).permute(2, 0, 1)  # [L, B, C]
        queries = text.to(image.dtype)[:, None, :].expand(text.shape[0], b, c)
        return self.cross_atten(queries, memory, pos).permute(1, 0, 2)

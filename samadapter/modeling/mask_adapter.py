"""The Mask-Adapter head (Li et al., CVPR 2025), pure torch.

Layer names, shapes and epsilons follow the official head (docs/architecture.md) so that the
official checkpoints load with ``strict=True``: the head's parameters are ``mask_adapter.*`` and
the learned "no object" class is ``void_embedding.weight`` in the detectron2 layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samadapter.modeling.cdt import ContentDependentTransfer


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of an ``[B, C, H, W]`` tensor (parameters ``weight``,
    ``bias``), as used inside ``mask_downscaling``."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: ``[B, C, H, W]``. Returns: the same shape, normalised per pixel over ``C``."""
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 conv, channel LayerNorm, MLP x4 with GELU, layer scale,
    residual. Parameter names ``dwconv``, ``norm``, ``pwconv1``, ``pwconv2``, ``gamma``."""

    def __init__(self, dim: int, layer_scale_init: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: ``[B, C, H, W]``. Returns: ``[B, C, H, W]``."""
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class MaskAdapterHead(nn.Module):
    """Turns (projected CLIP features, one binary mask) into ``num_maps`` semantic activation maps.

    Args:
        clip_dim: channels of the projected dense CLIP features (768 ConvNeXt-L, 640 ConvNeXt-B).
        hidden_dim: width of the ConvNeXt blocks (768 in the official models).
        mask_in_chans: channels after mask downscaling (16).
        num_maps: activation maps per mask (16).
    """

    def __init__(
        self,
        clip_dim: int = 768,
        hidden_dim: int = 768,
        mask_in_chans: int = 16,
        num_maps: int = 16,
    ) -> None:
        super().__init__()
        self.num_maps = num_maps
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=3, stride=2, padding=1),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=3, stride=2, padding=1),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, clip_dim, kernel_size=1),
        )
        self.fuse = nn.Conv2d(clip_dim, hidden_dim, kernel_size=1)
        self.cnext1 = ConvNeXtBlock(hidden_dim)
        self.cnext2 = ConvNeXtBlock(hidden_dim)
        self.cnext3 = ConvNeXtBlock(hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim, eps=1e-5)
        self.final = nn.Conv2d(hidden_dim, num_maps, kernel_size=1)

    def forward(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Semantic activation maps of each mask.

        Args:
            features: ``[B, C, h, w]`` projected dense CLIP features (``C == clip_dim``).
            masks: ``[B, Q, H, W]`` float masks (0/1) on the same padded canvas as the features.

        Returns:
            ``[B, Q, M, h, w]`` activation maps (``M == num_maps``), logits.
        """
        b, q = masks.shape[:2]
        h, w = features.shape[-2:]
        m = masks.reshape(b * q, 1, *masks.shape[-2:]).to(features.dtype)
        m = F.interpolate(m, size=(4 * h, 4 * w), mode="bilinear", align_corners=False)
        m = self.mask_downscaling(m)  # [B*Q, C, h, w]
        x = features.repeat_interleave(q, dim=0) + m
        x = self.fuse(x)
        x = self.cnext3(self.cnext2(self.cnext1(x)))
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.final(x)
        return x.reshape(b, q, self.num_maps, h, w)


def pool_with_maps(maps: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Weighted-average pooling of dense features with activation maps (docs/architecture.md).

    Each map is resized to the feature grid, turned into spatial weights by
    ``softmax(logsigmoid(map))`` over all pixels, and used to average the raw features.

    Args:
        maps: ``[B, Q, M, h', w']`` activation-map logits.
        features: ``[B, D, h, w]`` raw (unprojected) dense CLIP features.

    Returns:
        ``[B, Q, M, D]`` pooled features.
    """
    b, q, m = maps.shape[:3]
    h, w = features.shape[-2:]
    x = maps.reshape(b, q * m, *maps.shape[-2:])
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    weights = torch.softmax(F.logsigmoid(x).reshape(b, q * m, h * w), dim=-1)
    feats = features.reshape(b, features.shape[1], h * w).transpose(1, 2).to(weights.dtype)
    return torch.bmm(weights, feats).reshape(b, q, m, -1)


def average_mask_pool(
    masks: torch.Tensor, features: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Plain mask pooling, the baseline without adapter: average of the features under each mask.

    Args:
        masks: ``[B, Q, H, W]`` float masks on the features' padded canvas (any resolution; they
            are resized bilinearly to the feature grid).
        features: ``[B, D, h, w]`` raw dense CLIP features.
        eps: added to the mask area so empty masks pool to zeros.

    Returns:
        ``[B, Q, D]`` pooled features.
    """
    h, w = features.shape[-2:]
    m = masks.to(features.dtype)
    if m.shape[-2:] != (h, w):
        m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
    pooled = torch.einsum("bqhw,bdhw->bqd", m, features)
    return pooled / (m.sum(dim=(-2, -1))[..., None] + eps)


class MaskAdapter(nn.Module):
    """The adapter head plus the learned void ("no object") class embedding, and for the MAFT+
    checkpoints MAFT+'s content-dependent transfer.

    ``state_dict()`` keys are those of the official detectron2 checkpoints minus the CLIP
    backbone: ``mask_adapter.*`` and ``void_embedding.weight`` (plus ``cdt.*`` for MAFT+).

    The two families differ in more than the ``cdt``: a MAFT+ adapter takes the dense features
    MAFT+'s reshape quirk makes (:meth:`~samadapter.modeling.clip_backbone.ClipBackbone.
    project_dense_maftp`) instead of the clean per-pixel projection, and classifies against the
    text classifier refined by the ``cdt`` with those same features.

    Args:
        clip_dim: projected CLIP embedding size (768 large, 640 base).
        hidden_dim: ConvNeXt block width (768).
        mask_in_chans: mask downscaling width (16).
        num_maps: activation maps per mask (16).
        cdt_norm_update: ``None`` for FC-CLIP / demo adapters (no cdt); for MAFT+ the cdt's
            residual form (the registry's ``cdt_norm_update`` of its CLIP).
    """

    def __init__(
        self,
        clip_dim: int = 768,
        hidden_dim: int = 768,
        mask_in_chans: int = 16,
        num_maps: int = 16,
        cdt_norm_update: bool | None = None,
    ) -> None:
        super().__init__()
        self.mask_adapter = MaskAdapterHead(clip_dim, hidden_dim, mask_in_chans, num_maps)
        self.void_embedding = nn.Embedding(1, clip_dim)
        self.cdt: ContentDependentTransfer | None = None
        if cdt_norm_update is not None:
            self.cdt = ContentDependentTransfer(clip_dim, norm_update=cdt_norm_update)

    @property
    def is_maftp(self) -> bool:
        """A MAFT+ adapter: quirk-projected input features and cdt-refined text."""
        return self.cdt is not None

    @property
    def num_maps(self) -> int:
        """Activation maps per mask."""
        return self.mask_adapter.num_maps

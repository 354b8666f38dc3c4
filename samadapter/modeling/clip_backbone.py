"""open_clip ConvNeXt as a dense feature extractor and text encoder (docs/architecture.md).

The only module of samadapter that imports ``open_clip``. Pure torch: building a model here never
reads a file; weights are loaded into :attr:`ClipBackbone.model` by :mod:`samadapter.models`.
The one exception to "torch only" is the test-time resize, done with Pillow's bilinear filter on
the uint8 image because that is what the official detectron2 pipeline does (see
:func:`resize_for_clip`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from samadapter import registry
from samadapter.registry import ClipArch

PIXEL_MEAN = (122.7709383, 116.7460125, 104.09373615)
PIXEL_STD = (68.5005327, 66.6321579, 70.32316305)


def clip_input_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Size of the image fed to CLIP: the official test-time resize at ``size``.

    detectron2's ``ResizeShortestEdge(size, max_size=size)``: the short side is scaled to
    ``size``; if the long side would then exceed ``size``, the image is scaled down instead so
    that its long side is ``size``. Either way the long side of a non-square image ends at
    ``size`` (a 683x512 photo at 896 becomes 896x672). Each side is rounded as ``int(x + 0.5)``.

    Args:
        height: image height ``H``.
        width: image width ``W``.
        size: the CLIP input size (896 in the official configs).

    Returns:
        ``(h, w)`` of the resized image (each at least 1).
    """
    scale = size / min(height, width)
    if height < width:
        new_h, new_w = float(size), scale * width
    else:
        new_h, new_w = scale * height, float(size)
    if max(new_h, new_w) > size:
        shrink = size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return max(1, int(new_h + 0.5)), max(1, int(new_w + 0.5))


def resize_for_clip(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an image as the official test pipeline does before CLIP.

    The output size is :func:`clip_input_size`; the pixels are resampled by Pillow's bilinear
    filter on the uint8 image (antialiased when shrinking, result rounded to uint8), exactly
    what detectron2's ``ResizeTransform`` does to uint8 images.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        size: the CLIP input size.

    Returns:
        ``[h, w, 3]`` uint8 RGB (the input itself when no resize is needed).
    """
    h, w = clip_input_size(image.shape[0], image.shape[1], size)
    if (h, w) == tuple(image.shape[:2]):
        return image
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).resize(
        (w, h), Image.Resampling.BILINEAR
    )
    return np.array(resized)


def build_clip_model(arch: str, device: str | torch.device = "cpu") -> nn.Module:
    """An open_clip CLIP model with random weights.

    Args:
        arch: a CLIP registry name.
        device: where to build it (``meta``: shapes only).

    Returns:
        the ``open_clip.CLIP`` module (eval mode). Its ``state_dict`` keys are those stored under
        ``backbone.clip_model.`` in the official Mask-Adapter checkpoints.
    """
    config = registry.get("clip", arch).open_clip_config
    if config is not None:  # a test model: its own open_clip config
        with torch.device(device):
            model = open_clip.CLIP(**copy.deepcopy(dict(config)))
    else:
        # open_clip logs a warning when no pretrained tag is given; weights are loaded later.
        log = logging.getLogger()
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            model = open_clip.create_model(arch, pretrained=None, device=device)
        finally:
            log.setLevel(level)
    return model.eval()


class ClipBackbone(nn.Module):
    """Dense image features, their per-pixel projection, pooled-feature projection, text encoding.

    Args:
        model: an ``open_clip.CLIP`` with a timm ConvNeXt trunk (``visual.trunk``, ``visual.head``).
        arch: its architecture record.
    """

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, model: nn.Module, arch: ClipArch) -> None:
        super().__init__()
        self.model: Any = model  # open_clip.CLIP; typed loosely (timm submodules)
        self.arch = arch
        self.tokenizer = open_clip.get_tokenizer(
            registry.get("clip", arch.name).tokenizer or arch.name
        )
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), False)
        self.dense_runner: Callable[[torch.Tensor], torch.Tensor] | None = None
        """Replaces the trunk in :meth:`dense_features` when set (e.g. an OpenVINO model of
        ``model.visual.trunk.forward_features``)."""

    @classmethod
    def from_arch(cls, arch: str) -> ClipBackbone:
        """Random-initialised backbone of a CLIP registry name."""
        return cls(build_clip_model(arch), registry.get("clip", arch).clip_arch())

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's learned log logit scale (a scalar tensor)."""
        return torch.as_tensor(self.model.logit_scale)

    @property
    def device(self) -> torch.device:
        """Where the backbone's tensors live."""
        return self.pixel_mean.device

    def preprocess(
        self, image: np.ndarray, size: int, size_divisibility: int = 32
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Resize, normalise and zero-pad an image as the official test pipeline does.

        The resize is :func:`resize_for_clip` (long side ``size`` for a non-square image), then
        ``(x - mean) / std`` on the 0-255 scale, then zero padding on the right and bottom up to
        multiples of ``size_divisibility``.

        Args:
            image: ``[H, W, 3]`` uint8 RGB.
            size: CLIP input size (896 official; see :func:`clip_input_size`).
            size_divisibility: pad height and width up to a multiple of this (32).

        Returns:
            ``([1, 3, Hp, Wp]`` float tensor on the backbone's device, ``(h, w)`` the resized
            image's size inside the padded canvas).
        """
        resized = resize_for_clip(np.asarray(image), size)
        h, w = resized.shape[:2]
        x = torch.tensor(resized, dtype=torch.uint8, device=self.device)
        x = x.permute(2, 0, 1)[None].float()
        x = (x - self.pixel_mean) / self.pixel_std
        hp = -(-h // size_divisibility) * size_divisibility
        wp = -(-w // size_divisibility) * size_divisibility
        x = F.pad(x, (0, wp - w, 0, hp - h))
        return x, (h, w)

    def dense_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Trunk output at stride 32 (``clip_vis_dense``).

        Args:
            pixels: ``[B, 3, Hp, Wp]`` normalised images.

        Returns:
            ``[B, D, Hp/32, Wp/32]`` raw dense features.
        """
        if self.dense_runner is not None:
            return self.dense_runner(pixels).to(pixels.device)
        return self.model.visual.trunk.forward_features(pixels)

    def project_dense(self, features: torch.Tensor) -> torch.Tensor:
        """Per-pixel projection into the joint embedding space: ``trunk.head.norm`` then
        ``visual.head``.

        Args:
            features: ``[B, D, h, w]`` raw dense features.

        Returns:
            ``[B, C, h, w]`` projected features.
        """
        x = self.model.visual.trunk.head.norm(features)
        x = self.model.visual.head(x.permute(0, 2, 3, 1))
        return x.permute(0, 3, 1, 2)

    def project_dense_maftp(self, features: torch.Tensor) -> torch.Tensor:
        """The dense projection MAFT+ computes, quirk included (its ``visual_prediction_forward_
        convnext``), which the MAFT+ Mask-Adapter checkpoints were trained on.

        QUIRK, reproduced on purpose: the ``[B, D, h, w]`` map is turned into ``B·h·w`` vectors
        of length ``D`` with a plain ``reshape`` of the channel-first tensor, NOT a permute to
        channels-last. Vector ``i`` is therefore the ``i``-th run of ``D`` consecutive values of
        the flattened ``[D, h·w]`` memory: it mixes channels and positions (for ``h·w < D`` one
        vector holds parts of several channels' whole maps). Each vector then goes through
        ``trunk.head`` (as a 1x1 map) and ``visual.head`` like a pooled feature, and the results
        are laid back on the ``h x w`` grid. MAFT+ feeds this map both to the adapter and to the
        cdt (:mod:`samadapter.modeling.cdt`); a clean permute gives other numbers, which these
        weights were not trained on. See docs/maftp.md.

        Args:
            features: ``[B, D, h, w]`` raw dense features.

        Returns:
            ``[B, C, h, w]``.
        """
        b, d, h, w = features.shape
        x = self.project_pooled(features.reshape(b * h * w, d))  # the quirk: reshape, no permute
        # Contiguous, so a map computed here and one read back from a cache give the same bits.
        return x.reshape(b, h, w, x.shape[-1]).permute(0, 3, 1, 2).contiguous()

    def project_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """Project pooled raw features (``trunk.head`` on a 1x1 map, then ``visual.head``).

        Args:
            pooled: ``[..., D]`` raw features.

        Returns:
            ``[..., C]`` embeddings.
        """
        lead = pooled.shape[:-1]
        x = pooled.reshape(-1, pooled.shape[-1], 1, 1)
        x = self.model.visual.head(self.model.visual.trunk.head(x))
        return x.reshape(*lead, x.shape[-1])

    def encode_text(self, texts: list[str], truncate: bool = True) -> torch.Tensor:
        """Text embeddings (not normalised).

        With ``truncate``, the token sequences are cut after the longest prompt's end token
        instead of running all 77 positions. The text transformer's causal mask means no position
        attends to later ones, so the end token's output (the embedding) is unchanged.

        Args:
            texts: ``N`` prompts.
            truncate: run only up to the longest real token length.

        Returns:
            ``[N, C]`` float tensor.
        """
        tokens = self.tokenizer(texts).to(self.device)  # [N, 77]
        m = self.model
        if not truncate or getattr(m, "text_pool_type", "argmax") != "argmax":
            return m.encode_text(tokens).float()
        end = tokens.argmax(dim=-1)  # the end-of-text token has the largest id
        length = int(end.max()) + 1
        tokens = tokens[:, :length]
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast) + m.positional_embedding[:length].to(cast)
        mask = m.attn_mask[:length, :length] if m.attn_mask is not None else None
        x = m.ln_final(m.transformer(x, attn_mask=mask))
        x = x[torch.arange(x.shape[0], device=x.device), end]
        if isinstance(m.text_projection, nn.Linear):
            x = m.text_projection(x)
        elif m.text_projection is not None:
            x = x @ m.text_projection
        return x.float()

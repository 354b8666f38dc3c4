"""SAM's automatic mask generation, re-done for speed on SAM's own modules and weights.

Given a ``Sam`` model object (its ``image_encoder``, ``prompt_encoder`` and ``mask_decoder``), this
module produces the masks segment-anything's ``SamAutomaticMaskGenerator`` produces for the same
settings (``crop_n_layers == 0``), but spends less on the way:

- the image is embedded once and the image side of the decoder's first two-way layer (the
  key/value projections of the token-to-image attention and the query projection of the
  image-to-token attention, all functions of the image embedding and its positional encoding
  only) is computed once per image instead of once per prompt;
- the cross attentions between the few prompt tokens and the 4096 image tokens are
  re-associated so that the image tokens are never projected (fewer than half the
  multiply-adds; the same function, rounded differently in the last bits);
- prompts are decoded in balanced batches of a size that suits the device, optionally through a
  ``torch.compile``-d decoder (any compile failure falls back to eager execution);
- the predicted IoU comes from the transformer's output token alone, so the mask head (the
  upscaling convolutions, about half of the decoder's work) runs only for prompts with a mask
  that passes the predicted-IoU filter;
- the predicted-IoU filter runs on the low-resolution outputs, before any upsampling; only the
  survivors are upsampled, at SAM's resolution (the stability score needs the upsampled logits:
  counting low-resolution pixels would not give the same numbers), and in small chunks;
- boxes and full-resolution masks are made for the survivors only; masks are kept as
  low-resolution logits until box NMS has picked the final ones.

The generator does not import ``segment_anything``: it takes the modules as objects (wired by
:mod:`samadapter.modeling.proposer`). Image crops (``crop_n_layers > 0``) are not implemented
here; the proposer uses segment-anything's generator for them.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import batched_nms

if TYPE_CHECKING:
    from samadapter.config import AmgSettings

MASK_THRESHOLD = 0.0
"""Logit above which a pixel is inside a mask (SAM's ``mask_threshold``)."""
STABILITY_OFFSET = 1.0
"""Logit shift for the stability score (SAM's ``stability_score_offset``)."""
COMPILE_ENV = "SAMADAPTER_COMPILE"
"""Environment variable: ``0`` turns ``torch.compile`` of the decoder off everywhere."""


def compile_allowed() -> bool:
    """Whether ``torch.compile`` may be used (``SAMADAPTER_COMPILE`` is not ``0``)."""
    return os.environ.get(COMPILE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class GeneratorOptions:
    """How the generator computes (never what it computes, up to rounding).

    Attributes:
        compile: ``torch.compile`` the decoder (falls back to eager on any failure; also off when
            ``SAMADAPTER_COMPILE=0``).
        compile_after: images decoded eagerly before compiling: compiling costs about a minute
            on a small CPU (less with torch's on-disk cache), so a one-image run should not pay
            it; from the second image of a folder on, the compiled decoder wins.
        dtype: compute dtype of the image encoder and mask decoder (``torch.float32`` or
            ``torch.bfloat16`` via autocast); masks are post-processed in float32 either way.
        prompt_batch: prompts decoded per call; 0 picks one for the device (CPU: 16, GPU: the
            settings' ``points_per_batch``).
        upsample_chunk: masks upsampled to full resolution at once (bounds memory).
        two_pass: a sparse grid first (half the points per side), then the full grid's points
            that no mask kept from the sparse pass covers (TinySAM's hierarchical strategy).
            Fewer prompts where objects are large; not the same masks as one pass.
        factored: compute the decoder's cross attentions without projecting the image tokens
            (:func:`decode_tokens`): the same function, fewer multiply-adds, rounding that
            differs from SAM's in the last bits.
    """

    compile: bool = False
    compile_after: int = 1
    dtype: torch.dtype = torch.float32
    prompt_batch: int = 0
    upsample_chunk: int = 16
    two_pass: bool = False
    factored: bool = True


# ---------------------------------------------------------------------------------------------
# Small utilities (the same definitions SAM uses)


def point_grid(n_per_side: int) -> np.ndarray:
    """Points evenly spaced in the unit square, at cell centres.

    Args:
        n_per_side: points per side.

    Returns:
        ``[n*n, 2]`` float64 ``(x, y)`` in ``[0, 1]``, rows of constant ``y`` first.
    """
    half = 1 / (2 * n_per_side)
    side = np.linspace(half, 1 - half, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def resized_shape(h: int, w: int, long_side: int) -> tuple[int, int]:
    """``(h, w)`` scaled so the longer side is ``long_side`` (rounded half up)."""
    scale = long_side / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def stability_score(
    logits: torch.Tensor, threshold: float = MASK_THRESHOLD, offset: float = STABILITY_OFFSET
) -> torch.Tensor:
    """IoU of a mask binarised at ``threshold + offset`` and at ``threshold - offset``.

    The first mask lies inside the second, so the IoU is the ratio of their areas.

    Args:
        logits: ``[N, H, W]`` mask logits.

    Returns:
        ``[N]`` float32.
    """
    inner = (logits > threshold + offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    outer = (logits > threshold - offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    return inner / outer


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (inclusive pixel indices) around boolean masks; zeros for empty ones.

    Args:
        masks: ``[N, H, W]`` bool.

    Returns:
        ``[N, 4]`` int64 ``(x0, y0, x1, y1)``.
    """
    n, h, w = masks.shape
    if masks.numel() == 0:
        return torch.zeros(n, 4, dtype=torch.int64, device=masks.device)
    rows = masks.any(dim=-1)  # [N, H]
    cols = masks.any(dim=-2)  # [N, W]
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    y1 = (rows * ys).amax(dim=-1)
    y0 = (rows * ys + h * ~rows).amin(dim=-1)
    x1 = (cols * xs).amax(dim=-1)
    x0 = (cols * xs + w * ~cols).amin(dim=-1)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    empty = (x1 < x0) | (y1 < y0)
    return boxes * (~empty)[:, None]


def near_crop_edge(
    boxes: torch.Tensor, crop_box: list[int], image_box: list[int], atol: float = 20.0
) -> torch.Tensor:
    """Boxes touching a crop's border where it is not the image's border.

    Args:
        boxes: ``[N, 4]`` XYXY in the crop's frame.
        crop_box: ``[x0, y0, x1, y1]`` of the crop in the image.
        image_box: ``[0, 0, W, H]``.

    Returns:
        ``[N]`` bool.
    """
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    whole = torch.as_tensor(image_box, dtype=torch.float, device=boxes.device)
    offset = torch.tensor([crop_box[0], crop_box[1]] * 2, device=boxes.device)
    b = (boxes + offset).float()
    at_crop = torch.isclose(b, crop[None], atol=atol, rtol=0)
    at_image = torch.isclose(b, whole[None], atol=atol, rtol=0)
    return (at_crop & ~at_image).any(dim=1)


def remove_small_regions(mask: np.ndarray, min_area: int, holes: bool) -> tuple[np.ndarray, bool]:
    """Fill holes (``holes=True``) or drop islands smaller than ``min_area`` pixels.

    Regions are 8-connected. When every island is small, the largest one is kept.

    Args:
        mask: ``[H, W]`` bool.

    Returns:
        ``(mask, changed)``.
    """
    import cv2

    work = (mask ^ holes).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(work, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = [i + 1 for i, s in enumerate(sizes) if s < min_area]
    if not small:
        return mask, False
    if holes:
        fill = [0, *small]
    else:
        small_set = set(small)
        fill = [i for i in range(1, count) if i not in small_set]
        if not fill:
            fill = [int(np.argmax(sizes)) + 1]
    return np.isin(labels, fill), True


# ---------------------------------------------------------------------------------------------
# The decoder with the image side of its first layer shared by all prompts


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)


def _attend(attn: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SAM's decoder attention on already-projected, head-split ``q``, ``k``, ``v`` (the batch
    dimensions broadcast)."""
    scores = q @ k.transpose(-1, -2)
    scores = scores / math.sqrt(q.shape[-1])
    out = torch.softmax(scores, dim=-1) @ v
    b, n, t, c = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, n * c))


def _attention(attn: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    n = attn.num_heads
    return _attend(
        attn, _heads(attn.q_proj(q), n), _heads(attn.k_proj(k), n), _heads(attn.v_proj(v), n)
    )


def _per_head(linear: Any, n: int) -> torch.Tensor:
    """A projection's ``[n*c, C]`` weight as ``[n, c, C]`` (one block of rows per head)."""
    w = linear.weight
    return w.reshape(n, w.shape[0] // n, w.shape[1])


def _tokens_to_image(
    attn: Any, queries: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor
) -> torch.Tensor:
    """Attention of the few prompt tokens to the image, without projecting the image.

    The same function as ``attn(queries, k_in, v_in)``, re-associated: each head's query is
    mapped back through the key projection (``q Wk``: the key bias adds a constant to every
    score of a row, which the softmax removes), so the scores are one product with the
    unprojected image keys; the softmax-weighted sum of the unprojected image values is then
    projected (the weights of a row sum to 1, so the value bias passes through). For ``T``
    tokens and ``N`` image positions of width ``C`` this costs ``2 * heads * T * N * C``
    multiply-adds instead of ``2 * N * C * C'`` for projecting the image (``C' = C / 2``): less
    than half. Rounding differs from SAM's order in the last bits.

    Args:
        attn: SAM's ``Attention``.
        queries: ``[B, T, C]`` token queries (positional encoding added).
        k_in: ``[B, N, C]`` image keys (positional encoding added).
        v_in: ``[B, N, C]`` image values.

    Returns:
        ``[B, T, C]``.
    """
    n = attn.num_heads
    q = _heads(attn.q_proj(queries), n)  # [B, n, T, c]
    b, _, t, c = q.shape
    mapped = (q @ _per_head(attn.k_proj, n)) / math.sqrt(c)  # [B, n, T, C]
    scores = mapped.reshape(b, n * t, -1) @ k_in.transpose(1, 2)  # [B, n*T, N]
    pooled = torch.softmax(scores, dim=-1) @ v_in  # [B, n*T, C]
    heads = pooled.reshape(b, n, t, -1) @ _per_head(attn.v_proj, n).transpose(1, 2)
    heads = heads + attn.v_proj.bias.reshape(n, 1, c)  # [B, n, T, c]
    return attn.out_proj(heads.transpose(1, 2).reshape(b, t, n * c))


def _image_to_tokens(
    attn: Any, q_img: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """Attention of the image to the few prompt tokens, without projecting the image.

    The same function as ``attn(q_img, keys, values)``, re-associated: each head's token keys
    are mapped back through the query projection (``k Wq``, plus the score the query bias
    gives each token), and each head's token values forward through the output projection
    (``v Wo``), so the image enters one product for the scores and leaves one product for the
    output: ``2 * heads * T * N * C`` multiply-adds instead of ``2 * N * C * C'``. Rounding
    differs from SAM's order in the last bits.

    Args:
        attn: SAM's ``Attention``.
        q_img: ``[B, N, C]`` image queries (positional encoding added), or ``[1, n, N, c]``
            already projected and head-split (the decoder's first layer, shared by all prompts).
        keys: ``[B, T, C]`` token keys (positional encoding added).
        values: ``[B, T, C]`` token values.

    Returns:
        ``[B, N, C]``.
    """
    n = attn.num_heads
    k = _heads(attn.k_proj(keys), n)  # [B, n, T, c]
    v = _heads(attn.v_proj(values), n)
    b, _, t, c = k.shape
    if q_img.dim() == 4:  # projected: scores per head, [B, n, N, T] -> [B, N, n*T]
        scores = (q_img @ k.transpose(-1, -2)) / math.sqrt(c)
        size = scores.shape[2]
        probs = torch.softmax(scores, dim=-1).permute(0, 2, 1, 3).reshape(b, size, n * t)
    else:
        mapped = (k @ _per_head(attn.q_proj, n)) / math.sqrt(c)  # [B, n, T, C]
        bias = (k @ attn.q_proj.bias.reshape(n, c, 1)) / math.sqrt(c)  # [B, n, T, 1]
        scores = q_img @ mapped.reshape(b, n * t, -1).transpose(1, 2) + bias.reshape(b, 1, n * t)
        size = scores.shape[1]
        probs = torch.softmax(scores.reshape(b, size, n, t), dim=-1).reshape(b, size, n * t)
    w_out = attn.out_proj.weight  # [C, n*c]
    v_out = v @ w_out.reshape(w_out.shape[0], n, c).permute(1, 2, 0)  # [B, n, T, C]
    return probs @ v_out.reshape(b, n * t, -1) + attn.out_proj.bias


@dataclass
class ImageSide:
    """Per-image decoder inputs, computed once.

    Attributes:
        keys: ``[1, HW, C]`` image embedding plus the no-mask prompt embedding.
        pos: ``[1, HW, C]`` positional encoding.
        t2i_k: ``[1, heads, HW, c]`` first layer, token-to-image keys.
        t2i_v: ``[1, heads, HW, c]`` first layer, token-to-image values.
        i2t_q: ``[1, heads, HW, c]`` first layer, image-to-token queries.
        size: ``(h, w)`` of the embedding grid.
    """

    keys: torch.Tensor
    pos: torch.Tensor
    t2i_k: torch.Tensor
    t2i_v: torch.Tensor
    i2t_q: torch.Tensor
    size: tuple[int, int]


def image_side(
    decoder: Any, embedding: torch.Tensor, dense: torch.Tensor, pos: torch.Tensor
) -> ImageSide:
    """The image-only part of the decoder's first two-way layer.

    Args:
        decoder: SAM's ``MaskDecoder``.
        embedding: ``[1, C, h, w]`` image embedding.
        dense: ``[1, C, h, w]`` dense prompt embedding (the no-mask embedding for point prompts).
        pos: ``[1, C, h, w]`` dense positional encoding.
    """
    h, w = embedding.shape[-2:]
    keys = (embedding + dense).flatten(2).permute(0, 2, 1)
    pe = pos.flatten(2).permute(0, 2, 1)
    layer = decoder.transformer.layers[0]
    t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    k = keys + pe
    return ImageSide(
        keys=keys,
        pos=pe,
        t2i_k=_heads(t2i.k_proj(k), t2i.num_heads),
        t2i_v=_heads(t2i.v_proj(keys), t2i.num_heads),
        i2t_q=_heads(i2t.q_proj(k), i2t.num_heads),
        size=(int(h), int(w)),
    )


def decode_tokens(
    decoder: Any, side: ImageSide, sparse: torch.Tensor, factored: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAM's two-way transformer and IoU head on a batch of prompts (no masks yet).

    The same arithmetic as ``MaskDecoder.predict_masks`` (multimask output) up to the mask
    upscaling, except that the first layer's image-side projections are taken from ``side``
    instead of being recomputed on ``B`` copies of the image embedding. With ``factored``, the
    cross attentions never project the image (:func:`_tokens_to_image`,
    :func:`_image_to_tokens`): the same function with fewer multiply-adds, rounded differently.

    Args:
        decoder: SAM's ``MaskDecoder``.
        side: from :func:`image_side`.
        sparse: ``[B, T, C]`` sparse prompt embeddings.
        factored: re-associate the cross attentions.

    Returns:
        ``([B, 1 + masks + T, C]`` output tokens, ``[B, HW, C]`` image tokens, ``[B, 3]``
        predicted IoU of the three multimask outputs).
    """
    b = sparse.shape[0]
    out_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([out_tokens[None].expand(b, -1, -1), sparse.to(out_tokens.dtype)], dim=1)
    transformer = decoder.transformer
    queries, keys = tokens, side.keys
    for i, layer in enumerate(transformer.layers):
        if i == 0:  # the first layer skips the positional encoding in self-attention
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + tokens
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        q = queries + tokens
        if i == 0:
            attn_out = _attend(t2i, _heads(t2i.q_proj(q), t2i.num_heads), side.t2i_k, side.t2i_v)
        elif factored:
            attn_out = _tokens_to_image(t2i, q, keys + side.pos, keys)
        else:
            attn_out = _attention(t2i, q, keys + side.pos, keys)
        queries = layer.norm2(queries + attn_out)
        queries = layer.norm3(queries + layer.mlp(queries))
        q = queries + tokens
        if i == 0 and factored:
            attn_out = _image_to_tokens(i2t, side.i2t_q, q, queries)
        elif i == 0:
            attn_out = _attend(
                i2t,
                side.i2t_q,
                _heads(i2t.k_proj(q), i2t.num_heads),
                _heads(i2t.v_proj(queries), i2t.num_heads),
            )
        elif factored:
            attn_out = _image_to_tokens(i2t, keys + side.pos, q, queries)
        else:
            attn_out = _attention(i2t, keys + side.pos, q, queries)
        keys = layer.norm4(keys + attn_out)
    q = queries + tokens
    final = transformer.final_attn_token_to_image
    if factored:
        attn_out = _tokens_to_image(final, q, keys + side.pos, keys)
    else:
        attn_out = _attention(final, q, keys + side.pos, keys)
    queries = transformer.norm_final_attn(queries + attn_out)
    iou = decoder.iou_prediction_head(queries[:, 0, :])
    return queries, keys, iou[:, 1:]


def decode_masks(
    decoder: Any, queries: torch.Tensor, keys: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """The three multimask outputs' low-resolution logits from :func:`decode_tokens`' outputs.

    Args:
        decoder: SAM's ``MaskDecoder``.
        queries: ``[B, 1 + masks + T, C]`` output tokens.
        keys: ``[B, HW, C]`` image tokens.
        size: ``(h, w)`` of the embedding grid.

    Returns:
        ``[B, 3, 4h, 4w]`` mask logits.
    """
    b = queries.shape[0]
    h, w = size
    src = keys.transpose(1, 2).reshape(b, -1, h, w)
    up = decoder.output_upscaling(src)
    mlps = decoder.output_hypernetworks_mlps
    hyper = torch.stack([mlps[j](queries[:, 1 + j, :]) for j in range(1, len(mlps))], dim=1)
    c, uh, uw = up.shape[1:]
    return (hyper @ up.reshape(b, c, uh * uw)).reshape(b, len(mlps) - 1, uh, uw)


# ---------------------------------------------------------------------------------------------
# The generator


@dataclass
class Proposals:
    """Masks from a proposer, with SAM's per-mask fields.

    Attributes:
        masks: ``[N, h, w]`` bool, at the image's size or, for a large image, at the working
            resolution the proposer ran at.
        predicted_iou: ``[N]`` float32.
        stability_score: ``[N]`` float32.
        point_coords: ``[N, 2]`` float32 prompt point ``(x, y)`` in image pixels.
        crop_box: ``[N, 4]`` float32 XYWH in image pixels.
        timings: seconds: ``sam_encoder`` (image embedding) and ``sam_decoder`` (the rest).
        original_size: ``(H, W)`` of the image when the masks are smaller; ``None``: the masks
            are at the image's size.
        prompts: point prompts decoded (samadapter's own generator; 0: not counted).
    """

    masks: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    point_coords: np.ndarray
    crop_box: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    original_size: tuple[int, int] | None = None
    prompts: int = 0

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the image the masks belong to."""
        if self.original_size is not None:
            return int(self.original_size[0]), int(self.original_size[1])
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @classmethod
    def from_masks(cls, masks: np.ndarray) -> Proposals:
        """Proposals from bare masks ``[N, H, W]``; SAM's fields are NaN / the full image."""
        n, h, w = masks.shape
        nan = np.full(n, np.nan, dtype=np.float32)
        crop = np.tile(np.array([0, 0, w, h], dtype=np.float32), (n, 1))
        return cls(masks.astype(bool), nan, nan.copy(), np.full((n, 2), np.nan, np.float32), crop)

    def __len__(self) -> int:
        return len(self.masks)


@dataclass
class _Candidates:
    """Masks that passed the per-prompt filters (low-res logits kept, not full masks)."""

    low_res: list[torch.Tensor] = field(default_factory=list)
    iou: list[torch.Tensor] = field(default_factory=list)
    stability: list[torch.Tensor] = field(default_factory=list)
    boxes: list[torch.Tensor] = field(default_factory=list)
    points: list[np.ndarray] = field(default_factory=list)

    def cat(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
        if not self.iou:
            z = torch.zeros(0)
            return z, z, z, torch.zeros(0, 4, dtype=torch.int64), np.zeros((0, 2))
        return (
            torch.cat(self.low_res),
            torch.cat(self.iou),
            torch.cat(self.stability),
            torch.cat(self.boxes),
            np.concatenate(self.points),
        )


class MaskGenerator:
    """Automatic mask generation on a ``Sam`` model's modules.

    Args:
        sam: segment-anything's ``Sam`` (any object with ``image_encoder``, ``prompt_encoder``,
            ``mask_decoder``, ``preprocess`` and ``device``), weights loaded.
        settings: :class:`~samadapter.modeling.proposer.AmgSettings` (``crop_n_layers`` must be
            0).
        options: how to compute.
        encoder: replaces ``sam.image_encoder`` for the embedding (e.g. a compiled runtime):
            ``[1, 3, S, S]`` float32 normalised, padded pixels to ``[1, C, h, w]``.
    """

    def __init__(
        self,
        sam: Any,
        settings: AmgSettings,
        options: GeneratorOptions | None = None,
        encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if settings.crop_n_layers != 0:
            raise ValueError("MaskGenerator does not implement image crops (crop_n_layers > 0)")
        self.sam = sam
        self.settings = settings
        self.options = options or GeneratorOptions()
        self.encoder = encoder
        self._compiled: tuple[Callable[..., Any], Callable[..., Any]] | None = None
        self.compile_failed: str | None = None
        self.images = 0

    # -- pieces --------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where the SAM modules live."""
        return torch.device(self.sam.device)

    def _autocast(self) -> Any:
        if self.options.dtype == torch.float32:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.options.dtype)

    def embed(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """The image embedding, as SAM's predictor computes it.

        Args:
            image: ``[H, W, 3]`` uint8 RGB.

        Returns:
            ``([1, C, h, w]`` float32 embedding, ``(h', w')`` the resized image's size).
        """
        size = int(self.sam.image_encoder.img_size)
        h, w = resized_shape(image.shape[0], image.shape[1], size)
        resized = np.array(
            Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.Resampling.BILINEAR)
        )
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        pixels = self.sam.preprocess(x)
        with self._autocast():
            emb = (self.encoder or self.sam.image_encoder)(pixels)
        return emb.float(), (h, w)

    def prompt_batch(self, n: int, fixed: bool = False) -> int:
        """Prompts per decoder call: balanced batches near the device's preferred size, or
        exactly that size (``fixed``: counts that vary per image then reuse one compiled
        graph)."""
        target = self.options.prompt_batch
        if target <= 0:
            target = 16 if self.device.type == "cpu" else self.settings.points_per_batch
        target = max(1, min(target, self.settings.points_per_batch))
        if fixed:
            return target
        target = min(target, n)
        batches = -(-n // target)
        return -(-n // batches)

    def _decoder_fns(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """:func:`decode_tokens` and :func:`decode_masks`, compiled when allowed and due."""
        if (
            not (self.options.compile and compile_allowed())
            or self.compile_failed
            or self.images < self.options.compile_after
        ):
            return decode_tokens, decode_masks
        if self._compiled is None:
            # Inductor's first use logs "No CUDA runtime is found" on CPU-only machines: noise in
            # the user's terminal and logs, not a problem.
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            # The transformer sees fixed prompt batches (one graph); the mask head sees the
            # prompts that passed the IoU filter, a count that varies (torch then compiles one
            # graph with a dynamic batch size).
            self._compiled = (
                torch.compile(decode_tokens, dynamic=False),
                torch.compile(decode_masks),
            )
        return self._compiled

    def _run_decoder(
        self, side: ImageSide, sparse: torch.Tensor, real: int, iou_thresh: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode a batch of prompts; upscale masks only for prompts that can pass the filter.

        Args:
            side: from :meth:`image_side`.
            sparse: ``[B, T, C]`` prompt embeddings (``B >= real``; the rest is padding).
            real: prompts that count.
            iou_thresh: masks with a predicted IoU at or below it are not wanted (``<= 0``:
                every mask is, as with SAM's generator whose filter is then off).

        Returns:
            ``([3*real]`` float32 predicted IoU in prompt order (three masks a prompt),
            ``[k]`` indices of the wanted masks in it, ``[k, 4h, 4w]`` float32 their
            low-resolution logits).
        """
        tokens_fn, masks_fn = self._decoder_fns()
        decoder = self.sam.mask_decoder
        factored = self.options.factored
        with self._autocast():
            try:
                queries, keys, iou = tokens_fn(decoder, side, sparse, factored)
                iou = iou[:real].float().flatten()
                idx = torch.arange(len(iou), device=iou.device)
                if iou_thresh > 0.0:
                    idx = idx[iou > iou_thresh]
                prompts = torch.unique(idx // 3)
                if len(prompts):
                    low = masks_fn(decoder, queries[prompts], keys[prompts], side.size)
                    pos = torch.searchsorted(prompts, idx // 3) * 3 + idx % 3
                    low = low.flatten(0, 1)[pos].float()
                else:
                    h, w = side.size
                    low = torch.zeros(0, 4 * h, 4 * w, device=iou.device)
                return iou, idx, low
            except Exception as e:  # compile problems of any kind: run eagerly from now on
                if tokens_fn is decode_tokens:
                    raise
                self.compile_failed = f"{type(e).__name__}: {e}".splitlines()[0][:200]
                warnings.warn(
                    f"torch.compile of SAM's decoder failed ({self.compile_failed}); "
                    "running it uncompiled",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return self._run_decoder(side, sparse, real, iou_thresh)

    def upsample(
        self, low_res: torch.Tensor, input_size: tuple[int, int], image_size: tuple[int, int]
    ) -> torch.Tensor:
        """Low-resolution logits to the image's resolution, as SAM does it (to the encoder's
        input size, crop the padding, to the image size; bilinear both times).

        Args:
            low_res: ``[N, h, w]`` float32 logits.

        Returns:
            ``[N, H, W]`` float32 logits.
        """
        size = int(self.sam.image_encoder.img_size)
        x = F.interpolate(low_res[:, None], (size, size), mode="bilinear", align_corners=False)
        x = x[..., : input_size[0], : input_size[1]]
        x = F.interpolate(x, image_size, mode="bilinear", align_corners=False)
        return x[:, 0]

    # -- the loop ------------------------------------------------------------------------------

    def points(self, image_size: tuple[int, int]) -> np.ndarray:
        """The prompt grid in image pixels: ``[P, 2]`` float64 ``(x, y)``."""
        h, w = image_size
        return point_grid(self.settings.points_per_side) * np.array([[w, h]])

    @torch.inference_mode()
    def generate(self, image: np.ndarray) -> Proposals:
        """Masks for an image.

        Args:
            image: ``[H, W, 3]`` uint8 RGB.

        Returns:
            :class:`Proposals`, largest first.
        """
        t0 = time.perf_counter()
        embedding, input_size = self.embed(image)
        self._sync()
        t1 = time.perf_counter()
        image_size = (int(image.shape[0]), int(image.shape[1]))
        side = self.image_side(embedding)
        points = self.points(image_size)
        if self.options.two_pass:
            cands, prompts = self.two_pass(side, points, input_size, image_size)
        else:
            cands, prompts = self.decode_points(side, points, input_size, image_size), len(points)
        result = self.finish(cands, input_size, image_size, prompts)
        self._sync()
        result.timings = {"sam_encoder": t1 - t0, "sam_decoder": time.perf_counter() - t1}
        self.images += 1
        return result

    def image_side(self, embedding: torch.Tensor) -> ImageSide:
        """The per-image decoder inputs for ``embedding`` (``[1, C, h, w]``)."""
        pe = self.sam.prompt_encoder
        h, w = embedding.shape[-2:]
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, h, w)
        with self._autocast():
            return image_side(self.sam.mask_decoder, embedding, dense, pe.get_dense_pe())

    def _prompt_outputs(
        self,
        side: ImageSide,
        points: np.ndarray,
        input_size: tuple[int, int],
        image_size: tuple[int, int],
        fixed: bool = False,
        iou_thresh: float = 0.0,
    ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per batch of prompts: ``(points [b, 2], predicted IoU [3b] float32, indices [k] of
        the masks whose IoU passes ``iou_thresh``, their low-res logits [k, h, w] float32)``,
        three masks per prompt in prompt order."""
        n = len(points)
        if n == 0:
            return
        batch = self.prompt_batch(n, fixed)
        scale = np.array([[input_size[1] / image_size[1], input_size[0] / image_size[0]]])
        for start in range(0, n, batch):
            chunk = points[start : start + batch]
            real = len(chunk)
            if real < batch:  # pad to a fixed shape (one compiled graph); dropped below
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real, axis=0)])
            coords = torch.as_tensor(chunk * scale, device=self.device)[:, None, :]
            labels = torch.ones(batch, 1, dtype=torch.int, device=self.device)
            sparse, _ = self.sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            iou, idx, low = self._run_decoder(side, sparse, real, iou_thresh)
            yield chunk[:real], iou, idx, low

    @torch.inference_mode()
    def predict(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered masks for given point prompts (for comparing settings on the same prompts).

        Args:
            image: ``[H, W, 3]`` uint8 RGB.
            points: ``[P, 2]`` ``(x, y)`` in image pixels.

        Returns:
            ``([P, 3, H, W]`` bool masks, ``[P, 3]`` float32 predicted IoU).
        """
        embedding, input_size = self.embed(image)
        image_size = (int(image.shape[0]), int(image.shape[1]))
        side = self.image_side(embedding)
        masks, ious = [], []
        for _, iou, _, low in self._prompt_outputs(
            side, np.asarray(points, np.float64), input_size, image_size
        ):
            for part in low.split(max(1, self.options.upsample_chunk)):
                masks.append((self.upsample(part, input_size, image_size) > MASK_THRESHOLD).cpu())
            ious.append(iou.cpu())
        h, w = image_size
        return (
            torch.cat(masks).reshape(-1, 3, h, w).numpy(),
            torch.cat(ious).reshape(-1, 3).numpy(),
        )

    def decode_points(
        self,
        side: ImageSide,
        points: np.ndarray,
        input_size: tuple[int, int],
        image_size: tuple[int, int],
        cands: _Candidates | None = None,
        fixed: bool = False,
    ) -> _Candidates:
        """Decode point prompts and keep the masks that pass SAM's per-prompt filters.

        Args:
            side: from :meth:`image_side`.
            points: ``[P, 2]`` float64 ``(x, y)`` in image pixels.
            input_size: the resized image's ``(h, w)`` inside the encoder input.
            image_size: ``(H, W)``.
        """
        s = self.settings
        cands = _Candidates() if cands is None else cands
        outputs = self._prompt_outputs(
            side, points, input_size, image_size, fixed, s.pred_iou_thresh
        )
        chunk_size = max(1, self.options.upsample_chunk)
        for chunk, iou, idx, low in outputs:
            for part, logits in zip(idx.split(chunk_size), low.split(chunk_size), strict=True):
                self._filter_chunk(
                    cands,
                    logits,
                    iou[part],
                    chunk[(part // 3).cpu().numpy()],
                    input_size,
                    image_size,
                )
        return cands

    def two_pass(
        self,
        side: ImageSide,
        points: np.ndarray,
        input_size: tuple[int, int],
        image_size: tuple[int, int],
    ) -> tuple[_Candidates, int]:
        """Sparse grid, then the dense ``points`` not inside any mask kept so far.

        Returns:
            the candidates of both passes and the number of prompts decoded.
        """
        h, w = image_size
        n_side = self.settings.points_per_side
        sparse = point_grid(max(1, n_side // 2)) * np.array([[w, h]])
        cands = self.decode_points(side, sparse, input_size, image_size, fixed=True)
        covered = np.zeros(len(points), dtype=bool)
        cols = np.clip(points[:, 0].astype(np.int64), 0, w - 1)
        rows = np.clip(points[:, 1].astype(np.int64), 0, h - 1)
        for low in cands.low_res:
            for part in low.split(max(1, self.options.upsample_chunk)):
                masks = self.upsample(part.to(self.device), input_size, image_size) > 0
                covered |= masks[:, rows, cols].any(dim=0).cpu().numpy()
        rest = points[~covered]
        self.decode_points(side, rest, input_size, image_size, cands, fixed=True)
        return cands, len(sparse) + len(rest)

    def _filter_chunk(
        self,
        cands: _Candidates,
        low: torch.Tensor,
        iou: torch.Tensor,
        points: np.ndarray,
        input_size: tuple[int, int],
        image_size: tuple[int, int],
    ) -> None:
        s = self.settings
        logits = self.upsample(low, input_size, image_size)
        stab = stability_score(logits, offset=s.stability_score_offset)
        keep = torch.ones_like(iou, dtype=torch.bool)
        if s.stability_score_thresh > 0.0:
            keep = stab >= s.stability_score_thresh
            logits = logits[keep]
        masks = logits > MASK_THRESHOLD
        boxes = masks_to_boxes(masks)
        h, w = image_size
        edge = near_crop_edge(boxes, [0, 0, w, h], [0, 0, w, h])
        ok = (~edge).nonzero()[:, 0]
        sel = keep.nonzero()[:, 0][ok]
        cands.low_res.append(low[sel].cpu())
        cands.iou.append(iou[sel].cpu())
        cands.stability.append(stab[sel].cpu())
        cands.boxes.append(boxes[ok].cpu())
        cands.points.append(points[sel.cpu().numpy()])

    def finish(
        self,
        cands: _Candidates,
        input_size: tuple[int, int],
        image_size: tuple[int, int],
        prompts: int,
    ) -> Proposals:
        """Box NMS, full-resolution masks of the kept ones, small-region clean-up, sorting."""
        s = self.settings
        h, w = image_size
        low, iou, stab, boxes, points = cands.cat()
        keep = batched_nms(boxes.float(), iou, torch.zeros(len(boxes)), s.box_nms_thresh)
        low, iou, stab, boxes = low[keep], iou[keep], stab[keep], boxes[keep]
        points = points[keep.numpy()]
        chunks = [
            self.upsample(part.to(self.device), input_size, image_size) > MASK_THRESHOLD
            for part in low.split(max(1, self.options.upsample_chunk))
        ]
        masks = torch.cat(chunks).cpu().numpy() if chunks else np.zeros((0, h, w), dtype=bool)
        if s.min_mask_region_area > 0 and len(masks):
            masks, keep_np = self._clean_regions(
                masks, s.min_mask_region_area, max(s.box_nms_thresh, s.crop_nms_thresh)
            )
            iou, stab, points = iou[keep_np], stab[keep_np], points[keep_np]
        areas = masks.reshape(len(masks), h * w).sum(axis=1)
        order = np.argsort(-areas, kind="stable")
        n = len(order)
        return Proposals(
            masks=masks[order],
            predicted_iou=iou.numpy().astype(np.float32)[order],
            stability_score=stab.numpy().astype(np.float32)[order],
            point_coords=points.astype(np.float32).reshape(n, 2)[order],
            crop_box=np.tile(np.array([0, 0, w, h], dtype=np.float32), (n, 1)),
            prompts=prompts,
        )

    @staticmethod
    def _clean_regions(
        masks: np.ndarray, min_area: int, nms_thresh: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """SAM's small-region clean-up: fill small holes, drop small islands, then box NMS
        preferring unchanged masks. Returns the kept masks and their indices."""
        cleaned, scores = [], []
        for mask in masks:
            m, holes = remove_small_regions(mask, min_area, holes=True)
            m, islands = remove_small_regions(m, min_area, holes=False)
            cleaned.append(m)
            scores.append(float(not (holes or islands)))
        stacked = np.stack(cleaned)
        boxes = masks_to_boxes(torch.from_numpy(stacked))
        keep = batched_nms(
            boxes.float(), torch.as_tensor(scores), torch.zeros(len(boxes)), nms_thresh
        ).numpy()
        return stacked[keep], keep

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

"""Class-agnostic mask proposals from SAM's automatic mask generator.

The only module of samadapter that imports ``segment_anything``. Pure torch: building a model here
never reads a file; weights are loaded by :mod:`samadapter.models`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)


@dataclass(frozen=True)
class SamArch:
    """A SAM image-encoder size (the prompt encoder and mask decoder are the same for all)."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    img_size: int = 1024
    prompt_dim: int = 256
    window_size: int = 14
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8


SAM_ARCHS: dict[str, SamArch] = {
    "vit_b": SamArch(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamArch(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamArch(1280, 32, 16, (7, 15, 23, 31)),
    # Test-only: a few thousand parameters, 128 px input; random weights give random masks.
    "tiny-random": SamArch(32, 2, 2, (1,), img_size=128, prompt_dim=32, window_size=4,
                           decoder_depth=1, decoder_mlp_dim=64, decoder_heads=2),
}


def build_sam(arch: str) -> Sam:
    """A SAM model with random weights (same module layout as segment-anything's builders).

    Args:
        arch: a key of :data:`SAM_ARCHS`.

    Returns:
        the ``Sam`` module in eval mode; its ``state_dict`` keys match the official ``.pth`` files.
    """
    a = SAM_ARCHS[arch]
    patch = 16
    grid = a.img_size // patch
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=a.depth, embed_dim=a.embed_dim, img_size=a.img_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=a.num_heads,
            patch_size=patch, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=a.global_attn_indexes, window_size=a.window_size,
            out_chans=a.prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=a.prompt_dim, image_embedding_size=(grid, grid),
            input_image_size=(a.img_size, a.img_size), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=a.decoder_depth, embedding_dim=a.prompt_dim,
                                          mlp_dim=a.decoder_mlp_dim, num_heads=a.decoder_heads),
            transformer_dim=a.prompt_dim, iou_head_depth=3, iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


@dataclass
class AmgSettings:
    """SAM automatic-mask-generator knobs, named as SAM names them (defaults are SAM's)."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    min_mask_region_area: int = 0


@dataclass
class Proposals:
    """Masks from a proposer, with SAM's per-mask fields.

    Attributes:
        masks: ``[N, H, W]`` bool.
        predicted_iou: ``[N]`` float32.
        stability_score: ``[N]`` float32.
        point_coords: ``[N, 2]`` float32 prompt point ``(x, y)``.
        crop_box: ``[N, 4]`` float32 XYWH.
        timings: seconds: ``sam_encoder`` (image embedding) and ``sam_decoder`` (the rest).
    """

    masks: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    point_coords: np.ndarray
    crop_box: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_masks(cls, masks: np.ndarray) -> Proposals:
        """Proposals from bare masks ``[N, H, W]``; SAM's fields are NaN / the full image."""
        n, h, w = masks.shape
        nan = np.full(n, np.nan, dtype=np.float32)
        crop = np.tile(np.array([0, 0, w, h], dtype=np.float32), (n, 1))
        return cls(masks.astype(bool), nan, nan.copy(), np.full((n, 2), np.nan, np.float32), crop)

    def __len__(self) -> int:
        return len(self.masks)


class SamProposer:
    """Runs SAM's automatic mask generator on an image.

    Args:
        sam: a ``Sam`` model (weights loaded, on its device).
        settings: the generator's knobs.
    """

    def __init__(self, sam: Sam, settings: AmgSettings) -> None:
        self.sam = sam
        self.settings = settings
        self._encoder_seconds = 0.0
        self.sam.image_encoder.register_forward_pre_hook(self._start_encoder)
        self.sam.image_encoder.register_forward_hook(self._stop_encoder)
        self._t0 = 0.0

    def _start_encoder(self, *_: Any) -> None:
        self._t0 = time.perf_counter()

    def _stop_encoder(self, *_: Any) -> None:
        if self.sam.image_encoder.training is False and torch.cuda.is_available():
            torch.cuda.synchronize()
        self._encoder_seconds += time.perf_counter() - self._t0

    def generator(self) -> SamAutomaticMaskGenerator:
        """segment-anything's generator configured with :attr:`settings`."""
        s = self.settings
        return SamAutomaticMaskGenerator(
            self.sam, points_per_side=s.points_per_side, points_per_batch=s.points_per_batch,
            pred_iou_thresh=s.pred_iou_thresh, stability_score_thresh=s.stability_score_thresh,
            box_nms_thresh=s.box_nms_thresh, crop_n_layers=s.crop_n_layers,
            min_mask_region_area=s.min_mask_region_area, output_mode="binary_mask",
        )

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> Proposals:
        """Propose masks.

        Args:
            image: ``[H, W, 3]`` uint8 RGB.

        Returns:
            :class:`Proposals`, masks sorted by area, largest first.
        """
        h, w = image.shape[:2]
        self._encoder_seconds = 0.0
        t0 = time.perf_counter()
        records = self.generator().generate(image)
        total = time.perf_counter() - t0
        records.sort(key=lambda r: -int(r["area"]))
        n = len(records)
        masks = (np.stack([r["segmentation"] for r in records]) if n
                 else np.zeros((0, h, w), dtype=bool))
        return Proposals(
            masks=masks.astype(bool),
            predicted_iou=np.array([r["predicted_iou"] for r in records], dtype=np.float32),
            stability_score=np.array([r["stability_score"] for r in records], dtype=np.float32),
            point_coords=np.array([r["point_coords"][0] for r in records],
                                  dtype=np.float32).reshape(n, 2),
            crop_box=np.array([r["crop_box"] for r in records], dtype=np.float32).reshape(n, 4),
            timings={"sam_encoder": self._encoder_seconds,
                     "sam_decoder": total - self._encoder_seconds},
        )

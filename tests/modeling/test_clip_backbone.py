"""CLIP backbone on the tiny random model: preprocessing, dense features, projections, text."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from samadapter.modeling.clip_backbone import (
    PIXEL_MEAN,
    PIXEL_STD,
    ClipBackbone,
    clip_input_size,
    resize_for_clip,
)


@pytest.fixture(scope="module")
def backbone() -> ClipBackbone:
    torch.manual_seed(0)
    return ClipBackbone.from_arch("tiny-random").eval()


def test_clip_input_size_is_detectron2_test_resize() -> None:
    # ResizeShortestEdge(S, max_size=S): the long side of a non-square image ends at S.
    assert clip_input_size(512, 683, 896) == (672, 896)  # ADE 683x512, not 1195x896
    assert clip_input_size(683, 512, 896) == (896, 672)
    assert clip_input_size(500, 500, 896) == (896, 896)
    assert clip_input_size(2000, 3000, 640) == (427, 640)  # 426.67 rounds half up
    assert clip_input_size(100, 50, 64) == (64, 32)
    assert clip_input_size(48, 64, 64) == (48, 64)  # already there: unchanged
    assert clip_input_size(1, 5000, 896) == (1, 896)  # never 0


def test_resize_for_clip_is_pillow_bilinear_on_uint8() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(61, 90, 3), dtype=np.uint8)
    out = resize_for_clip(image, 128)
    assert out.dtype == np.uint8 and out.shape == (87, 128, 3)
    expected = np.asarray(Image.fromarray(image).resize((128, 87), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(out, expected)
    small = resize_for_clip(image, 45)  # shrinking (antialiased by Pillow)
    assert small.shape == (30, 45, 3)
    np.testing.assert_array_equal(
        small, np.asarray(Image.fromarray(image).resize((45, 30), Image.Resampling.BILINEAR))
    )
    assert resize_for_clip(image, 90) is image  # 61x90 at 90: nothing to do


def test_preprocess_resizes_normalises_and_pads(backbone: ClipBackbone) -> None:
    image = np.full((50, 100, 3), 200, dtype=np.uint8)
    pixels, (h, w) = backbone.preprocess(image, size=64)
    assert (h, w) == (32, 64)  # long side 64 (the short side alone would give 64x128)
    assert pixels.shape == (1, 3, 32, 64)
    expected = (200 - torch.tensor(PIXEL_MEAN)) / torch.tensor(PIXEL_STD)
    assert torch.allclose(pixels[0, :, 10, 10], expected, atol=1e-4)
    pixels, (h, w) = backbone.preprocess(image, size=80)
    assert (h, w) == (40, 80)
    assert pixels.shape == (1, 3, 64, 96)  # padded up to multiples of 32
    assert torch.all(pixels[0, :, 40:, :] == 0) and torch.all(pixels[0, :, :, 80:] == 0)


def test_dense_features_are_stride_32(backbone: ClipBackbone) -> None:
    feats = backbone.dense_features(torch.randn(1, 3, 64, 96))
    assert feats.shape == (1, backbone.arch.dense_dim, 2, 3)


def test_dense_projection_equals_pooled_projection_per_pixel(backbone: ClipBackbone) -> None:
    with torch.no_grad():
        feats = torch.randn(1, 320, 2, 3)
        dense = backbone.project_dense(feats)
        pooled = backbone.project_pooled(feats[0].permute(1, 2, 0).reshape(6, 320))
    assert dense.shape == (1, 32, 2, 3)
    assert torch.allclose(dense[0].permute(1, 2, 0).reshape(6, 32), pooled, atol=1e-5)


def test_encode_text_shape(backbone: ClipBackbone) -> None:
    with torch.no_grad():
        emb = backbone.encode_text(["a photo of a cat.", "There is a dog in the scene"])
    assert emb.shape == (2, 32)
    assert not torch.allclose(emb[0], emb[1])


def test_truncated_text_encoding_equals_full_length(backbone: ClipBackbone) -> None:
    prompts = ["a photo of a cat.", "There is a large traffic light in the scene.", "x"]
    with torch.no_grad():
        short = backbone.encode_text(prompts, truncate=True)
        full = backbone.encode_text(prompts, truncate=False)
    torch.testing.assert_close(short, full, atol=1e-5, rtol=1e-5)

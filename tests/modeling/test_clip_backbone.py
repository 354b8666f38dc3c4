"""CLIP backbone on the tiny random model: preprocessing, dense features, projections, text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samadapter.modeling.clip_backbone import CLIP_ARCHS, PIXEL_MEAN, PIXEL_STD, ClipBackbone


@pytest.fixture(scope="module")
def backbone() -> ClipBackbone:
    torch.manual_seed(0)
    return ClipBackbone.from_arch("tiny-random").eval()


def test_preprocess_resizes_short_side_normalises_and_pads(backbone: ClipBackbone) -> None:
    image = np.full((50, 100, 3), 200, dtype=np.uint8)
    pixels, (h, w) = backbone.preprocess(image, short_side=64)
    assert (h, w) == (64, 128)
    assert pixels.shape == (1, 3, 64, 128)
    expected = (200 - torch.tensor(PIXEL_MEAN)) / torch.tensor(PIXEL_STD)
    assert torch.allclose(pixels[0, :, 10, 10], expected, atol=1e-4)
    pixels, (h, w) = backbone.preprocess(image, short_side=40)
    assert (h, w) == (40, 80)
    assert pixels.shape == (1, 3, 64, 96)  # padded up to multiples of 32
    assert torch.all(pixels[0, :, 40:, :] == 0) and torch.all(pixels[0, :, :, 80:] == 0)


def test_dense_features_are_stride_32(backbone: ClipBackbone) -> None:
    feats = backbone.dense_features(torch.randn(1, 3, 64, 96))
    assert feats.shape == (1, CLIP_ARCHS["tiny-random"].dense_dim, 2, 3)


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

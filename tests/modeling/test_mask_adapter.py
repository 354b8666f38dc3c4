"""Mask-Adapter head: official parameter names/shapes, forward shapes, pooling by hand."""

from __future__ import annotations

import math

import pytest
import torch

from samadapter.modeling.mask_adapter import (
    MaskAdapter,
    MaskAdapterHead,
    average_mask_pool,
    pool_with_maps,
)


def _official_keys(c: int = 768) -> dict[str, tuple[int, ...]]:
    """The adapter tensors of the official checkpoints, written out as data."""
    keys: dict[str, tuple[int, ...]] = {
        "mask_adapter.mask_downscaling.0.weight": (4, 1, 3, 3),
        "mask_adapter.mask_downscaling.0.bias": (4,),
        "mask_adapter.mask_downscaling.1.weight": (4,),
        "mask_adapter.mask_downscaling.1.bias": (4,),
        "mask_adapter.mask_downscaling.3.weight": (16, 4, 3, 3),
        "mask_adapter.mask_downscaling.3.bias": (16,),
        "mask_adapter.mask_downscaling.4.weight": (16,),
        "mask_adapter.mask_downscaling.4.bias": (16,),
        "mask_adapter.mask_downscaling.6.weight": (c, 16, 1, 1),
        "mask_adapter.mask_downscaling.6.bias": (c,),
        "mask_adapter.fuse.weight": (768, c, 1, 1),
        "mask_adapter.fuse.bias": (768,),
        "mask_adapter.norm.weight": (768,),
        "mask_adapter.norm.bias": (768,),
        "mask_adapter.final.weight": (16, 768, 1, 1),
        "mask_adapter.final.bias": (16,),
        "void_embedding.weight": (1, c),
    }
    for i in (1, 2, 3):
        p = f"mask_adapter.cnext{i}."
        keys.update(
            {
                p + "dwconv.weight": (768, 1, 7, 7),
                p + "dwconv.bias": (768,),
                p + "norm.weight": (768,),
                p + "norm.bias": (768,),
                p + "pwconv1.weight": (3072, 768),
                p + "pwconv1.bias": (3072,),
                p + "pwconv2.weight": (768, 3072),
                p + "pwconv2.bias": (768,),
                p + "gamma": (768,),
            }
        )
    return keys


@pytest.mark.parametrize("clip_dim", [768, 640])
def test_parameter_names_and_shapes_match_the_official_checkpoints(clip_dim: int) -> None:
    model = MaskAdapter(clip_dim=clip_dim)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == _official_keys(clip_dim)
    assert len(model.mask_adapter.state_dict()) == 43  # + void_embedding.weight
    head_params = sum(p.numel() for p in model.mask_adapter.parameters())
    assert head_params == 14_907_568 if clip_dim == 768 else head_params < 14_907_568


def test_epsilons_and_layer_scale_init() -> None:
    head = MaskAdapterHead()
    assert head.mask_downscaling[1].eps == 1e-6
    assert head.mask_downscaling[4].eps == 1e-6
    assert head.cnext1.norm.eps == 1e-6
    assert head.norm.eps == 1e-5
    assert torch.allclose(head.cnext2.gamma, torch.full((768,), 1e-6))


def test_forward_shape_and_mask_resizing() -> None:
    torch.manual_seed(0)
    head = MaskAdapterHead(clip_dim=8, hidden_dim=8, mask_in_chans=16, num_maps=4).eval()
    feats = torch.randn(1, 8, 3, 5)
    masks = torch.zeros(1, 6, 96, 160)
    masks[:, :, 10:50, 20:90] = 1
    out = head(feats, masks)
    assert out.shape == (1, 6, 4, 3, 5)
    assert torch.allclose(out[0, 0], out[0, 5])  # same mask, same maps
    # Masks at any resolution are resized to 4x the feature grid first.
    small = torch.nn.functional.interpolate(masks, size=(12, 20), mode="bilinear")
    assert head(feats, small).shape == out.shape


def test_pool_with_maps_picks_the_pixel_a_huge_map_points_at() -> None:
    feats = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)  # D=2, 3x4 grid
    maps = torch.full((1, 1, 2, 3, 4), -50.0)
    maps[0, 0, 0, 1, 2] = 50.0  # map 0: one pixel dominates
    pooled = pool_with_maps(maps, feats)
    assert pooled.shape == (1, 1, 2, 2)
    assert torch.allclose(pooled[0, 0, 0], feats[0, :, 1, 2], atol=1e-4)
    # map 1: uniform logits -> the plain mean of all pixels.
    assert torch.allclose(pooled[0, 0, 1], feats[0].reshape(2, -1).mean(dim=1), atol=1e-5)


def test_pool_with_maps_weights_are_softmax_of_logsigmoid() -> None:
    feats = torch.tensor([[[[1.0, 3.0]]]])  # D=1, 1x2 grid
    maps = torch.tensor([[[[[0.0, math.log(3.0)]]]]])  # sigmoid: 1/2 and 3/4
    w0, w1 = 0.5 / 1.25, 0.75 / 1.25
    expected = w0 * 1.0 + w1 * 3.0
    assert pool_with_maps(maps, feats).item() == pytest.approx(expected, abs=1e-6)


def test_average_mask_pool_by_hand() -> None:
    feats = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # D=1, 2x2
    masks = torch.tensor(
        [[[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]]
    )
    pooled = average_mask_pool(masks, feats)
    assert pooled.shape == (1, 3, 1)
    assert pooled[0, :, 0].tolist() == pytest.approx([1.5, 4.0, 0.0], abs=1e-5)

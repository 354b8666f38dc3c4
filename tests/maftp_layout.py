"""Random-weight checkpoints in the official MAFT+ + Mask-Adapter layout, built from names/shapes.

The official MAFT_Plus model's state dict holds ``backbone.clip_model.*`` (the open_clip model,
whose own names and shapes are open_clip's), the Mask-Adapter head ``mask_adapter.*``,
``void_embedding.weight``, MAFT+'s content-dependent transfer ``cdt.*`` and modules samadapter
does not use (``sem_seg_head.*``: the Mask2Former decoder). The adapter and cdt tables below are
written out from the official module definitions, independent of samadapter's modules, so a
checkpoint built here tests that ours load it strictly. ``import maftp_layout`` from any test
(tests/ is on sys.path via its conftest).
"""

from __future__ import annotations

from pathlib import Path

import torch

from samadapter import registry
from samadapter.modeling.clip_backbone import build_clip_model


def adapter_table(
    c: int, hidden: int = 768, mask_chans: int = 16, maps: int = 16
) -> dict[str, tuple[int, ...]]:
    """``mask_adapter.*`` and ``void_embedding.weight`` names/shapes (MASKAdapterHead)."""
    q = mask_chans // 4
    keys: dict[str, tuple[int, ...]] = {
        "mask_adapter.mask_downscaling.0.weight": (q, 1, 3, 3),
        "mask_adapter.mask_downscaling.0.bias": (q,),
        "mask_adapter.mask_downscaling.1.weight": (q,),
        "mask_adapter.mask_downscaling.1.bias": (q,),
        "mask_adapter.mask_downscaling.3.weight": (mask_chans, q, 3, 3),
        "mask_adapter.mask_downscaling.3.bias": (mask_chans,),
        "mask_adapter.mask_downscaling.4.weight": (mask_chans,),
        "mask_adapter.mask_downscaling.4.bias": (mask_chans,),
        "mask_adapter.mask_downscaling.6.weight": (c, mask_chans, 1, 1),
        "mask_adapter.mask_downscaling.6.bias": (c,),
        "mask_adapter.fuse.weight": (hidden, c, 1, 1),
        "mask_adapter.fuse.bias": (hidden,),
        "mask_adapter.norm.weight": (hidden,),
        "mask_adapter.norm.bias": (hidden,),
        "mask_adapter.final.weight": (maps, hidden, 1, 1),
        "mask_adapter.final.bias": (maps,),
        "void_embedding.weight": (1, c),
    }
    for i in (1, 2, 3):
        p = f"mask_adapter.cnext{i}."
        keys.update(
            {
                p + "dwconv.weight": (hidden, 1, 7, 7),
                p + "dwconv.bias": (hidden,),
                p + "norm.weight": (hidden,),
                p + "norm.bias": (hidden,),
                p + "pwconv1.weight": (4 * hidden, hidden),
                p + "pwconv1.bias": (4 * hidden,),
                p + "pwconv2.weight": (hidden, 4 * hidden),
                p + "pwconv2.bias": (hidden,),
                p + "gamma": (hidden,),
            }
        )
    return keys


def cdt_table(c: int) -> dict[str, tuple[int, ...]]:
    """``cdt.*`` names/shapes (ContentDependentTransfer: ShortCut_CrossAttention with an
    nn.MultiheadAttention, a LayerNorm ``norm`` and a Linear ``MLP``; the sine position
    encoding has no parameters)."""
    return {
        "cdt.cross_atten.multihead_attn.in_proj_weight": (3 * c, c),
        "cdt.cross_atten.multihead_attn.in_proj_bias": (3 * c,),
        "cdt.cross_atten.multihead_attn.out_proj.weight": (c, c),
        "cdt.cross_atten.multihead_attn.out_proj.bias": (c,),
        "cdt.cross_atten.norm.weight": (c,),
        "cdt.cross_atten.norm.bias": (c,),
        "cdt.cross_atten.MLP.weight": (c, c),
        "cdt.cross_atten.MLP.bias": (c,),
    }


def maftp_state_dict(
    arch: str, hidden: int = 768, seed: int = 0, scale: float = 0.05
) -> dict[str, torch.Tensor]:
    """A random MAFT+ + Mask-Adapter state dict for CLIP ``arch``.

    CLIP tensors start from open_clip's own initialisation plus noise (so loading them is
    observable); the adapter and cdt tensors are random; LayerNorm weights near 1. A few
    ``sem_seg_head.*`` tensors stand for the Mask2Former decoder samadapter ignores.
    """
    gen = torch.Generator().manual_seed(seed)
    c = registry.get("clip", arch).clip_arch().embed_dim
    sd: dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = build_clip_model(arch).state_dict()
    for key, value in clip.items():
        noise = scale * torch.randn(value.shape, generator=gen) if value.is_floating_point() else 0
        sd[f"backbone.clip_model.{key}"] = value + noise
    for key, shape in {**adapter_table(c, hidden), **cdt_table(c)}.items():
        value = scale * torch.randn(shape, generator=gen)
        if key.endswith(("norm.weight", "downscaling.1.weight", "downscaling.4.weight")):
            value = value + 1.0
        sd[key] = value
    sd["sem_seg_head.predictor.class_embed.layers.0.weight"] = torch.zeros(4, 4)
    sd["sem_seg_head.pixel_decoder.adapter_1.weight"] = torch.zeros(4, 4, 1, 1)
    return sd


def save_maftp_checkpoint(
    path: Path, arch: str = "tiny-random", hidden: int = 32, seed: int = 0
) -> Path:
    """Write :func:`maftp_state_dict` as ``{"model": sd, "iteration": 0}`` (detectron2's form)."""
    torch.save({"model": maftp_state_dict(arch, hidden, seed), "iteration": 0}, path)
    return path

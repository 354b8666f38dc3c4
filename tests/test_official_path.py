"""Probabilities against a small independent reference of the official inference path.

The reference below is written from the method's equations (docs/architecture.md), not from
samadapter's code: detectron2's test resize at S with Pillow bilinear on uint8, normalisation,
zero padding to 32, hard 0/1 masks put on the padded canvas by Pillow nearest, the adapter head
layer by layer, softmax(logsigmoid) pooling of the raw features, the CLIP head projection, the
14 templates through open_clip's own ``encode_text``, synonyms by max, void appended, softmax,
void dropped.

The tiny model is made *mask-sensitive*: with tiny default weights the adapter's maps barely
depend on the mask, so a wrong mask placement would go unnoticed. Default torch init, LayerNorm
weights 1, ConvNeXt layer scale 0.3 and logit scale log(100) make them depend on it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from synth_data import five_masks  # tests/synth_data.py (tests/ is on sys.path)

from samadapter.modeling.clip_backbone import PIXEL_MEAN, PIXEL_STD, ClipBackbone
from samadapter.modeling.mask_adapter import MaskAdapter
from samadapter.pipeline import PipelineSettings, Segmenter
from samadapter.vocab import TEMPLATES, parse_classes

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "chelsea.jpg"
SIZE = 96  # the CLIP input size S of this test (896 officially)
VOCAB = parse_classes("cat,sofa|couch,floor,wall")


@pytest.fixture(scope="module")
def models() -> tuple[ClipBackbone, MaskAdapter]:
    """Tiny CLIP + adapter whose activation maps depend on the mask."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        backbone = ClipBackbone.from_arch("tiny-random").eval()
        adapter = MaskAdapter(32, hidden_dim=32).eval()  # default torch init
    with torch.no_grad():
        backbone.model.logit_scale.fill_(math.log(100.0))
        for block in (
            adapter.mask_adapter.cnext1,
            adapter.mask_adapter.cnext2,
            adapter.mask_adapter.cnext3,
        ):
            block.gamma.fill_(0.3)
        for module in adapter.modules():
            if isinstance(module, torch.nn.LayerNorm) or type(module).__name__ == "LayerNorm2d":
                assert module.weight is not None
                module.weight.fill_(1.0)
    return backbone, adapter


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    with Image.open(SAMPLE) as img:
        return np.asarray(img.convert("RGB"))


def segmenter(models: tuple[ClipBackbone, MaskAdapter]) -> Segmenter:
    backbone, adapter = models
    return Segmenter(backbone, adapter, None, PipelineSettings(clip_size=SIZE, keep_ratio=0.0))


# ------------------------------------------------------------------------------------------
# The reference
# ------------------------------------------------------------------------------------------


def ref_resize_shape(h: int, w: int, s: int) -> tuple[int, int]:
    """detectron2 ResizeShortestEdge(s, max_size=s) at test time."""
    scale = s / min(h, w)
    nh, nw = (s, scale * w) if h < w else (scale * h, s)
    if max(nh, nw) > s:
        k = s / max(nh, nw)
        nh, nw = nh * k, nw * k
    return int(nh + 0.5), int(nw + 0.5)


def ref_probabilities(
    models: tuple[ClipBackbone, MaskAdapter], image: np.ndarray, masks: np.ndarray
) -> np.ndarray:
    backbone, adapter = models
    clip = backbone.model
    head = adapter.mask_adapter
    h0, w0 = image.shape[:2]
    h, w = ref_resize_shape(h0, w0, SIZE)
    hp, wp = math.ceil(h / 32) * 32, math.ceil(w / 32) * 32
    with torch.no_grad():
        # image: Pillow bilinear on uint8, normalise on 0-255, pad right/bottom with zeros
        small = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
        x = torch.zeros(1, 3, hp, wp)
        x[0, :, :h, :w] = (
            (torch.tensor(small, dtype=torch.float32) - torch.tensor(PIXEL_MEAN))
            / torch.tensor(PIXEL_STD)
        ).permute(2, 0, 1)
        raw = clip.visual.trunk.forward_features(x)  # [1, D, hp/32, wp/32]
        fh, fw = raw.shape[-2:]
        proj = clip.visual.head(clip.visual.trunk.head.norm(raw).permute(0, 2, 3, 1))
        proj = proj.permute(0, 3, 1, 2)  # [1, C, fh, fw]
        # masks: Pillow nearest to (h, w), hard 0/1, zero padded like the image
        m = torch.zeros(len(masks), 1, hp, wp)
        for q, mask in enumerate(masks):
            r = np.asarray(
                Image.fromarray(mask.astype(np.uint8)).resize((w, h), Image.Resampling.NEAREST)
            )
            m[q, 0, :h, :w] = torch.from_numpy(r.astype(np.float32))
        # the adapter head, layer by layer
        m = F.interpolate(m, size=(4 * fh, 4 * fw), mode="bilinear", align_corners=False)
        t = head.mask_downscaling(m)
        t = head.fuse(proj + t)
        for blk in (head.cnext1, head.cnext2, head.cnext3):
            y = blk.dwconv(t).permute(0, 2, 3, 1)
            y = F.layer_norm(y, (y.shape[-1],), blk.norm.weight, blk.norm.bias, 1e-6)
            y = blk.pwconv2(F.gelu(blk.pwconv1(y)))
            t = t + (blk.gamma * y).permute(0, 3, 1, 2)
        t = F.layer_norm(
            t.permute(0, 2, 3, 1), (t.shape[1],), head.norm.weight, head.norm.bias, 1e-5
        ).permute(0, 3, 1, 2)
        maps = head.final(t)  # [Q, 16, fh, fw]
        # pooling: softmax over space of logsigmoid(map), weighted sum of the RAW features
        wts = torch.softmax(F.logsigmoid(maps).flatten(2), dim=-1)  # [Q, 16, fh*fw]
        pooled = wts @ raw[0].flatten(1).T  # [Q, 16, D]
        emb = clip.visual.head(clip.visual.trunk.head(pooled.reshape(-1, pooled.shape[-1], 1, 1)))
        emb = emb.reshape(len(masks), 16, -1).mean(dim=1)  # [Q, C]
        # text: 14 templates, each normalised, averaged, renormalised; synonyms by max
        tok = backbone.tokenizer
        scale = min(clip.logit_scale.exp().item(), 100.0)
        e = F.normalize(emb, dim=-1)
        cols = []
        for names in VOCAB.classes:
            per_name = []
            for name in names:
                t_emb = F.normalize(
                    clip.encode_text(tok([tpl.format(name) for tpl in TEMPLATES])).float(), dim=-1
                )
                t_emb = F.normalize(t_emb.mean(dim=0), dim=-1)
                per_name.append(scale * e @ t_emb)
            cols.append(torch.stack(per_name).max(dim=0).values)
        void = scale * e @ F.normalize(adapter.void_embedding.weight[0], dim=-1)
        logits = torch.stack([*cols, void], dim=1)
        return logits.softmax(dim=-1)[:, :-1].numpy()


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------


def test_probabilities_match_the_reference(models, image) -> None:
    masks = five_masks(*image.shape[:2])
    ref = ref_probabilities(models, image, masks)
    seg = segmenter(models)
    ours = seg.class_probabilities(image, masks, seg.text_classifier(VOCAB))
    assert ours.shape == ref.shape == (5, 4)
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    assert np.abs(ours - ref).max() < 1e-4  # measured: 1.0e-6


def test_reference_would_catch_the_old_short_side_resize(models, image) -> None:
    """The same reference with a short-side resize (the earlier behaviour) is far off, so the
    tolerance above is meaningful."""
    masks = five_masks(*image.shape[:2])
    ref = ref_probabilities(models, image, masks)
    h0, w0 = image.shape[:2]
    scale = SIZE / min(h0, w0)
    big = np.asarray(
        Image.fromarray(image).resize(
            (round(w0 * scale), round(h0 * scale)), Image.Resampling.BILINEAR
        )
    )
    seg = segmenter(models)
    seg = dataclasses.replace(
        seg, settings=dataclasses.replace(seg.settings, clip_size=max(big.shape[:2]))
    )
    big_masks = five_masks(*big.shape[:2])
    other = seg.class_probabilities(big, big_masks, seg.text_classifier(VOCAB))
    assert np.abs(other - ref).max() > 2e-3


def test_moving_a_mask_changes_its_probabilities(models, image) -> None:
    seg = segmenter(models)
    text = seg.text_classifier(VOCAB)
    h, w = image.shape[:2]
    feats = seg.image_features(image)
    here = seg.class_probabilities(feats, five_masks(h, w), text)
    moved = seg.class_probabilities(feats, five_masks(h, w, dx=w // 6), text)
    change = np.abs(moved - here).max(axis=1)
    assert change[[0, 1, 3, 4]].min() > 1e-3  # every moved mask's row changes
    assert change[2] < 1e-6  # the full-width band does not move sideways
    assert change.max() > 1e-2

"""samadapter's mask generator against segment-anything's, on the same random SAM modules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from samadapter.modeling import mask_generator as mg
from samadapter.modeling.mask_generator import (
    GeneratorOptions,
    MaskGenerator,
    masks_to_boxes,
    point_grid,
    remove_small_regions,
    stability_score,
)
from samadapter.modeling.proposer import (
    AmgSettings,
    Proposals,
    SamArch,
    SamProposer,
    build_sam,
)


def _image(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    image[h // 4 : h // 2, w // 4 : w // 2] = (200, 60, 30)
    return image


def _both(
    sam: torch.nn.Module, settings: AmgSettings, image: np.ndarray
) -> tuple[Proposals, Proposals]:
    ours = SamProposer(sam, settings)
    assert ours.uses_own_generator
    theirs = SamProposer(sam, settings, engine="segment-anything")
    return ours(image), theirs(image)


def _assert_same(a: Proposals, b: Proposals) -> None:
    assert len(a) == len(b)
    assert np.array_equal(a.masks, b.masks)
    np.testing.assert_allclose(a.predicted_iou, b.predicted_iou, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.stability_score, b.stability_score, rtol=0, atol=1e-6)
    assert np.array_equal(a.point_coords, b.point_coords)
    assert np.array_equal(a.crop_box, b.crop_box)


@pytest.mark.parametrize("nms,min_region", [(1.0, 0), (0.7, 0), (1.0, 30)])
def test_same_masks_as_segment_anything_tiny(nms: float, min_region: int) -> None:
    torch.manual_seed(0)
    sam = build_sam("tiny-random")
    settings = AmgSettings(
        points_per_side=4,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=nms,
        min_mask_region_area=min_region,
    )
    ours, theirs = _both(sam, settings, _image(48, 80))
    assert len(theirs) >= (40 if nms == 1.0 else 1)  # filters set so that masks survive
    _assert_same(ours, theirs)
    assert set(ours.timings) == {"sam_encoder", "sam_decoder"}


def test_same_masks_with_filters_that_drop_some() -> None:
    torch.manual_seed(0)
    sam = build_sam("tiny-random")
    with torch.no_grad():  # larger logits, so stability scores spread over (0, 1)
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(40)
    loose = AmgSettings(
        points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0
    )
    all_masks, _ = _both(sam, loose, _image(40, 56))
    iou_t = float(np.quantile(all_masks.predicted_iou, 0.8))
    stab_t = float(np.quantile(all_masks.stability_score, 0.3))
    assert iou_t > 0 and 0 < stab_t < 1
    for settings in (
        AmgSettings(
            points_per_side=4, pred_iou_thresh=iou_t, stability_score_thresh=0.0, box_nms_thresh=1.0
        ),
        AmgSettings(
            points_per_side=4,
            pred_iou_thresh=0.0,
            stability_score_thresh=stab_t,
            box_nms_thresh=1.0,
        ),
        AmgSettings(
            points_per_side=4,
            pred_iou_thresh=iou_t,
            stability_score_thresh=stab_t,
            box_nms_thresh=0.7,
            min_mask_region_area=20,
        ),
    ):
        ours, theirs = _both(sam, settings, _image(40, 56))
        assert 0 < len(theirs) < len(all_masks)
        _assert_same(ours, theirs)


def test_same_masks_with_the_real_decoder() -> None:
    """SAM's real mask decoder (256 channels, 2 two-way layers, 8 heads; the same for ViT-B/L/H)
    behind a small encoder: exercises the decoder's second layer too."""
    torch.manual_seed(1)
    sam = build_sam(SamArch(32, 1, 2, (0,), img_size=256, window_size=4))
    assert len(sam.mask_decoder.transformer.layers) == 2
    settings = AmgSettings(
        points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0
    )
    ours, theirs = _both(sam, settings, _image(60, 90))
    assert len(theirs) >= 20
    _assert_same(ours, theirs)


def test_prompt_batch_does_not_change_masks() -> None:
    torch.manual_seed(0)
    sam = build_sam("tiny-random")
    settings = AmgSettings(
        points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0
    )
    image = _image(32, 32)
    one = MaskGenerator(sam, settings, GeneratorOptions(prompt_batch=1)).generate(image)
    five = MaskGenerator(
        sam, settings, GeneratorOptions(prompt_batch=5, upsample_chunk=2)
    ).generate(image)
    assert one.prompts == five.prompts == 16
    assert np.array_equal(one.masks, five.masks)
    assert MaskGenerator(sam, settings, GeneratorOptions(prompt_batch=5)).prompt_batch(16) == 4


def test_crops_fall_back_to_segment_anything() -> None:
    torch.manual_seed(0)
    sam = build_sam("tiny-random")
    settings = AmgSettings(
        points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0, crop_n_layers=1
    )
    proposer = SamProposer(sam, settings)
    assert not proposer.uses_own_generator
    props = proposer(_image(48, 64))
    assert len(props) >= 1 and props.masks.shape[1:] == (48, 64)
    with pytest.raises(ValueError, match="crop"):
        MaskGenerator(sam, settings)


def test_compile_failure_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> object:
        def run(*_: object, **__: object) -> object:
            raise RuntimeError("no compiler here")

        return run

    monkeypatch.setenv(mg.COMPILE_ENV, "1")
    monkeypatch.setattr(torch, "compile", broken)
    torch.manual_seed(0)
    sam = build_sam("tiny-random")
    settings = AmgSettings(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    gen = MaskGenerator(sam, settings, GeneratorOptions(compile=True, compile_after=1))
    gen.generate(_image(32, 48))  # the first image runs eagerly
    assert gen.compile_failed is None
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        first = gen.generate(_image(32, 48))
    assert gen.compile_failed and "no compiler here" in gen.compile_failed
    eager = MaskGenerator(sam, settings).generate(_image(32, 48))
    assert np.array_equal(first.masks, eager.masks)


def test_compile_env_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mg.COMPILE_ENV, "0")
    assert not mg.compile_allowed()
    monkeypatch.setenv(mg.COMPILE_ENV, "1")
    assert mg.compile_allowed()


def test_point_grid() -> None:
    g = point_grid(2)
    assert g.tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]


def test_stability_score() -> None:
    logits = torch.tensor([[[2.0, 0.5, -0.5, -2.0]], [[3.0, 3.0, 3.0, 3.0]]])
    assert stability_score(logits).tolist() == [pytest.approx(1 / 3), 1.0]


def test_masks_to_boxes() -> None:
    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    assert masks_to_boxes(masks).tolist() == [[2, 1, 4, 2], [0, 0, 0, 0]]


def test_remove_small_regions() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[1:8, 1:8] = True
    mask[4, 4] = False  # a 1-pixel hole
    mask[9, 9] = True  # a 1-pixel island
    filled, changed = remove_small_regions(mask, 2, holes=True)
    assert changed and filled[4, 4] and filled[9, 9]
    cleaned, changed = remove_small_regions(filled, 2, holes=False)
    assert changed and not cleaned[9, 9] and cleaned.sum() == 49
    same, changed = remove_small_regions(cleaned, 2, holes=False)
    assert not changed and np.array_equal(same, cleaned)


def test_bf16_masks_close_to_fp32_on_the_same_prompts() -> None:
    torch.manual_seed(0)
    sam = build_sam("tiny-random")
    settings = AmgSettings(points_per_side=4)
    image = _image(48, 80)
    points = MaskGenerator(sam, settings).points(image.shape[:2])
    m32, iou32 = MaskGenerator(sam, settings).predict(image, points)
    m16, iou16 = MaskGenerator(sam, settings, GeneratorOptions(dtype=torch.bfloat16)).predict(
        image, points
    )
    assert m32.shape == m16.shape == (16, 3, 48, 80)
    inter = (m32 & m16).sum(axis=(2, 3))
    union = np.maximum((m32 | m16).sum(axis=(2, 3)), 1)
    assert (inter / union).min() > 0.95
    assert 0 < np.abs(iou32 - iou16).max() < 0.02


def test_two_pass_decodes_fewer_prompts_where_masks_cover() -> None:
    torch.manual_seed(0)
    sam = build_sam("tiny-random")
    settings = AmgSettings(
        points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0
    )
    image = _image(48, 80)
    one = MaskGenerator(sam, settings).generate(image)
    two = MaskGenerator(sam, settings, GeneratorOptions(two_pass=True)).generate(image)
    assert one.prompts == 16
    assert 4 <= two.prompts < 16  # 2x2 sparse prompts, then only uncovered points
    assert len(two.masks) == 3 * two.prompts  # nothing filtered here: 3 masks a prompt
    # the sparse pass's masks are those of a one-pass run on the 2x2 grid
    coarse = MaskGenerator(sam, dataclasses.replace(settings, points_per_side=2)).generate(image)
    sparse = {tuple(p) for p in point_grid(2) * np.array([[80, 48]])}
    from_sparse = [i for i, p in enumerate(two.point_coords) if tuple(p) in sparse]
    assert len(from_sparse) == len(coarse.masks) == 12
    flat = coarse.masks.reshape(12, -1)
    for i in from_sparse:
        assert (flat == two.masks[i].reshape(-1)).all(axis=1).any()


def test_two_pass_decodes_the_full_grid_when_nothing_is_kept() -> None:
    torch.manual_seed(0)
    sam = build_sam("tiny-random")
    settings = AmgSettings(points_per_side=4, pred_iou_thresh=0.999)
    two = MaskGenerator(sam, settings, GeneratorOptions(two_pass=True)).generate(_image(48, 80))
    assert two.prompts == 4 + 16 and len(two.masks) == 0


def test_factored_cross_attentions_equal_sam_attention() -> None:
    """The re-associated cross attentions compute SAM's ``Attention`` (biases non-zero)."""
    from segment_anything.modeling.transformer import Attention

    torch.manual_seed(0)
    attn = Attention(32, 4, downsample_rate=2)
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_()
    tokens, image = torch.randn(3, 5, 32), torch.randn(3, 40, 32)
    pos = torch.randn(3, 40, 32)
    want = attn(tokens, image + pos, image)
    got = mg._tokens_to_image(attn, tokens, image + pos, image)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    want = attn(image + pos, tokens, tokens * 2)
    got = mg._image_to_tokens(attn, image + pos, tokens, tokens * 2)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    projected = mg._heads(attn.q_proj(image[:1] + pos[:1]), 4)  # shared by the batch
    got = mg._image_to_tokens(attn, projected, tokens, tokens * 2)
    want = attn((image[:1] + pos[:1]).expand(3, -1, -1), tokens, tokens * 2)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_masks_upscaled_only_for_prompts_that_pass_the_iou_filter() -> None:
    torch.manual_seed(0)
    sam = build_sam("tiny-random")
    image = _image(40, 56)
    loose = AmgSettings(
        points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0
    )
    _, ious = MaskGenerator(sam, loose).predict(image, MaskGenerator(sam, loose).points((40, 56)))
    thresh = float(np.quantile(ious.max(axis=1), 0.5))  # half the prompts have a mask above
    upscaled: list[int] = []
    sam.mask_decoder.output_upscaling.register_forward_hook(
        lambda _m, args, _o: upscaled.append(int(args[0].shape[0]))
    )
    strict = dataclasses.replace(loose, pred_iou_thresh=thresh)
    ours, theirs = _both(sam, strict, image)
    _assert_same(ours, theirs)
    assert len(ours) == int((ious > thresh).sum()) > 0
    # segment-anything upscales all 16 prompts; ours only the 8 with a mask above the threshold
    assert sum(upscaled) == 16 + int((ious.max(axis=1) > thresh).sum()) == 16 + 8

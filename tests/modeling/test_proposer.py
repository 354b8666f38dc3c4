"""SAM proposer on a tiny random SAM: fields, shapes and state-dict layout."""

from __future__ import annotations

import numpy as np
import torch

from samadapter.modeling.proposer import AmgSettings, Proposals, SamProposer, build_sam


def test_official_sam_key_layout() -> None:
    keys = set(build_sam("tiny-random").state_dict())
    assert "image_encoder.patch_embed.proj.weight" in keys
    assert "image_encoder.blocks.1.attn.rel_pos_h" in keys
    assert "mask_decoder.iou_prediction_head.layers.2.weight" in keys
    assert "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix" in keys


def test_proposals_keep_sams_fields() -> None:
    torch.manual_seed(2)
    proposer = SamProposer(
        build_sam("tiny-random"),
        AmgSettings(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0),
    )
    image = (np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)
    props = proposer(image)
    n = len(props)
    assert n >= 1
    assert props.masks.shape == (n, 48, 80) and props.masks.dtype == bool
    assert props.predicted_iou.shape == (n,) and props.stability_score.shape == (n,)
    assert props.point_coords.shape == (n, 2) and props.crop_box.shape == (n, 4)
    assert np.all(props.crop_box == [0, 0, 80, 48])
    areas = props.masks.reshape(n, -1).sum(1)
    assert np.all(np.diff(areas) <= 0)  # largest first
    assert set(props.timings) == {"sam_encoder", "sam_decoder"}
    assert props.timings["sam_encoder"] > 0


def test_proposals_from_bare_masks() -> None:
    masks = np.zeros((2, 5, 7), dtype=bool)
    props = Proposals.from_masks(masks)
    assert np.isnan(props.predicted_iou).all()
    assert props.crop_box.tolist() == [[0, 0, 7, 5]] * 2

"""SAM's extra generator knobs (stability offset, crop NMS / overlap / grid downscale) reach both
generators of SAM and SAM 2's, and leave records of the defaults unchanged."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from samadapter.modeling.proposer import AmgSettings, Sam2Proposer, SamProposer, build_sam

KNOBS = {
    "stability_score_offset": 0.5,
    "crop_nms_thresh": 0.55,
    "crop_overlap_ratio": 0.25,
    "crop_n_points_downscale_factor": 2,
}


def _image(h: int = 48, w: int = 80) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    image[h // 4 : h // 2, w // 4 : w // 2] = (200, 60, 30)
    return image


def test_defaults_are_segment_anythings() -> None:
    s = AmgSettings()
    assert (s.stability_score_offset, s.crop_nms_thresh, s.crop_n_points_downscale_factor) == (
        1.0,
        0.7,
        1,
    )
    assert s.crop_overlap_ratio == pytest.approx(512 / 1500)


def test_segment_anythings_generator_gets_every_knob() -> None:
    torch.manual_seed(0)
    settings = AmgSettings(points_per_side=4, crop_n_layers=1, **KNOBS)  # type: ignore[arg-type]
    generator = SamProposer(
        build_sam("tiny-random"), settings, engine="segment-anything"
    ).generator()
    for key, value in KNOBS.items():
        assert getattr(generator, key) == value
    # the crop layer's grid is 4 / 2 = 2 points per side
    assert [len(g) for g in generator.point_grids] == [16, 4]


def test_stability_offset_reaches_samadapters_own_generator() -> None:
    torch.manual_seed(0)
    sam = build_sam("tiny-random")
    image = _image()
    settings = AmgSettings(
        points_per_side=4,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=1.0,
        stability_score_offset=0.01,
    )
    ours = SamProposer(sam, settings)
    assert ours.uses_own_generator
    theirs = SamProposer(sam, settings, engine="segment-anything")
    a, b = ours(image), theirs(image)
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(np.sort(a.stability_score), np.sort(b.stability_score), atol=1e-6)
    # random weights give logits near 0: a 10x smaller offset gives clearly higher scores
    smaller = SamProposer(
        sam, AmgSettings(**{**settings.__dict__, "stability_score_offset": 0.001})
    )(image)
    assert np.median(smaller.stability_score) > np.median(a.stability_score) + 0.1


def test_sam2_generator_gets_every_knob() -> None:
    seen: dict[str, Any] = {}

    def fake_generator(model: object, **kwargs: Any) -> object:
        seen.update(kwargs)
        return object()

    proposer = Sam2Proposer.__new__(Sam2Proposer)  # no sam2 package needed to check the wiring
    proposer._amg = SimpleNamespace(SAM2AutomaticMaskGenerator=fake_generator)
    proposer.model = torch.nn.Identity()
    proposer.settings = AmgSettings(points_per_side=8, **KNOBS)  # type: ignore[arg-type]
    proposer.use_m2m, proposer.multimask_output = False, True
    proposer.generator()
    for key, value in KNOBS.items():
        assert seen[key] == value
    assert seen["points_per_side"] == 8 and seen["output_mode"] == "binary_mask"


def test_record_omits_the_later_knobs_at_their_defaults() -> None:
    assert set(AmgSettings().record()) == {
        "points_per_side",
        "points_per_batch",
        "pred_iou_thresh",
        "stability_score_thresh",
        "box_nms_thresh",
        "crop_n_layers",
        "min_mask_region_area",
    }
    assert AmgSettings(crop_nms_thresh=0.5).record()["crop_nms_thresh"] == 0.5

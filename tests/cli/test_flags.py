"""The commands' flags come from the typed configuration (no models loaded)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from samadapter.cli.benchmark import benchmark
from samadapter.cli.options import SAM_FLAGS, flags_config
from samadapter.cli.segment import segment
from samadapter.config import AmgSettings
from samadapter.errors import ConfigError


def test_every_sam_knob_is_a_flag_of_segment_and_benchmark() -> None:
    knobs = [f.name for f in dataclasses.fields(AmgSettings)]
    assert list(SAM_FLAGS) == knobs
    for command in (segment, benchmark):
        params = inspect.signature(command).parameters
        assert "amg" not in params
        assert [p for p in params if p in SAM_FLAGS] == knobs
        assert params["crop_overlap_ratio"].default == 512 / 1500


def test_flags_override_the_preset_and_none_keeps_it() -> None:
    config = flags_config(
        "fast",
        models={"device": "cpu", "sam": None, "two_pass": True},
        amg={"points_per_side": None, "crop_n_layers": 1},
        pipeline={"clip_size": 320},
    )
    assert (config.models.sam, config.models.two_pass) == ("vit_b", True)
    assert (config.amg.points_per_side, config.amg.crop_n_layers) == (12, 1)
    assert config.pipeline.clip_size == 320
    with pytest.raises(ConfigError, match="did you mean 'crop_n_layers'"):
        flags_config("fast", models={"device": "cpu"}, amg={"crop_n_layer": 1})

"""The typed run configuration: overrides, JSON round trips, fingerprints (no models loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from samadapter.config import (
    OUTPUT_NEUTRAL,
    AmgSettings,
    ModelConfig,
    PipelineSettings,
    RunConfig,
    fingerprint,
    from_json,
    override,
    to_json,
)
from samadapter.errors import ConfigError
from samadapter.models import load_segmenter
from samadapter.presets import preset_config

OLD_RUN = Path(__file__).parent / "fixtures" / "old_run"
"""A run folder written by samadapter 0.1.0 before this module existed (``samadapter segment
in/img.png --preset tiny-random --classes "cat,sofa|couch" -o out --device cpu
--cache-features``)."""


def test_output_neutral_fields_are_the_declared_ones() -> None:
    assert {"device", "points_per_batch", "mask_batch", "weights_dir", "offline"} == OUTPUT_NEUTRAL


def test_override_typo_names_the_nearest_key() -> None:
    with pytest.raises(ConfigError) as e:
        override(AmgSettings(), {"points_per_sid": 99}, "amg")
    assert "unknown amg key 'points_per_sid'" in str(e.value)
    assert "did you mean 'points_per_side'?" in str(e.value)


def test_override_checks_types_and_values() -> None:
    assert override(AmgSettings(), {"points_per_side": 8}).points_per_side == 8
    assert override(AmgSettings(), {"points_per_side": None}).points_per_side == 32  # kept
    with pytest.raises(ConfigError, match="'points_per_side' must be int, got '8'"):
        override(AmgSettings(), {"points_per_side": "8"})
    with pytest.raises(ConfigError, match="must be int, got True"):
        override(AmgSettings(), {"crop_n_layers": True})
    with pytest.raises(ConfigError, match="--keep-ratio must be in"):
        override(PipelineSettings(), {"keep_ratio": 1.0})
    changed = override(RunConfig(), {"models": {"sam_checkpoint": "a/b.pth"}, "amg": {}})
    assert changed.models.sam_checkpoint == Path("a/b.pth")
    with pytest.raises(ConfigError, match=r"unknown settings\.models key 'sam_chekpoint'"):
        override(RunConfig(), {"models": {"sam_chekpoint": "x"}})


def test_configs_are_frozen() -> None:
    with pytest.raises(AttributeError):
        AmgSettings().points_per_side = 4  # type: ignore[misc]


def test_json_round_trip_and_later_fields_written_only_when_set() -> None:
    config = RunConfig(
        ModelConfig(preset="fast", sam_checkpoint=Path("/w/sam.pth"), two_pass=True),
        AmgSettings(points_per_side=12, crop_nms_thresh=0.5),
        PipelineSettings(clip_size=640, keep_unknown=True),
    )
    data = json.loads(json.dumps(to_json(config)))
    assert data["models"]["sam_checkpoint"] == "/w/sam.pth"
    assert data["amg"]["crop_nms_thresh"] == 0.5
    assert "stability_score_offset" not in data["amg"]  # at its default: as before it existed
    assert "two_pass" not in to_json(ModelConfig())
    assert from_json(RunConfig, data) == config
    assert from_json(AmgSettings, {}) == AmgSettings()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "must be an object"),
        ({"amg": {"points_per_side": 4.5}}, "'points_per_side' must be int"),
        ({"modles": {}}, "did you mean 'models'?"),
        ({"models": {"device": None}}, "'device' must be str, got None"),
        ({"pipeline": {"classifier": "knn"}}, "unknown classifier 'knn'"),
        ({"models": {"weights_dir": ""}}, "'weights_dir' must be Path or null"),
    ],
)
def test_from_json_refuses_bad_data_with_one_config_error(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_json(RunConfig, data, "run.json")


def test_fingerprint_ignores_exactly_the_output_neutral_fields() -> None:
    base = fingerprint(RunConfig())
    same = RunConfig(
        ModelConfig(device="cuda", weights_dir=Path("/x"), offline=True),
        AmgSettings(points_per_batch=8),
        PipelineSettings(mask_batch=16),
    )
    assert fingerprint(same) == base
    assert fingerprint(RunConfig(amg=AmgSettings(points_per_side=8))) != base
    assert fingerprint(RunConfig(models=ModelConfig(precision="bf16"))) != base
    # A record read back from a file hashes as the configuration it was written from.
    assert fingerprint(json.loads(json.dumps(to_json(same)))) == base
    assert fingerprint({"b": 1, "a": [AmgSettings()]}) == fingerprint(
        {"a": [AmgSettings()], "b": 1}
    )


def test_fingerprint_of_a_run_written_before_this_module() -> None:
    run = json.loads((OLD_RUN / "out" / "run.json").read_text())
    assert fingerprint(run["settings"]) == run["fingerprint"] == "947a64ce9b21f007"


def test_presets_resolve_by_device() -> None:
    assert preset_config("auto", "cpu").models.preset == "fast"
    assert preset_config("auto", "cuda").models.preset == "accurate"
    fast = preset_config("fast", "cpu")
    assert (fast.models.sam, fast.amg.points_per_side, fast.pipeline.clip_size) == (
        "vit_b",
        12,
        640,
    )
    with pytest.raises(ConfigError, match="unknown preset 'fats'"):
        preset_config("fats", "cpu")


@pytest.mark.parametrize(
    ("kwargs", "nearest"),
    [
        ({"amg": {"points_per_sid": 99}}, "points_per_side"),
        ({"settings": {"clip_sise": 64}}, "clip_size"),
        ({"sam_chekpoint": "x.pth"}, "sam_checkpoint"),
    ],
)
def test_load_segmenter_typo_is_a_config_error(kwargs: dict[str, object], nearest: str) -> None:
    with pytest.raises(ConfigError, match=f"did you mean '{nearest}'"):
        load_segmenter("tiny-random", device="cpu", **kwargs)  # type: ignore[arg-type]


def test_load_segmenter_takes_a_typed_config() -> None:
    config = override(preset_config("tiny-random", "cpu"), {"amg": {"points_per_side": 3}})
    seg = load_segmenter(config=config, device="cpu", settings={"keep_unknown": True})
    assert seg.info["amg"]["points_per_side"] == 3
    assert seg.settings.keep_unknown and seg.settings.precision == "fp32"
    assert seg.info["preset"] == "tiny-random"

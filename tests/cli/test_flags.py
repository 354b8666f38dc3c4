"""The commands' flags come from one table per group, bound to the typed configuration (no models
loaded)."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
from typer.testing import CliRunner

from samadapter.cli.benchmark import benchmark
from samadapter.cli.classify import classify
from samadapter.cli.main import app
from samadapter.cli.options import (
    CONFIG_FLAGS,
    SAM_ONLY,
    SECTIONS,
    ConfigFlags,
    Flag,
    config_flags,
    flag_group,
)
from samadapter.cli.relabel import relabel
from samadapter.cli.segment import segment
from samadapter.config import AmgSettings, ModelConfig, PipelineSettings
from samadapter.errors import ConfigError


def _params(command: object) -> list[str]:
    return list(inspect.signature(command).parameters)  # type: ignore[arg-type]


def test_every_sam_knob_is_a_flag_of_segment_and_benchmark() -> None:
    knobs = [f.name for f in dataclasses.fields(AmgSettings)]
    for command in (segment, benchmark):
        params = inspect.signature(command).parameters
        assert "amg" not in params and "flags" not in params
        assert [p for p in params if p in knobs] == knobs
        assert params["crop_overlap_ratio"].default == 512 / 1500
    assert not set(knobs) & set(_params(classify))  # classify runs no SAM


def test_the_table_names_configuration_fields_and_each_command_takes_its_share() -> None:
    fields = {
        f.name
        for cls in (ModelConfig, AmgSettings, PipelineSettings)
        for f in dataclasses.fields(cls)
    }
    assert set(CONFIG_FLAGS) <= fields
    # Every setting a user may change has its flag, declared once.
    assert fields - set(CONFIG_FLAGS) == {"working_size", "min_area"}
    assert SECTIONS["precision"] == "models" and SECTIONS["points_per_side"] == "amg"
    assert SECTIONS["clip_size"] == "pipeline"
    assert set(CONFIG_FLAGS) <= set(_params(segment))
    assert set(CONFIG_FLAGS) - set(_params(classify)) == set(SAM_ONLY)
    assert set(CONFIG_FLAGS) & set(_params(relabel)) == {
        "score_thresh",
        "weights_dir",
        "offline",
        "device",
        # relabel's own spellings: their default is the run's value
        "classifier",
        "keep_unknown",
        "keep_ratio",
    }


def test_a_new_table_entry_reaches_the_command_and_its_section() -> None:
    seen: list[ConfigFlags] = []

    @config_flags(only=("points_per_side", "clip_size", "offline", "device"))
    def command(image: str, *, flags: ConfigFlags, quiet: bool = False) -> int:
        seen.append(flags)
        return 0

    assert _params(command) == [
        "image",
        "points_per_side",
        "clip_size",
        "offline",
        "device",
        "quiet",
    ]
    command("x", points_per_side=8, clip_size=None, offline=False, device="cpu")
    assert seen[0].preset == "auto"
    assert seen[0].changes == {
        "amg": {"points_per_side": 8},
        "pipeline": {"clip_size": None},  # not given: keeps the base's value
        "models": {"offline": False, "device": "cpu"},  # --no-offline: off, whatever the base
    }

    @flag_group("pair", {"a": Flag(int, 1), "b": Flag(str, "x")}, lambda a, b: (a, b))
    def other(*, pair: tuple[int, str]) -> int:
        return pair[0]

    assert _params(other) == ["a", "b"]
    assert other(a=7, b="y") == 7


def test_given_fills_only_what_the_user_left_unset() -> None:
    flags = ConfigFlags.of("fast", keep_ratio=None, sam="vit_l")
    assert flags.given("keep_ratio", 0.0).value("keep_ratio") == 0.0
    assert flags.given("sam", "sam2.1_hiera_large").value("sam") == "vit_l"
    assert flags.value("keep_ratio") is None  # frozen: given() made a copy
    config = flags.given("keep_ratio", 0.0).given("device", "cpu").config()
    assert (config.models.sam, config.pipeline.keep_ratio, config.amg.points_per_side) == (
        "vit_l",
        0.0,
        12,
    )


def test_flags_override_the_preset_and_none_keeps_it() -> None:
    config = ConfigFlags.of(
        "fast",
        device="cpu",
        sam=None,
        two_pass=True,
        points_per_side=None,
        crop_n_layers=1,
        clip_size=320,
    ).config()
    assert (config.models.sam, config.models.two_pass) == ("vit_b", True)
    assert (config.amg.points_per_side, config.amg.crop_n_layers) == (12, 1)
    assert config.pipeline.clip_size == 320
    with pytest.raises(ConfigError, match="did you mean 'crop_n_layers'"):
        ConfigFlags("fast", {"amg": {"crop_n_layer": 1}}).config()


def test_classify_takes_precision_from_the_shared_table(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["classify", str(tmp_path / "x.png"), "--masks", str(tmp_path), "--precision", "fp64"],
    )
    assert result.exit_code == 2
    assert "fp64" in result.output and "fp32" in result.output  # the choices of config.PRECISIONS


def test_a_file_is_no_weights_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    for argv in (["weights", "list"], ["segment", "x.jpg", "-c", "cat"]):
        result = CliRunner().invoke(app, [*argv, "--weights-dir", str(tmp_path / "f")])
        assert result.exit_code == 2
        assert "is a file" in result.output


def test_a_boolean_flag_turns_a_setting_off_and_one_not_given_keeps_it() -> None:
    from samadapter.config import RunConfig, override

    base = override(RunConfig(), {"models": {"offline": True}, "pipeline": {"keep_unknown": True}})
    off = ConfigFlags.of(offline=False, keep_unknown=False, two_pass=None).apply(base)
    assert (off.models.offline, off.pipeline.keep_unknown, off.models.two_pass) == (
        False,
        False,
        False,
    )
    kept = ConfigFlags.of(offline=None, keep_unknown=None).apply(base)
    assert (kept.models.offline, kept.pipeline.keep_unknown) == (True, True)

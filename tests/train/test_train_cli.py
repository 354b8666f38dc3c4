"""``samadapter train`` end to end on the synthetic dataset with the tiny models."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from samadapter.cli.options import Device
from samadapter.cli.train import Regions, Schedule, open_training_dataset, run_config, train
from samadapter.config import AmgSettings
from samadapter.errors import ConfigError
from samadapter.models import build_classifier_models
from samadapter.train.checkpoints import STATE_FILE
from samadapter.train.config import (
    DataSettings,
    FeatureSettings,
    ModelSettings,
    RegionSettings,
    RunSettings,
    TrainConfig,
    TrainRunConfig,
)

app = typer.Typer()
app.command()(train)
runner = CliRunner()

BASE = [
    "--dataset",
    "synthetic",
    "--clip",
    "tiny-random",
    "--clip-size",
    "64",
    "--synthetic-images",
    "6",
    "--batch-size",
    "2",
    "--warmup-steps",
    "1",
    "--threads",
    "1",
]


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*BASE, *args])
    return result.exit_code, result.output


def test_train_writes_loadable_checkpoints_and_logs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, text = run(
        "--output",
        str(out),
        "--steps",
        "4",
        "--checkpoint-every",
        "2",
        "--log-every",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--quiet",
    )
    assert code == 0, text
    assert "model_final.pth" in text
    for name in (
        "model_final.pth",
        "model_final_demo.pth",
        "model_0000002.pth",
        STATE_FILE,
        "log.jsonl",
        "train_log.csv",
        "config.json",
        "classes.txt",
    ):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    assert [r["step"] for r in records if r["kind"] == "val"] == [2, 4]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["stage"] == "warmup" and cfg["clip"] == "tiny-random"
    _, adapter = build_classifier_models("tiny-random", out / "model_final.pth", None)
    assert adapter is not None
    # the cache was filled: a second run reads it
    code, text = run(
        "--output", str(tmp_path / "again"), "--steps", "1", "--cache-dir", str(tmp_path / "cache")
    )
    assert code == 0, text
    assert "0 computed, 6 from the cache" in text

    # an existing run is not overwritten; --resume continues it
    code, text = run("--output", str(out), "--steps", "4", "--quiet")
    assert code == 2 and "holds a training run" in text
    code, text = run(
        "--output",
        str(out),
        "--steps",
        "6",
        "--resume",
        "--log-every",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert code == 0, text
    assert "resumed at step 4 of 6" in text
    assert torch.load(out / STATE_FILE, weights_only=True)["step"] == 6


def test_mixed_stage_with_tiny_sam(tmp_path: Path) -> None:
    warm = tmp_path / "warm"
    code, text = run("--output", str(warm), "--steps", "2", "--no-cache", "--quiet")
    assert code == 0, text
    code, text = run(
        "--output",
        str(tmp_path / "mixed"),
        "--stage",
        "mixed",
        "--steps",
        "2",
        "--adapter-checkpoint",
        str(warm / "model_final.pth"),
        "--sam",
        "tiny-random",
        "--points-per-side",
        "4",
        "--pred-iou-thresh",
        "0",
        "--stability-score-thresh",
        "0",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--val-split",
        "val",
    )
    assert code == 0, text
    cfg = json.loads((tmp_path / "mixed" / "config.json").read_text())
    assert cfg["config"]["stage"] == "mixed" and cfg["sam"].startswith("tiny-random:")


def test_dataset_errors(tmp_path: Path) -> None:
    code, text = run("--output", str(tmp_path / "x"), "--resume")
    assert code == 2 and "nothing to resume" in text
    result = runner.invoke(
        app, ["--dataset", "ade20k-150", "--output", str(tmp_path / "y"), "--clip", "tiny-random"]
    )
    assert result.exit_code == 2 and "--data-root" in result.output
    result = runner.invoke(
        app,
        [
            "--dataset",
            "ade20k-150",
            "--data-root",
            str(tmp_path),
            "--output",
            str(tmp_path / "y"),
            "--clip",
            "tiny-random",
        ],
    )
    assert result.exit_code == 2 and "ADEChallengeData2016" in result.output
    with pytest.raises(ConfigError, match="--classes-file"):
        open_training_dataset("folder", tmp_path, "train")
    with pytest.raises(ConfigError, match="unknown dataset"):
        open_training_dataset("coco", None, None)
    with pytest.raises(ConfigError, match="split"):
        open_training_dataset("synthetic", None, "holdout")
    assert len(open_training_dataset("synthetic", None, "val", synthetic_images=40)) == 10


def test_ade20k_and_folder_datasets_are_wired(tmp_path: Path) -> None:
    import synth_data as synth  # tests/synth_data.py, the data tests' dataset writer

    ade = synth.write_ade150(tmp_path / "ade", n=2)
    ds = open_training_dataset("ade20k-150", tmp_path / "ade", "val")
    assert len(ds) == 2 and len(ds.vocab) == 150
    sample = ds[0]
    assert (sample.label == ade.labels[ade.names[0]]).all()

    written = synth.write_folder(tmp_path / "f", n=3, offset=1)
    folder = open_training_dataset(
        "folder", tmp_path / "f", None, classes_file=tmp_path / "f" / "classes.txt", label_offset=1
    )
    assert len(folder) == 3 and folder.vocab.names == ["sky", "road", "tree", "car"]
    assert sorted(folder.names()) == written.names

    code, text = run_cli(
        [
            "--dataset",
            "ade20k-150",
            "--data-root",
            str(tmp_path / "ade"),
            "--split",
            "validation",
            "--clip",
            "tiny-random",
            "--clip-size",
            "64",
            "--steps",
            "2",
            "--batch-size",
            "1",
            "--warmup-steps",
            "1",
            "--threads",
            "1",
            "--output",
            str(tmp_path / "run"),
            "--quiet",
        ]
    )
    assert code == 0, text
    assert (tmp_path / "run" / "model_final.pth").exists()


def run_cli(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, args)
    return result.exit_code, result.output


def test_labels_that_are_all_ignore_fail_with_exit_2(tmp_path: Path) -> None:
    """Issue 11: such a dataset gave NaN losses and 'done: wrote model_final.pth', exit 0."""
    import numpy as np
    import synth_data as synth
    from PIL import Image

    synth.write_folder(tmp_path / "f", n=3, offset=1)
    for path in (tmp_path / "f" / "labels").rglob("*.png"):
        label = np.array(Image.open(path))
        Image.fromarray(np.full_like(label, 255)).save(path)
    code, text = run_cli(
        [
            "--dataset",
            "folder",
            "--data-root",
            str(tmp_path / "f"),
            "--classes-file",
            str(tmp_path / "f" / "classes.txt"),
            "--label-offset",
            "1",
            "--clip",
            "tiny-random",
            "--clip-size",
            "64",
            "--steps",
            "50",
            "--batch-size",
            "1",
            "--warmup-steps",
            "1",
            "--threads",
            "1",
            "--no-cache",
            "--output",
            str(tmp_path / "run"),
            "--quiet",
        ]
    )
    assert code == 2, text
    assert "none of the 3 training steps had a labelled region" in text
    assert "done:" not in text and not (tmp_path / "run" / "model_final.pth").exists()


def test_folder_as_checkpoint_is_named_as_such(tmp_path: Path) -> None:
    code, text = run("--output", str(tmp_path / "x"), "--adapter-checkpoint", str(tmp_path))
    assert code == 2 and f"checkpoint {tmp_path} is a folder, not a file" in text


def test_each_flag_sets_the_field_of_its_name() -> None:
    flags = {name: p.default for name, p in inspect.signature(train).parameters.items()}
    flags.update(
        dataset="folder",
        output=Path("o"),
        regions=Regions("class"),
        min_region_area=5,
        max_masks=12,
        points_per_side=8,
        device=Device.cpu,
        schedule=Schedule("cosine"),
        cache_in_memory=True,
        quiet=True,
    )
    assert run_config(**flags) == TrainRunConfig(  # every other flag at its setting's default
        DataSettings("folder", regions=RegionSettings("class", 5)),
        ModelSettings(amg=AmgSettings(points_per_side=8, min_mask_region_area=100), device="cpu"),
        FeatureSettings(cache_in_memory=True),
        TrainConfig(schedule="cosine", max_gt_masks=12, max_masks=12),
        RunSettings(Path("o"), quiet=True),
    )
    with pytest.raises(TypeError, match=r"flags without a setting: max_mask$"):
        run_config(**flags, max_mask=3)


def test_val_images_keeps_the_first_held_out_images(tmp_path: Path) -> None:
    code, text = run("--output", str(tmp_path / "a"), "--steps", "1", "--val-images", "3")
    assert code == 0, text
    assert "6 training images, 3 held-out" in text  # of the 8 of synthetic's val split
    code, text = run("--output", str(tmp_path / "b"), "--steps", "1", "--no-cache")
    assert code == 0, text
    assert "6 training images, 8 held-out" in text


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dataset", "folder"], "--dataset folder needs --data-root"),
        (["--dataset", "coco"], "unknown dataset 'coco'"),
        (["--dataset", "folder", "--data-root", "."], "--dataset folder needs --classes-file"),
        (["--dataset", "ade20k-150", "--data-root", "/nonexistent"], "does not exist"),
        (["--dataset", "synthetic", "--split", "bogus"], "unknown synthetic split 'bogus'"),
    ],
)
def test_dataset_flags_are_refused_before_any_model_loads(
    flags: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import samadapter.train.setup

    def no_models(**_: object) -> None:
        raise AssertionError("models loaded before the dataset flags were checked")

    monkeypatch.setattr(samadapter.train.setup, "build_training_models", no_models)
    result = runner.invoke(app, [*flags, "--clip", "tiny-random", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())

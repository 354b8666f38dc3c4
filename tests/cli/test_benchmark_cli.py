"""``samadapter benchmark`` end to end: tiny random models, synthetic datasets, offline."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import synth_data  # tests/synth_data.py (tests/ is on sys.path via its conftest)
from typer.testing import CliRunner

from samadapter.cli.main import app

TINY = ["--preset", "tiny-random", "--device", "cpu"]
REPORT_FILES = ("metrics.json", "per_class.csv", "report.md", "per_class_iou.png", "timings.csv")


def load_synth() -> ModuleType:
    """The synthetic-dataset writer shared by the data, eval and CLI tests."""
    return synth_data


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["benchmark", *(str(a) for a in args)], env={"COLUMNS": "240"})
    return result.exit_code, result.stdout, result.stderr


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def folder(tmp_path: Path) -> list[str | Path]:
    root = tmp_path / "data"
    load_synth().write_folder(root)
    return [
        "--dataset",
        "folder",
        "--images",
        root / "images",
        "--labels",
        root / "labels",
        "--classes-file",
        root / "classes.txt",
        "--label-offset",
        "1",
    ]


def runs(out: Path) -> dict[str, dict[str, float]]:
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))["runs"]


def test_compare_on_sam_masks_then_rescore_and_resume(
    tmp_path: Path, folder: list[str | Path]
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run(*folder, *TINY, "--compare", "--output", out)
    assert code == 0, stderr
    assert "mask-adapter" in stdout and "mask-pooling" in stdout and "mIoU" in stdout
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    live = runs(out)
    assert set(live) == {"sam/mask-adapter", "sam/mask-pooling"}

    code, stdout, stderr = run(*folder, "--predictions", out, "--output", tmp_path / "rescored")
    assert code == 0, stderr
    again = runs(tmp_path / "rescored")
    for key, values in live.items():
        for metric in ("mIoU", "fwIoU", "mAcc", "pAcc", "unlabelled"):
            assert again[key][metric] == values[metric]

    code, stdout, stderr = run(*folder, *TINY, "--compare", "--output", out)  # resume
    assert code == 0, stderr
    assert "3 image(s) read from earlier predictions" in stdout
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert summary["skipped"] == 3 and summary["computed"] == 0
    assert runs(out) == live


def test_gt_masks_mask_pooling_with_limit(tmp_path: Path, folder: list[str | Path]) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run(
        *folder,
        *TINY,
        "--masks",
        "gt",
        "--classifier",
        "mask-pooling",
        "--limit",
        "2",
        "--seed",
        "1",
        "--output",
        out,
        "--quiet",
    )
    assert code == 0, stderr
    assert stdout.strip() == ""
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert summary["images"] == 2 and summary["limit"] == 2
    assert list(summary["runs"]) == ["gt/mask-pooling"]
    assert len(list((out / "predictions" / "gt" / "mask-pooling").rglob("*.png"))) == 2
    assert "ground truth" in (out / "report.md").read_text(encoding="utf-8")


def test_ade150_layout_is_found_from_root(tmp_path: Path) -> None:
    synth = load_synth()
    written = synth.write_ade150(tmp_path / "datasets")
    out = tmp_path / "out"
    preds = tmp_path / "preds"  # perfect predictions made elsewhere
    from samadapter.eval.predictions import write_prediction

    for name, label in written.labels.items():
        write_prediction(preds / f"{name}.png", label)
    code, _, stderr = run(
        "--dataset",
        "ade20k-150",
        "--root",
        tmp_path / "datasets",
        "--predictions",
        preds,
        "--output",
        out,
    )
    assert code == 0, stderr
    assert runs(out)["preds"]["mIoU"] == 100
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "36.6" in report and "not SAM" in report


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--dataset", "ade20k-150", "--root", "{tmp}/nowhere"],
            "ADEChallengeData2016/images/validation/*.jpg",
        ),
        (
            ["--dataset", "ade20k-847", "--root", "{tmp}"],
            "ADE20K_2021_17_01/annotations_detectron2/validation/*.tif",
        ),
        (["--dataset", "ade20k-150"], "--dataset ade20k-150 needs --root DIR"),
        (
            ["--dataset", "ade20k-150", "--root", "{tmp}", "--images", "{tmp}"],
            "--images is only for --dataset folder",
        ),
        (["--dataset", "folder", "--images", "{tmp}"], "--dataset folder needs --labels DIR"),
        (
            ["--dataset", "folder", "--images", "{tmp}", "--labels", "{tmp}"],
            "needs --classes-file FILE or --vocab NAME",
        ),
        (
            ["--dataset", "folder", "--images", "{tmp}/x", "--labels", "{tmp}", "--vocab", "pc59"],
            "images folder not found",
        ),
        (
            [
                "--dataset",
                "ade20k-150",
                "--root",
                "{tmp}",
                "--compare",
                "--classifier",
                "mask-pooling",
            ],
            "give --compare or --classifier, not both",
        ),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    code, _, stderr = run(*(a.format(tmp=tmp_path) for a in args), *TINY)
    assert code == 2
    assert expected in one_error_line(stderr)


def test_missing_predictions_are_one_line(tmp_path: Path, folder: list[str | Path]) -> None:
    (tmp_path / "empty").mkdir()
    code, _, stderr = run(
        *folder, "--predictions", tmp_path / "empty", "--output", tmp_path / "out"
    )
    assert code == 2
    assert "3 of 3 images have no prediction" in one_error_line(stderr)


def test_full_grid_vs_two_pass_in_one_command(tmp_path: Path, folder: list[str | Path]) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run(
        *folder,
        *TINY,
        "--masks",
        "sam",
        "--masks",
        "sam-two-pass",
        "--classifier",
        "mask-pooling",
        "--limit",
        "2",
        "--output",
        out,
    )
    assert code == 0, stderr
    assert list(runs(out)) == ["sam/mask-pooling", "sam-two-pass/mask-pooling"]
    table = [line for line in stdout.splitlines() if "mask-pooling" in line]
    assert len(table) == 2 and "sam-two-pass" in table[1]
    for source in ("sam", "sam-two-pass"):
        assert len(list((out / "predictions" / source / "mask-pooling").rglob("*.png"))) == 2

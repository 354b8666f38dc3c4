"""``samadapter segment`` end to end with the tiny random models (no weights, offline)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from samadapter.cli.main import app

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "chelsea.jpg"
TINY = ["--preset", "tiny-random", "--device", "cpu"]


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "240"})
    return result.exit_code, result.stdout, result.stderr


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def only_error_line(stderr: str) -> str:
    """The one error line among the progress lines of a run that got to its images."""
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, stderr
    assert errors[0].startswith("error: ")
    return errors[0]


def coco(path: Path):  # type: ignore[no-untyped-def]
    from pycocotools.coco import COCO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return COCO(str(path))


def test_segment_writes_every_file_and_they_agree(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run(
        "segment", SAMPLE, "--classes", "cat,sofa|couch,floor", *TINY, "--output", out
    )
    assert code == 0, stderr
    assert "chelsea.jpg" in stderr and stdout == ""
    gt = coco(out / "per-image" / "chelsea.jpg.json")
    assert [c["name"] for c in gt.loadCats(gt.getCatIds())] == ["cat", "sofa", "floor"]
    assert gt.loadCats(2)[0]["synonyms"] == ["sofa", "couch"]
    image = gt.loadImgs(gt.getImgIds())[0]
    assert (image["width"], image["height"]) == (451, 300)
    anns = gt.loadAnns(gt.getAnnIds())
    assert len(anns) >= 1
    semantic = np.array(Image.open(out / "per-image" / "chelsea.jpg.semantic.png"))
    assert semantic.shape == (300, 451)
    assert set(np.unique(semantic)) <= {0, 1, 2, 3}
    names = {1: "cat", 2: "sofa", 3: "floor"}
    union = np.zeros((300, 451), dtype=bool)
    for cat_id in {a["category_id"] for a in anns}:
        from_json = np.zeros((300, 451), dtype=bool)
        for a in anns:
            if a["category_id"] == cat_id:
                m = gt.annToMask(a).astype(bool)
                assert a["area"] == m.sum()
                ys, xs = np.nonzero(m)
                assert a["bbox"] == [
                    xs.min(),
                    ys.min(),
                    xs.max() - xs.min() + 1,
                    ys.max() - ys.min() + 1,
                ]
                from_json |= m
        png = np.array(Image.open(out / "per-image" / "chelsea.jpg.masks" / f"{names[cat_id]}.png"))
        assert set(np.unique(png)) <= {0, 255}
        np.testing.assert_array_equal(png == 255, from_json)
        assert np.all(from_json[semantic == cat_id])  # semantic label c => inside c's masks
        union |= from_json
    np.testing.assert_array_equal(union, semantic > 0)
    overlay = Image.open(out / "per-image" / "chelsea.jpg.overlay.png")
    assert overlay.size == (451, 300)
    for a in anns:
        assert {
            "score",
            "predicted_iou",
            "stability_score",
            "point_coords",
            "crop_box",
            "iscrowd",
            "segmentation",
        } <= set(a)
        assert isinstance(a["segmentation"]["counts"], str)


def test_finished_outputs_are_skipped_unless_overwrite(tmp_path: Path) -> None:
    args = ("segment", SAMPLE, "--classes", "cat", *TINY, "-o", tmp_path)
    assert run(*args)[0] == 0
    before = (tmp_path / "per-image" / "chelsea.jpg.json").stat().st_mtime_ns
    code, _, stderr = run(*args)
    assert code == 0
    assert "0 done, 1 skipped" in stderr
    assert (tmp_path / "per-image" / "chelsea.jpg.json").stat().st_mtime_ns == before
    code, _, stderr = run(*args, "--overwrite")
    assert code == 0 and "1 done" not in stderr  # a single image prints its own table
    assert (tmp_path / "per-image" / "chelsea.jpg.json").stat().st_mtime_ns != before


def test_missing_image(tmp_path: Path) -> None:
    code, _, stderr = run(
        "segment", tmp_path / "nope.jpg", "--classes", "cat", *TINY, "-o", tmp_path / "out"
    )
    assert code == 2
    assert "nope.jpg" in one_error_line(stderr)
    assert not (tmp_path / "out").exists()


def test_corrupt_image_leaves_no_partial_files(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(SAMPLE.read_bytes()[:300])
    code, _, stderr = run("segment", bad, "--classes", "cat", *TINY, "-o", tmp_path / "out")
    assert code == 1
    assert "broken.jpg" in only_error_line(stderr)
    assert not list((tmp_path / "out" / "per-image").glob("broken*"))
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert [f["file"] for f in failures] == ["broken.jpg"]


def test_folder_with_a_bad_image_finishes_the_good_ones(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / "a.jpg")
    shutil.copy(SAMPLE, folder / "c.jpg")
    (folder / "b.jpg").write_bytes(b"not an image at all")
    code, _, stderr = run("segment", folder, "--classes", "cat", *TINY, "-o", tmp_path / "o")
    assert code == 1
    assert "b.jpg" in stderr
    done = tmp_path / "o" / "per-image"
    assert (done / "a.jpg.json").exists() and (done / "c.jpg.json").exists()
    assert not list(done.glob("b*"))
    assert "2 done" in stderr and "1 failed" in stderr


def test_missing_weights_offline_names_the_paths(tmp_path: Path) -> None:
    code, _, stderr = run(
        "segment",
        SAMPLE,
        "--classes",
        "cat",
        "--preset",
        "fast",
        "--device",
        "cpu",
        "--weights-dir",
        tmp_path / "w",
        "-o",
        tmp_path / "out",
    )
    assert code == 2
    line = one_error_line(stderr)
    assert str(tmp_path / "w" / "sam_vit_b_01ec64.pth") in line
    assert "fcclip_convnext_large_maskadapter.pth" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--classes", ""], "class"),
        (["--classes", "cat,cat"], "cat"),
        (["--classes", "cat", "--vocab", "ade150"], "one of"),
        (["--vocab", "ade1500"], "ade1500"),
        (["--classes", "cat", "--preset", "turbo"], "turbo"),
        (["--classes", "cat", "--sam", "vit_x"], "vit_x"),
        (["--classes", "cat", "--adapter-checkpoint", "/nonexistent.pth"], "nonexistent.pth"),
    ],
)
def test_bad_values_give_one_clear_line(tmp_path: Path, flags: list[str], fragment: str) -> None:
    code, _, stderr = run("segment", SAMPLE, *flags, *TINY[2:], "-o", tmp_path / "out")
    assert code == 2
    assert fragment in one_error_line(stderr)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flags",
    [
        ["--points-per-side", "0"],
        ["--score-thresh", "2"],
        ["--device", "tpu"],
        ["--classifier", "knn"],
        ["--keep-ratio", "1"],
        ["--keep-ratio", "-0.1"],
        ["--labelstudio-root", " "],
    ],
)
def test_out_of_range_flags_are_usage_errors(tmp_path: Path, flags: list[str]) -> None:
    code, _, stderr = run(
        "segment", SAMPLE, "--classes", "cat", *TINY, *flags, "-o", tmp_path / "out"
    )
    assert code == 2
    assert flags[0] in stderr
    assert not (tmp_path / "out").exists()


def test_mask_pooling_and_keep_unknown(tmp_path: Path) -> None:
    # Without the adapter there is no void class, so no mask is ever 'unknown'; an opt-in
    # absolute threshold of 1 drops every mask.
    code, _, stderr = run(
        "segment",
        SAMPLE,
        "--classes",
        "cat,sofa",
        *TINY,
        "--classifier",
        "mask-pooling",
        "--keep-unknown",
        "--keep-ratio",
        "0",
        "-o",
        tmp_path / "a",
    )
    assert code == 0, stderr
    data = json.loads((tmp_path / "a" / "per-image" / "chelsea.jpg.json").read_text())
    assert [c["name"] for c in data["categories"]] == ["cat", "sofa"]
    assert len(data["annotations"]) >= 1
    code, _, stderr = run(
        "segment",
        SAMPLE,
        "--classes",
        "cat,sofa",
        *TINY,
        "--classifier",
        "mask-pooling",
        "--score-thresh",
        "1",
        "-o",
        tmp_path / "b",
    )
    assert code == 0, stderr
    data = json.loads((tmp_path / "b" / "per-image" / "chelsea.jpg.json").read_text())
    assert data["annotations"] == []


def test_help_and_version() -> None:
    code, stdout, _ = run("segment", "--help")
    assert code == 0
    for flag in (
        "--points-per-side",
        "--pred-iou-thresh",
        "--stability-score-thresh",
        "--box-nms-thresh",
        "--crop-n-layers",
        "--min-mask-region-area",
        "--sam-checkpoint",
        "--adapter-checkpoint",
        "--weights-dir",
        "--offline",
    ):
        assert flag in stdout
    proc = subprocess.run(
        [sys.executable, "-m", "samadapter", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.startswith("samadapter 0.")


def test_names_with_brackets_are_printed_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Class names, file names and paths are data: '[/]' must not crash rich, '[red]' not
    colour anything."""
    import io

    from rich.console import Console

    from samadapter.batch import BatchSummary, ImageRecord
    from samadapter.cli import progress
    from samadapter.cli import segment as segment_cli

    out = io.StringIO()
    monkeypatch.setattr(
        progress, "console", Console(file=out, width=200, force_terminal=True, color_system=None)
    )

    class Runner:
        def run(self, items, on_stage, on_image):  # type: ignore[no-untyped-def]
            on_stage("CLIP x.jpg")
            on_stage("naming x[/] [red]y.jpg")  # the stage shown when the bar is drawn
            records = [
                ImageRecord("a[red].jpg", "a", "done", 3, {"/x[/]": 2, "y[red]": 1}),
                ImageRecord("b.jpg", "b", "done", 1, {"/x[/]": 1}),
            ]
            return BatchSummary(records, tmp_path / "out[/]")

    summary = segment_cli.run_with_progress(Runner(), ["a", "b"], quiet=False)  # type: ignore
    assert segment_cli.finish(summary, quiet=False) == 0
    text = out.getvalue()  # markup would be consumed: '[red]' gone, '[/]' an error
    assert "naming x[/] [red]y.jpg" in text  # the progress bar's stage
    assert "/x[/]" in text and "y[red]" in text and f"{tmp_path / 'out[/]'}/" in text


def test_output_folder_with_markup_is_no_crash(tmp_path: Path) -> None:
    code, stdout, stderr = run(
        "segment", SAMPLE, "-c", "/x[/],y[red]", *TINY, "-o", tmp_path / "o[/]"
    )
    assert code == 0, stderr
    assert f"outputs in {tmp_path / 'o[/]'}/" in (stdout + stderr).replace("\n", "")


def test_reserved_and_control_character_class_names_are_one_line(tmp_path: Path) -> None:
    code, _, stderr = run("segment", SAMPLE, "-c", "dog,unknown", *TINY, "-o", tmp_path / "a")
    assert code == 2 and "'unknown' (class 2) is reserved" in one_error_line(stderr)
    code, _, stderr = run("segment", SAMPLE, "-c", "dog,ca\x01t", *TINY, "-o", tmp_path / "b")
    assert code == 2 and "U+0001" in one_error_line(stderr)
    code, _, stderr = run(
        "segment", SAMPLE, "--vocab", "pc459", "--keep-unknown", *TINY, "-q", "-o", tmp_path / "c"
    )
    assert code == 2 and "pc459 has a class called 'unknown'" in one_error_line(stderr)
    assert not (tmp_path / "c").exists()


def test_segment_precision_flag_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _, stderr = run(
        "segment",
        SAMPLE,
        "--classes",
        "cat,sofa",
        *TINY,
        "--output",
        out,
        "--precision",
        "bf16",
        "--points-per-side",
        "2",
        "--quiet",
    )
    assert code == 0, stderr
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["run"]["precision"] == "bf16"
    code, _, stderr = run(
        "segment", SAMPLE, "--classes", "cat", *TINY, "--output", out, "--precision", "fp8"
    )
    assert code != 0 and "fp8" in stderr


def test_json_info_records_the_resize_and_keep_rule(tmp_path: Path) -> None:
    code, _, stderr = run(
        "segment", SAMPLE, "--classes", "cat,sofa", *TINY, "--clip-size", "96", "-o", tmp_path
    )
    assert code == 0, stderr
    info = json.loads((tmp_path / "per-image" / "chelsea.jpg.json").read_text())["info"]
    method = info["method"]
    assert "ResizeShortestEdge(96, max_size=96)" in method["clip_resize"]
    assert method["keep_rule"].startswith("kept if P[q,k] > 0.8 * max")
    assert "void dropped" in method["probabilities"]
    code, _, stderr = run(
        "segment",
        SAMPLE,
        "--classes",
        "cat,sofa",
        *TINY,
        "--keep-ratio",
        "0",
        "--score-thresh",
        "0.3",
        "-o",
        tmp_path / "b",
    )
    assert code == 0, stderr
    info = json.loads((tmp_path / "b" / "per-image" / "chelsea.jpg.json").read_text())["info"]
    assert info["method"]["keep_rule"] == ("every mask kept, and best class probability >= 0.3")


def test_segment_two_pass_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _, stderr = run(
        "segment",
        SAMPLE,
        "--classes",
        "cat,sofa",
        *TINY,
        "--output",
        out,
        "--two-pass",
        "--runtime",
        "torch",
        "--quiet",
    )
    assert code == 0, stderr
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["run"]["two_pass"] is True and run_info["run"]["runtime"] == "torch"


def test_keep_unknown_with_an_unknown_class_is_refused_before_models_load(tmp_path: Path) -> None:
    """pc459 has a class called 'unknown': --keep-unknown would make two such categories."""
    code, _, stderr = run(
        "segment", SAMPLE, "--vocab", "pc459", "--keep-unknown", *TINY, "-o", tmp_path / "out"
    )
    assert code == 2
    assert "unknown" in one_error_line(stderr)
    assert "models ready" not in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["segment", "classify"])
def test_a_folder_another_live_run_holds_is_refused_before_the_models_load(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import samadapter.models

    def no_models(*_: object, **__: object) -> None:
        raise AssertionError("models loaded before the lock was checked")

    monkeypatch.setattr(samadapter.models, "load_segmenter", no_models)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".samadapter.lock").write_text(f"{os.getppid()}\n")  # a live process
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    masks = ["--masks", str(tmp_path)] if command == "classify" else []
    code, _, stderr = run(command, image, *masks, "-c", "cat", *TINY, "-o", out)
    assert code == 2, stderr
    assert f"another samadapter run (process {os.getppid()})" in " ".join(stderr.split())
    assert sorted(p.name for p in out.iterdir()) == [".samadapter.lock"]

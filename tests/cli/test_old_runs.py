"""Run folders written by earlier versions still resume and relabel (fixture: tests/fixtures)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from typer.testing import CliRunner

from samadapter.cli.main import app

OLD_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "old_run"
"""Written by samadapter 0.1.0 before the typed configuration (see tests/test_config.py)."""


def old_run(tmp_path: Path) -> tuple[Path, Path]:
    """The fixture copied to ``tmp_path``, the image with the size and mtime recorded for it and
    run.json pointing at the copy; ``(image, output folder)``."""
    shutil.copytree(OLD_RUN, tmp_path, dirs_exist_ok=True)
    image, out = tmp_path / "in" / "img.png", tmp_path / "out"
    recorded = json.loads((out / "per-image" / "img.png.json").read_text())["info"]
    os.utime(image, ns=(recorded["samadapter_input"]["mtime_ns"],) * 2)
    run = json.loads((out / "run.json").read_text())
    run["root"], run["inputs"][0]["path"] = str(image.parent), str(image)
    (out / "run.json").write_text(json.dumps(run))
    return image, out


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "240"})
    return result.exit_code, result.stderr


def test_old_run_is_finished_for_a_rerun_with_the_same_settings(tmp_path: Path) -> None:
    image, out = old_run(tmp_path)
    before = (out / "per-image" / "img.png.json").read_bytes()
    flags = ["--preset", "tiny-random", "--classes", "cat,sofa|couch", "--device", "cpu"]
    code, stderr = invoke("segment", image, *flags, "-o", out, "--cache-features")
    assert code == 0, stderr
    assert "skipped, finished earlier (1 masks)" in stderr
    assert (out / "per-image" / "img.png.json").read_bytes() == before
    # Another setting that changes outputs is not finished.
    code, stderr = invoke("segment", image, *flags, "-o", out, "--points-per-side", "3")
    assert code == 0 and "skipped" not in stderr and "masks in" in stderr, stderr


def test_old_run_relabels(tmp_path: Path) -> None:
    _, out = old_run(tmp_path)
    code, stderr = invoke("relabel", out, "--classes", "dog,rug", "--device", "cpu")
    assert code == 0, stderr
    coco = json.loads((out / "per-image" / "img.png.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["dog", "rug"]
    assert json.loads((out / "run.json").read_text())["settings"]["vocabulary"]["classes"] == [
        ["dog"],
        ["rug"],
    ]

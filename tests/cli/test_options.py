"""Shared model flags: flags a preset ignores are said to be ignored; bad paths fail early."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from samadapter.cli.main import app
from samadapter.cli.options import ignored_flags

X = Path("x.pth")


def test_ignored_flags_by_preset() -> None:
    assert ignored_flags("tiny-random", None, X, None, None, None, None) == [
        "--sam-checkpoint is ignored: --preset tiny-random builds a random SAM (add --sam "
        "vit_b, vit_l or vit_h to use the file)"
    ]
    assert ignored_flags("tiny-random", "vit_b", X, None, None, None, None) == []
    lines = ignored_flags("tiny-random", None, None, None, None, "convnext_base_w_320", X)
    assert [line.split(" is ignored")[0] for line in lines] == ["--clip", "--clip-checkpoint"]
    assert ignored_flags("tiny-random", None, None, None, X, None, X) == []
    # FC-CLIP's adapter file carries CLIP; the demo adapter does not.
    assert ignored_flags("fast", None, None, None, None, None, X) == [
        "--clip-checkpoint is ignored: the adapter fcclip_convnext_large carries its own CLIP "
        "weights"
    ]
    assert ignored_flags("auto", None, None, None, None, None, X) != []
    assert ignored_flags("fast", None, None, "demo", None, None, X) == []
    assert ignored_flags("fast", None, X, None, None, None, None) == []
    assert ignored_flags("no-such-preset", None, X, None, None, None, X) == []


def _image(tmp_path: Path) -> Path:
    path = tmp_path / "img.png"
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(path)
    return path


def test_segment_warns_about_an_ignored_sam_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "x.pth").write_bytes(b"never read")
    result = CliRunner().invoke(
        app,
        [
            "segment",
            str(_image(tmp_path)),
            "-c",
            "cat",
            "--preset",
            "tiny-random",
            "--device",
            "cpu",
            "-q",
            "--sam-checkpoint",
            str(tmp_path / "x.pth"),
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[0] == (
        "warning: --sam-checkpoint is ignored: --preset tiny-random builds a random SAM (add "
        "--sam vit_b, vit_l or vit_h to use the file)"
    )


def test_folder_as_checkpoint_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "segment",
            str(_image(tmp_path)),
            "-c",
            "cat",
            "--preset",
            "tiny-random",
            "--device",
            "cpu",
            "--adapter-checkpoint",
            str(tmp_path),
            "-o",
            str(tmp_path / "out"),
        ],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: checkpoint {tmp_path} is a folder, not a file (give the .pth / .bin file "
        "inside it)"
    ]

"""Tests for the ``samadapter vocab`` sub-app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from samadapter.cli.vocab import app

runner = CliRunner()


def test_list_shows_builtins() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    for name in ("ade150", "ade847", "lvis", "1203", "cityscapes"):
        assert name in result.stdout


def test_show_ade150() -> None:
    result = runner.invoke(app, ["show", "ade150"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ade150: 150 classes")
    assert lines[1] == "  1  wall  (walls, brick wall, stone wall, interior wall)"
    assert len(lines) == 1 + 150


def test_show_json() -> None:
    result = runner.invoke(app, ["show", "pc59", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "pc59"
    assert len(data["classes"]) == len(data["ids"]) == 59
    assert data["classes"][0][0] == "aeroplane"


def test_show_class_file(tmp_path: Path) -> None:
    f = tmp_path / "mine.txt"
    f.write_text("sofa,couch\ncat\n")
    result = runner.invoke(app, ["show", str(f)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == ["1  sofa  (couch)", "2  cat"]


def test_show_unknown_exits_2_with_one_line() -> None:
    result = runner.invoke(app, ["show", "nope"])
    assert result.exit_code == 2
    assert result.stdout == ""
    err = result.stderr.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: unknown vocabulary 'nope'; choose one of: ade150")


def test_show_bad_file_exits_2(tmp_path: Path) -> None:
    f = tmp_path / "bad.txt"
    f.write_text("cat\ncat\n")
    result = runner.invoke(app, ["show", str(f)])
    assert result.exit_code == 2
    assert "duplicate class name 'cat'" in result.stderr

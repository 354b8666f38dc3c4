"""The output layout's safety rules: safe relative names, the plan check, the manifest."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pytest

from samadapter.errors import OutputError
from samadapter.io.layout import (
    MANIFEST_FILE,
    PlannedOutput,
    check_plan,
    read_manifest,
    safe_rel,
    write_manifest,
)


@pytest.mark.parametrize("good", ["a.jpg", "sub/b.jpg", "..jpg", "x/..y/.z.png", "caf\udce9.jpg"])
def test_safe_rel_accepts_names_inside(good: str) -> None:
    assert safe_rel(good) == PurePosixPath(good)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "..",
        "../a.jpg",
        "a/../../b.jpg",
        "/etc/passwd",
        "a//b.jpg",
        "./a.jpg",
        "a/.",
        "a\x00b",
        None,
        5,
        ["a"],
    ],
)
def test_safe_rel_refuses_anything_that_could_leave(bad: object) -> None:
    with pytest.raises(OutputError, match="unsafe"):
        safe_rel(bad)


def test_check_plan_owns_only_what_the_manifest_lists(tmp_path: Path) -> None:
    out = tmp_path / "out"
    planned = [PlannedOutput(out / "per-image" / "a.jpg.json", "a.jpg")]
    owned = check_plan(out, {"run.json", "per-image"}, planned)  # nothing there yet: fine
    assert owned == {"run.json", "per-image", MANIFEST_FILE}
    out.mkdir()
    (out / "per-image").mkdir()
    with pytest.raises(OutputError, match=r"per-image exists and was not written by samadapter"):
        check_plan(out, {"run.json", "per-image"}, planned)
    write_manifest(out, owned)
    assert read_manifest(out) == owned
    assert check_plan(out, {"run.json", "per-image"}, planned) == owned
    assert json.loads((out / MANIFEST_FILE).read_text())["tool"] == "samadapter"


def test_check_plan_names_both_sides_of_a_collision(tmp_path: Path) -> None:
    out = tmp_path / "out"
    same = out / "yolo" / "labels" / "a.txt"
    with pytest.raises(OutputError, match=r"a\.jpg and a\.png would both write"):
        check_plan(out, set(), [PlannedOutput(same, "a.jpg"), PlannedOutput(same, "a.png")])
    with pytest.raises(OutputError, match="is a file, not a folder"):
        (tmp_path / "file").write_text("x")
        check_plan(tmp_path / "file", set(), [])


def test_check_plan_refuses_files_where_folders_go_and_back(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "per-image").mkdir(parents=True)
    write_manifest(out, {"per-image"})
    (out / "per-image" / "a.jpg.masks").write_text("a file")
    with pytest.raises(OutputError, match="exists as a file"):
        check_plan(
            out,
            {"per-image"},
            [PlannedOutput(out / "per-image" / "a.jpg.masks", "a.jpg", is_dir=True)],
        )
    (out / "per-image" / "sub").write_text("a file")
    with pytest.raises(OutputError, match=r"needs the folder .*sub, which is a file"):
        check_plan(
            out,
            {"per-image"},
            [PlannedOutput(out / "per-image" / "sub" / "b.jpg.json", "sub/b.jpg")],
        )


def test_an_output_folder_of_the_earlier_layout_is_named_as_such(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"samadapter_version": "0.0.9", "inputs": []}))
    (out / "a.json").write_text("{}")
    with pytest.raises(OutputError, match="earlier samadapter layout"):
        check_plan(out, {"run.json", "per-image"}, [])
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "run.json"]

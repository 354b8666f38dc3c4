"""Batch runs never clobber: the output layout, the plan check, resume identity, isolation.

Each test reproduces one way a batch could lose or clobber data, on the tiny random models and
small images.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from samadapter.batch import (
    BatchOptions,
    BatchRunner,
    ClassifyRunner,
    RelabelRunner,
    collect_inputs,
)
from samadapter.cli.main import app
from samadapter.errors import OutputError
from samadapter.models import load_segmenter
from samadapter.pipeline import Segmenter
from samadapter.vocab import parse_classes

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
VOCAB = parse_classes("cat,cup,table")
TINY = ["--preset", "tiny-random", "--device", "cpu", "--keep-unknown", "--score-thresh", "0"]


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return load_segmenter(
        "tiny-random", device="cpu", settings={"keep_unknown": True, "score_thresh": 0.0}
    )


def photo(path: Path, size: tuple[int, int] = (64, 48), sample: str = "chelsea.jpg") -> Path:
    """A small copy of a sample image at ``path`` (``size`` is W x H), in path's format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(SAMPLES / sample) as img:
        fmt = {".png": "PNG"}.get(path.suffix.lower(), "JPEG")  # "..jpg" has no splitext suffix
        img.convert("RGB").resize(size).save(path, format=fmt)
    return path


def runner(seg: Segmenter, out: Path, vocab: Any = VOCAB, **kw: Any) -> BatchRunner:
    return BatchRunner(seg, vocab, BatchOptions(out_dir=out, **kw))


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "240"})
    return result.exit_code, result.stderr


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` with its bytes (``None`` for folders)."""
    return {
        str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(folder.rglob("*"))
    }


def merged(out: Path) -> dict[str, Any]:
    return json.loads((out / "annotations.json").read_text(encoding="utf-8"))


# -- item 1: no output path can collide --------------------------------------------------------


def test_output_folder_equal_to_the_input_folder_loses_nothing(
    seg: Segmenter, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    photo(folder / "trip.jpg")
    photo(folder / "trip" / "x.jpg", sample="coffee.jpg")
    photo(folder / "trip" / "y.png", (50, 40))
    (folder / "trip.json").write_text('{"mine": true}')
    before = snapshot(folder)
    items = collect_inputs([folder], recursive=True, output=folder)
    assert [i.file_name for i in items] == ["trip/x.jpg", "trip/y.png", "trip.jpg"]
    summary = runner(seg, folder).run(items)
    assert [r.status for r in summary.records] == ["done"] * 3
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k in before} == before  # every user file intact
    assert (folder / "per-image" / "trip.jpg.json").is_file()
    assert (folder / "per-image" / "trip" / "x.jpg.masks").is_dir()
    assert json.loads((folder / "trip.json").read_text()) == {"mine": True}
    # A rerun never takes the outputs (overlays, masks) as new images: 3 images, not 9.
    again = collect_inputs([folder], recursive=True, output=folder)
    assert [i.file_name for i in again] == ["trip/x.jpg", "trip/y.png", "trip.jpg"]
    assert [r.status for r in runner(seg, folder).run(again).records] == ["skipped"] * 3


def test_scanning_skips_the_outputs_of_any_earlier_run(seg: Segmenter, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photo(photos / "a.jpg")
    photo(photos / "sub" / "b.png", sample="coffee.jpg")
    runner(seg, photos / "out1").run(collect_inputs([photos], recursive=True))
    assert (photos / "out1" / "per-image" / "a.jpg.overlay.png").is_file()
    names = ["a.jpg", "sub/b.png"]
    assert [
        i.file_name for i in collect_inputs([photos], recursive=True, output=photos / "out2")
    ] == names
    assert sorted(
        i.file_name for i in collect_inputs([str(photos / "**" / "*.png")], output=photos / "out2")
    ) == ["sub/b.png"]
    given = photos / "out1" / "per-image" / "a.jpg.overlay.png"  # by name: taken
    assert [i.path for i in collect_inputs([given])] == [given]


def test_a_photo_and_a_folder_of_the_same_name(seg: Segmenter, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    photo(tree / "sub.jpg")
    photo(tree / "sub" / "x.jpg", sample="coffee.jpg")
    out = tmp_path / "out"
    summary = runner(seg, out).run(collect_inputs([tree], recursive=True))
    assert [r.status for r in summary.records] == ["done", "done"]
    assert (out / "per-image" / "sub.jpg.masks").is_dir()
    assert (out / "per-image" / "sub" / "x.jpg.json").is_file()
    assert (out / "per-image" / "sub" / "x.jpg.masks").is_dir()


def test_images_named_like_run_files_and_export_folders(seg: Segmenter, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    names = ["run", "annotations", "failures", "features", "yolo", "cvat", "labelstudio"]
    for name in names:
        photo(folder / f"{name}.jpg")
    out = tmp_path / "out"
    summary = runner(
        seg, out, cache_features=True, exports=("coco", "yolo-seg", "labelstudio", "cvat")
    ).run(collect_inputs([folder]))
    assert [r.status for r in summary.records] == ["done"] * len(names)
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["done"] == len(names)
    assert len(merged(out)["images"]) == len(names)
    assert len(json.loads((out / "failures.json").read_text())) == 0
    for name in names:
        coco = json.loads((out / "per-image" / f"{name}.jpg.json").read_text())
        assert coco["images"][0]["file_name"] == f"{name}.jpg"
        assert (out / "features" / f"{name}.jpg.npz").is_file()
        assert (out / "yolo" / "labels" / f"{name}.txt").is_file()
    assert (out / "yolo" / "data.yaml").is_file() and (out / "cvat" / "annotations.xml").is_file()
    assert len(json.loads((out / "labelstudio" / "tasks.json").read_text())) == len(names)


def test_same_stem_different_extensions_never_meet(seg: Segmenter, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    photo(folder / "a.jpg", (64, 48))
    photo(folder / "a.png", (40, 30), sample="coffee.jpg")
    photo(folder / "a_2.jpg", (50, 50))
    out = tmp_path / "out"
    items = collect_inputs([folder])
    summary = runner(seg, out).run(items)
    assert [r.status for r in summary.records] == ["done"] * 3
    sizes = {i["file_name"]: (i["width"], i["height"]) for i in merged(out)["images"]}
    assert sizes == {"a.jpg": (64, 48), "a.png": (40, 30), "a_2.jpg": (50, 50)}
    for name, size in sizes.items():
        coco = json.loads((out / "per-image" / f"{name}.json").read_text())
        assert (coco["images"][0]["width"], coco["images"][0]["height"]) == size
    # YOLO names labels by the stem: a.jpg and a.png would share one; refused before writing.
    other = tmp_path / "yolo_out"
    with pytest.raises(OutputError, match=r"a\.jpg and a\.png would both write .*a\.txt"):
        runner(seg, other, exports=("coco", "yolo-seg")).run(items)
    assert not other.exists()


def test_two_inputs_in_either_order_keep_their_own_outputs(seg: Segmenter, tmp_path: Path) -> None:
    x_jpg = photo(tmp_path / "d1" / "x.jpg", (64, 48))
    x_png = photo(tmp_path / "d2" / "x.png", (40, 30), sample="coffee.jpg")
    out = tmp_path / "out"
    first = runner(seg, out).run(collect_inputs([x_jpg, x_png]))
    assert [r.status for r in first.records] == ["done", "done"]
    swapped = runner(seg, out).run(collect_inputs([x_png, x_jpg]))
    assert [(r.file, r.status) for r in swapped.records] == [
        ("d2/x.png", "skipped"),
        ("d1/x.jpg", "skipped"),
    ]
    coco = merged(out)
    sizes = {i["file_name"]: (i["width"], i["height"]) for i in coco["images"]}
    assert sizes == {"d2/x.png": (40, 30), "d1/x.jpg": (64, 48)}
    for image in coco["images"]:  # every mask has its own image's size
        for ann in coco["annotations"]:
            if ann["image_id"] == image["id"]:
                assert ann["segmentation"]["size"] == [image["height"], image["width"]]


def test_a_glob_with_dotdot_never_writes_outside_the_output(seg: Segmenter, tmp_path: Path) -> None:
    (tmp_path / "img" / "d1").mkdir(parents=True)
    photo(tmp_path / "src" / "p.jpg")
    out = tmp_path / "out"
    before = snapshot(tmp_path / "src")
    items = collect_inputs([str(tmp_path / "img" / "d[1]" / ".." / ".." / "src" / "p.jpg")])
    assert [i.file_name for i in items] == ["src/p.jpg"]
    assert [r.status for r in runner(seg, out).run(items).records] == ["done"]
    assert snapshot(tmp_path / "src") == before
    assert (out / "per-image" / "src" / "p.jpg.json").is_file()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(out in p.parents or p.parent == tmp_path / "src" for p in written)


def test_output_naming_an_existing_file_is_one_clear_line(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    image = photo(tmp_path / "a.jpg")
    code, stderr = invoke("segment", image, "-c", "cat", *TINY, "-o", target)
    assert code == 2
    lines = error_lines(stderr)
    assert len(lines) == 1 and "notes.txt" in lines[0] and "is a file" in lines[0], stderr
    assert "Traceback" not in stderr
    assert target.read_text() == "keep me"


def test_a_user_file_where_a_run_file_goes_stops_the_run_first(
    seg: Segmenter, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    photo(folder / "a.jpg")
    (folder / "run.json").write_text("my notes")
    before = snapshot(folder)
    with pytest.raises(OutputError, match=r"run\.json exists and was not written by samadapter"):
        runner(seg, folder).run(collect_inputs([folder], output=folder))
    assert snapshot(folder) == before
    code, stderr = invoke("segment", folder, "-c", "cat", *TINY, "-o", folder)
    assert code == 2 and len(error_lines(stderr)) == 1 and "run.json" in stderr
    assert snapshot(folder) == before


def test_a_mirrored_folder_inside_another_images_output_is_refused(
    seg: Segmenter, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    photo(folder / "x.jpg")
    photo(folder / "x.jpg.masks" / "y.jpg")  # would land inside x.jpg's class-mask folder
    out = tmp_path / "out"
    with pytest.raises(OutputError, match=r"x\.jpg\.masks/y\.jpg.* inside x\.jpg's output"):
        runner(seg, out).run(collect_inputs([folder], recursive=True))
    assert not out.exists()


def test_a_damaged_manifest_is_one_error_not_a_guess(seg: Segmenter, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "samadapter-manifest.json").write_text('{"owned": 5}')
    with pytest.raises(OutputError, match="not a samadapter manifest"):
        runner(seg, out).run(collect_inputs([photo(tmp_path / "a.jpg")]))


# -- item 2: relabel / classify treat a run folder as untrusted --------------------------------


def _hostile_run(out: Path, **changes: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    run: dict[str, Any] = {
        "samadapter_version": "0.1.0",
        "cache_features": True,
        "root": str(out),
        "settings": {"models": {"pipeline": {}}, "formats": ["coco"], "exports": ["coco"]},
        "run": {"preset": "tiny-random", "device": "cpu"},
        "inputs": [{"path": str(out / "a.jpg"), "rel": "a.jpg"}],
    }
    run.update(changes)
    (out / "run.json").write_text(json.dumps(run))
    (out / "samadapter-manifest.json").write_text(
        json.dumps(
            {
                "tool": "samadapter",
                "owned": ["run.json", "per-image", "features", "annotations.json", "failures.json"],
            }
        )
    )


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ([{"path": "/x/a.jpg", "rel": "../Documents/a.jpg"}], "would leave the output folder"),
        ([{"path": "/x/a.jpg", "rel": "/tmp/elsewhere/a.jpg"}], "would leave the output folder"),
        ([{"path": "/x/a.jpg", "rel": "a/./b.jpg"}], "unsafe"),
        ([{"path": "/x/a.jpg", "rel": 5}], "unsafe"),
        (5, "'inputs' must be a list"),
        ([["a.jpg"]], "'inputs' must be a list"),
    ],
)
def test_relabel_refuses_paths_leaving_the_run_folder(
    tmp_path: Path, monkeypatch, inputs: Any, fragment: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Documents").mkdir()
    (tmp_path / "Documents" / "letter.txt").write_text("dear")
    out = tmp_path / "run"
    _hostile_run(out, inputs=inputs)
    code, stderr = invoke("relabel", out, "-c", "dog")
    assert code == 2
    lines = error_lines(stderr)
    assert len(lines) == 1 and fragment in lines[0], stderr
    assert "Traceback" not in stderr
    assert [p.name for p in (tmp_path / "Documents").iterdir()] == ["letter.txt"]
    assert not (out / "per-image").exists()


@pytest.mark.parametrize(
    "changes",
    [
        {"settings": []},
        {"settings": {"models": {"pipeline": {}}, "formats": ["pdf"]}},
        {"settings": {"models": {"pipeline": {}}, "postprocess": {"nope": 1}}},
        {"run": {"preset": "tiny-random", "evil_kwarg": "x"}},
        {"run": {"device": 5}},
    ],
)
def test_relabel_with_malformed_run_json_is_one_line(tmp_path: Path, changes: dict) -> None:
    out = tmp_path / "run"
    _hostile_run(out, **changes)
    code, stderr = invoke("relabel", out, "-c", "dog")
    assert code == 2
    lines = error_lines(stderr)
    assert len(lines) == 1 and "malformed" in lines[0], stderr


def test_relabel_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    out = tmp_path / "run"
    _hostile_run(out)
    (out / "per-image").symlink_to(victim, target_is_directory=True)
    code, stderr = invoke("relabel", out, "-c", "dog")
    assert code == 2
    lines = error_lines(stderr)
    assert len(lines) == 1 and "outside the output folder" in lines[0], stderr
    assert [p.name for p in victim.iterdir()] == ["keep.txt"]


def test_classify_reads_masks_from_a_previous_runs_folder(seg: Segmenter, tmp_path: Path) -> None:
    image = photo(tmp_path / "in" / "a.jpg")
    first = tmp_path / "first"
    runner(seg, first).run(collect_inputs([image.parent]))
    got = ClassifyRunner(
        seg, VOCAB, BatchOptions(out_dir=tmp_path / "cls"), masks=first, single=False
    ).run(collect_inputs([image.parent]))
    assert [r.status for r in got.records] == ["done"]
    want = json.loads((first / "per-image" / "a.jpg.json").read_text())["annotations"]
    have = json.loads((tmp_path / "cls" / "per-image" / "a.jpg.json").read_text())["annotations"]
    assert [a["segmentation"] for a in have] == [a["segmentation"] for a in want]


# -- item 3: resume is correct -----------------------------------------------------------------


def test_a_replaced_image_is_redone_not_skipped(seg: Segmenter, tmp_path: Path) -> None:
    image = photo(tmp_path / "in" / "a.jpg", (64, 48))
    out = tmp_path / "out"
    items = collect_inputs([image])
    assert [r.status for r in runner(seg, out).run(items).records] == ["done"]
    photo(image, (40, 30), sample="coffee.jpg")  # same name, other picture
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    again = runner(seg, out).run(collect_inputs([image]))
    assert [r.status for r in again.records] == ["done"]
    coco = json.loads((out / "per-image" / "a.jpg.json").read_text())
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (40, 30)
    assert coco["info"]["samadapter_input"]["size"] == image.stat().st_size


def test_an_image_failing_now_drops_its_stale_json_from_the_merge(
    seg: Segmenter, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    photo(folder / "a.jpg")
    photo(folder / "b.jpg", sample="coffee.jpg")
    out = tmp_path / "out"
    runner(seg, out, vocab=parse_classes("cat,sofa")).run(collect_inputs([folder]))
    (folder / "b.jpg").write_bytes(b"no longer an image")
    summary = runner(seg, out, vocab=parse_classes("dog,tree,sky")).run(collect_inputs([folder]))
    assert {r.file: r.status for r in summary.records} == {"a.jpg": "done", "b.jpg": "failed"}
    coco = merged(out)
    assert [i["file_name"] for i in coco["images"]] == ["a.jpg"]
    names = [c["name"] for c in coco["categories"]]
    # 'unknown' is listed only when a mask's top class is void (--keep-unknown)
    assert names[:3] == ["dog", "tree", "sky"] and names[3:] in ([], ["unknown"])
    assert {a["image_id"] for a in coco["annotations"]} <= {1}


def test_relabel_with_a_missing_or_corrupt_feature_file_fails_that_image_alone(
    seg: Segmenter, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        photo(folder / name)
    out = tmp_path / "out"
    items = collect_inputs([folder])
    runner(seg, out, cache_features=True).run(items)
    (out / "features" / "a.jpg.npz").write_bytes(b"PK\x03\x04 truncated zip")
    (out / "features" / "b.jpg.npz").unlink()
    summary = RelabelRunner(
        seg, parse_classes("dog,mug"), BatchOptions(out_dir=out, cache_features=True)
    ).run(items)
    status = {r.file: (r.status, r.error or "") for r in summary.records}
    assert status["c.jpg"] == ("done", "")
    assert status["a.jpg"][0] == "failed" and "corrupt" in status["a.jpg"][1]
    assert "a.jpg.npz" in status["a.jpg"][1] and "\n" not in status["a.jpg"][1]
    assert status["b.jpg"][0] == "failed" and "missing" in status["b.jpg"][1]
    assert [i["file_name"] for i in merged(out)["images"]] == ["c.jpg"]


def test_leftover_temporaries_of_a_killed_run_are_removed(seg: Segmenter, tmp_path: Path) -> None:
    image = photo(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    runner(seg, out).run(collect_inputs([image]))
    ours = [
        out / ".run.json.0123abcd.tmp.json",
        out / "per-image" / ".a.jpg.overlay.png.89abcdef.tmp.png",
        out / "per-image" / ".a.jpg.masks.tmp-deadbeef",
        out / "per-image" / ".a.jpg.masks.old-deadbeef",
    ]
    for path in ours:
        if ".tmp-" in path.name or ".old-" in path.name:  # folders of replace_dir_atomic
            path.mkdir()
            (path / "cat.png").write_bytes(b"partial")
        else:
            path.write_bytes(b"partial")
    users = [out / ".holiday.jpg.0123abcd.tmp.jpg", out / "notes.tmp"]  # not ours to delete
    for path in users:
        path.write_bytes(b"mine")
    runner(seg, out, overwrite=True).run(collect_inputs([image]))
    assert [p for p in ours if os.path.lexists(p)] == []
    assert all(p.read_bytes() == b"mine" for p in users)


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_lives(
    seg: Segmenter, tmp_path: Path
) -> None:
    import subprocess
    import sys

    image = photo(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".samadapter.lock").write_text(f"{os.getppid()}\n")  # a live process
    with pytest.raises(OutputError, match=rf"another samadapter run \(process {os.getppid()}\)"):
        runner(seg, out).run(collect_inputs([image]))
    assert sorted(p.name for p in out.iterdir()) == [".samadapter.lock"]
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (out / ".samadapter.lock").write_text(gone.stdout)  # left by a killed run: taken over
    assert [r.status for r in runner(seg, out).run(collect_inputs([image])).records] == ["done"]
    assert not (out / ".samadapter.lock").exists()


def test_sigterm_finishes_like_ctrl_c_with_exit_143(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "in"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        photo(folder / name)
    real = Segmenter.classify
    calls = {"n": 0}

    def terminated_on_second(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Segmenter, "classify", terminated_on_second)
    previous = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"
    code, stderr = invoke("segment", folder, "-c", "cat", *TINY, "-o", out, "-q")
    assert code == 143, stderr
    assert signal.getsignal(signal.SIGTERM) == previous  # handler restored
    run = json.loads((out / "run.json").read_text())
    assert run["interrupted"] is True
    status = {r["file"]: r["status"] for r in run["images"]}
    assert status["a.jpg"] == "done"
    assert status["b.jpg"] == "interrupted"  # in flight: never called done
    assert "c.jpg" not in status or status["c.jpg"] != "done"
    assert not (out / "per-image" / "b.jpg.json").exists()
    assert [i["file_name"] for i in merged(out)["images"]] == ["a.jpg"]
    assert not [p for p in out.rglob(".*")]


# -- item 4: one bad image fails alone ---------------------------------------------------------


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG declaring ``width x height`` with no pixel data (PIL reads the size only)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_bad_images_fail_alone_and_the_batch_goes_on(seg: Segmenter, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    photo(folder / "good.jpg")
    Image.fromarray(np.full((400, 1, 3), 120, np.uint8)).save(folder / "thin.png")  # 1x400
    photo(folder / "..jpg")
    latin1 = os.fsdecode(bytes(folder) + b"/caf\xe9.jpg")
    photo(Path(latin1))
    _png_header_only(folder / "bomb.png", 20000, 20000)  # 400 MP: refused before decoding
    out = tmp_path / "out"
    summary = runner(seg, out).run(collect_inputs([folder]))
    status = {r.file: r.status for r in summary.records}
    assert status == {
        "..jpg": "done",
        "bomb.png": "failed",
        "caf\udce9.jpg": "done",
        "good.jpg": "done",
        "thin.png": "failed",
    }
    errors = {r.file: r.error for r in summary.records if r.error}
    assert "too thin" in errors["thin.png"] and "1x400" in errors["thin.png"]
    assert "too large" in errors["bomb.png"]
    assert all("\n" not in e for e in errors.values())
    # Every JSON is valid UTF-8; Python readers get the original file name back.
    raw = (out / "annotations.json").read_bytes()
    raw.decode("utf-8")
    names = [i["file_name"] for i in json.loads(raw)["images"]]
    assert (
        "caf\udce9.jpg" in names
        and os.fsencode(names[names.index("caf\udce9.jpg")]) == b"caf\xe9.jpg"
    )
    run = json.loads((out / "run.json").read_bytes().decode("utf-8"))
    assert run["counts"] == {"done": 3, "skipped": 0, "failed": 2, "interrupted": 0}
    assert (out / "per-image" / "..jpg.json").is_file()
    assert os.path.isfile(os.fsencode(out / "per-image") + b"/caf\xe9.jpg.json")
    failures = json.loads((out / "failures.json").read_text(encoding="utf-8"))
    assert {f["file"] for f in failures} == {"thin.png", "bomb.png"}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # ours replaces it
def test_a_huge_png_is_downscaled_with_a_warning(seg: Segmenter, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    big = np.zeros((12000, 12000), np.uint8)
    big[:, 6000:] = 200
    Image.fromarray(big).save(folder / "huge.png", compress_level=1)
    del big
    photo(folder / "small.jpg")
    warned: list[str] = []
    out = tmp_path / "out"
    summary = BatchRunner(
        seg, VOCAB, BatchOptions(out_dir=out, max_pixels=250_000), on_warning=warned.append
    ).run(collect_inputs([folder]))
    assert [r.status for r in summary.records] == ["done", "done"]
    assert len(warned) == 1 and "12000x12000" in warned[0] and "500x500" in warned[0]
    assert summary.records[0].warnings == warned
    coco = json.loads((out / "per-image" / "huge.png.json").read_text())
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (500, 500)


def test_failures_are_one_line_and_out_of_memory_is_named() -> None:
    from samadapter.batch import describe_failure

    torch_oom = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
        "can't allocate memory: you tried to allocate 2147483648 bytes."
    )
    assert describe_failure(torch_oom).startswith(
        "ran out of memory (an allocation of 2.0 GiB failed) (pass --max-size"
    )
    assert describe_failure(MemoryError()).startswith("ran out of memory (pass --max-size")
    assert describe_failure(ValueError("first\nsecond")) == "unexpected ValueError: first"
    assert describe_failure(OutputError("disk full", hint="free space")) == "disk full (free space)"


def test_sigterm_while_planning_returns_143_and_writes_nothing_new(
    seg: Segmenter, tmp_path: Path
) -> None:
    from samadapter.batch import Terminated

    image = photo(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    r = runner(seg, out)

    def stopped(items):  # type: ignore[no-untyped-def]
        raise Terminated()

    r.plan = stopped  # type: ignore[method-assign]
    summary = r.run(collect_inputs([image]))
    assert summary.interrupted and summary.exit_code == 143 and summary.records == []
    assert not (out / "run.json").exists() and not (out / ".samadapter.lock").exists()


def test_a_fifo_among_the_inputs_fails_alone_instead_of_blocking(
    seg: Segmenter, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    photo(folder / "a.jpg")
    os.mkfifo(folder / "pipe.jpg")  # skipped when scanning a folder; given by name, read
    summary = runner(seg, tmp_path / "out").run(collect_inputs([folder, folder / "pipe.jpg"]))
    status = {r.file: (r.status, r.error) for r in summary.records}
    assert status["a.jpg"] == ("done", None)
    assert status["pipe.jpg"][0] == "failed" and "not a regular file" in str(status["pipe.jpg"][1])


def test_sigterm_to_a_real_run_exits_143_with_its_run_files(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    folder = tmp_path / "in"
    for i in range(40):
        photo(folder / f"img{i:02d}.jpg", (96, 64))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "samadapter",
            "segment",
            str(folder),
            "-c",
            "cat",
            *TINY,
            "-o",
            str(out),
            "-q",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    first = out / "per-image" / "img00.jpg.json"
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr.decode()
    run = json.loads((out / "run.json").read_text())
    assert run["interrupted"] is True
    done = [r["file"] for r in run["images"] if r["status"] == "done"]
    assert "img00.jpg" in done and len(done) < 40
    for name in done:  # "done" only when its outputs are all there
        assert (out / "per-image" / f"{name}.json").is_file()
    assert [i["file_name"] for i in merged(out)["images"]] == done
    assert not [p for p in out.rglob(".*")]
    assert b"Traceback" not in stderr


# -- unique file names over one common root --------------------------------------------------


def test_several_inputs_get_unique_file_names_that_supervision_loads(
    seg: Segmenter, tmp_path: Path
) -> None:
    sv = pytest.importorskip("supervision")
    imgs = tmp_path / "imgs"
    first = photo(imgs / "chelsea.jpg", (64, 48))
    second = photo(imgs / "c" / "chelsea.jpg", (40, 30), sample="coffee.jpg")
    out = tmp_path / "out"
    summary = runner(seg, out).run(collect_inputs([first, second]))
    assert [r.file for r in summary.records] == ["chelsea.jpg", "c/chelsea.jpg"]
    coco = merged(out)
    assert [i["file_name"] for i in coco["images"]] == ["chelsea.jpg", "c/chelsea.jpg"]
    root = Path(coco["info"]["images_root"])
    assert root == imgs.resolve()
    assert json.loads((out / "run.json").read_text())["root"] == str(root)
    for image in coco["images"]:
        with Image.open(root / image["file_name"]) as img:
            assert img.size == (image["width"], image["height"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = sv.DetectionDataset.from_coco(
            images_directory_path=str(root),
            annotations_path=str(out / "annotations.json"),
            force_masks=True,
        )
    assert len(dataset) == 2
    by_name = {Path(path).relative_to(root).as_posix(): det for path, _, det in dataset}
    assert set(by_name) == {"chelsea.jpg", "c/chelsea.jpg"}
    assert by_name["c/chelsea.jpg"].mask.shape[1:] == (30, 40)
    assert by_name["chelsea.jpg"].mask.shape[1:] == (48, 64)
    n = {
        i["file_name"]: sum(a["image_id"] == i["id"] for a in coco["annotations"])
        for i in coco["images"]
    }
    assert {k: len(v) for k, v in by_name.items()} == n


def test_folder_inputs_share_the_deepest_common_root(tmp_path: Path) -> None:
    photo(tmp_path / "imgs" / "a" / "x.jpg")
    photo(tmp_path / "imgs" / "c" / "x.jpg")
    items = collect_inputs([tmp_path / "imgs" / "a", tmp_path / "imgs" / "c"])
    assert [i.file_name for i in items] == ["a/x.jpg", "c/x.jpg"]
    assert {i.root for i in items} == {(tmp_path / "imgs").resolve()}
    shutil.rmtree(tmp_path / "imgs" / "c")
    assert [i.file_name for i in collect_inputs([tmp_path / "imgs" / "a"])] == ["x.jpg"]

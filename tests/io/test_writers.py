"""Atomic writes, JSON helpers, output paths and write_all's overwrite / ordering rules."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from samadapter.errors import ConfigError, OutputError
from samadapter.io import writers
from samadapter.io.atomic import (
    atomic_path,
    atomic_write,
    output_error,
    to_jsonable,
    write_bytes_atomic,
    write_json_atomic,
)
from samadapter.io.writers import (
    FORMATS,
    check_formats,
    output_paths,
    replace_dir_atomic,
    write_all,
)
from samadapter.structures import SegmentationResult


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Relative path -> (mtime_ns, bytes) of every file below ``folder`` (hidden ones too)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _raise(exc: BaseException) -> Callable[..., Any]:
    def fn(*_args: Any, **_kwargs: Any) -> Any:
        raise exc

    return fn


# --- atomic -----------------------------------------------------------------------------------


def test_atomic_path_temp_name_and_success(tmp_path: Path) -> None:
    final = tmp_path / "a.overlay.png"
    with atomic_path(final) as tmp:
        assert tmp.parent == tmp_path and tmp.exists()
        assert tmp.name.startswith(".a.overlay.png.") and tmp.name.endswith(".tmp.png")
        Image.new("RGB", (3, 2), (1, 2, 3)).save(tmp)  # PIL picks PNG from the suffix
        assert not final.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.overlay.png"]
    with Image.open(final) as img:
        assert img.format == "PNG" and img.getpixel((0, 0)) == (1, 2, 3)


def test_atomic_file_mode_follows_umask(tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    path = write_bytes_atomic(tmp_path / "x.bin", b"abc")
    assert path.read_bytes() == b"abc"
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failing_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(tmp_path / "out.json", _raise(RuntimeError("boom")))
    assert list(tmp_path.iterdir()) == []


def test_partial_write_keeps_old_file(tmp_path: Path) -> None:
    final = write_bytes_atomic(tmp_path / "out.json", b"old")

    def half(tmp: Path) -> None:
        tmp.write_bytes(b"new but incomp")
        raise ValueError("bad data")

    with pytest.raises(ValueError):
        atomic_write(final, half)
    assert final.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_keyboard_interrupt_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "x.png"):
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full(tmp_path: Path, code: int) -> None:
    final = tmp_path / "x.semantic.png"
    with pytest.raises(OutputError, match="disk full") as info:
        atomic_write(final, _raise(OSError(code, os.strerror(code))))
    assert str(final) in str(info.value)
    assert info.value.hint is not None and "free space" in info.value.hint
    assert list(tmp_path.iterdir()) == []


def test_disk_full_on_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "replace", _raise(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OutputError, match="disk full while writing"):
        write_bytes_atomic(tmp_path / "a.bin", b"x")
    assert list(tmp_path.iterdir()) == []


def test_permission_error(tmp_path: Path) -> None:
    err = output_error(PermissionError(errno.EACCES, "Permission denied"), tmp_path / "a.png")
    assert isinstance(err, OutputError)
    assert str(tmp_path / "a.png") in err.message and "Permission denied" in err.message
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write(tmp_path / "b.png", _raise(PermissionError(errno.EACCES, "Permission denied")))
    assert list(tmp_path.iterdir()) == []


def test_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot write"):
        write_bytes_atomic(blocker / "sub" / "x.bin", b"x")  # parent is a file


def test_write_json_atomic_numpy_and_nan(tmp_path: Path) -> None:
    obj = {
        "a": np.float32(0.5),
        "b": np.int64(3),
        "c": np.arange(3, dtype=np.uint8),
        "d": [np.nan, float("inf"), 1.0],
        "e": (np.bool_(True), None),
        "f": tmp_path,
        "g": "猫",
        5: np.zeros((2, 2), np.float64),
    }
    path = write_json_atomic(tmp_path / "x.json", obj)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text, parse_constant=_raise(AssertionError("non-standard JSON")))
    assert data == {
        "a": 0.5,
        "b": 3,
        "c": [0, 1, 2],
        "d": [None, None, 1.0],
        "e": [True, None],
        "f": str(tmp_path),
        "g": "猫",
        "5": [[0.0, 0.0], [0.0, 0.0]],
    }
    assert ", " not in text and ": " not in text  # compact
    assert type(to_jsonable(np.int32(2))) is int and type(to_jsonable(np.float16(1))) is float


def test_write_json_unserialisable_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="object"):
        write_json_atomic(tmp_path / "x.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_replace_dir_atomic(tmp_path: Path) -> None:
    target = tmp_path / "masks"
    replace_dir_atomic(target, lambda d: (d / "a.png").write_bytes(b"1"))
    assert sorted(p.name for p in target.iterdir()) == ["a.png"]
    replace_dir_atomic(target, lambda d: (d / "b.png").write_bytes(b"2"))  # replaces, no merge
    assert sorted(p.name for p in target.iterdir()) == ["b.png"]

    def fail(d: Path) -> None:
        (d / "c.png").write_bytes(b"3")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="disk full"):
        replace_dir_atomic(target, fail)
    assert sorted(p.name for p in target.iterdir()) == ["b.png"]  # old folder intact
    assert [p.name for p in tmp_path.iterdir()] == ["masks"]  # temporary folder gone


# --- output paths / formats -------------------------------------------------------------------


def test_output_paths(tmp_path: Path, result: SegmentationResult) -> None:
    paths = output_paths(tmp_path, "IMG_1")
    assert paths == {
        "overlay": tmp_path / "IMG_1.overlay.png",
        "coco": tmp_path / "IMG_1.json",
        "semantic": tmp_path / "IMG_1.semantic.png",
        "masks_dir": tmp_path / "IMG_1.masks",
    }
    with_masks = output_paths(tmp_path, "IMG_1", result)
    assert with_masks["mask:traffic light"] == tmp_path / "IMG_1.masks" / "traffic_light.png"
    assert {k for k in with_masks if k.startswith("mask:")} == {
        "mask:cat",
        "mask:sofa",
        "mask:traffic light",
    }
    for bad in ["", ".", "..", "a/b"]:
        with pytest.raises(ValueError, match="stem"):
            output_paths(tmp_path, bad)


def test_check_formats() -> None:
    assert check_formats(["coco", "overlay", "coco"]) == ("overlay", "coco")
    assert check_formats(FORMATS) == FORMATS and FORMATS[-1] == "coco"
    with pytest.raises(ConfigError, match="jpeg") as info:
        check_formats(["overlay", "jpeg"])
    assert info.value.hint is not None and "semantic" in info.value.hint
    with pytest.raises(ConfigError):
        check_formats([])


# --- write_all --------------------------------------------------------------------------------


def test_write_all_writes_everything(
    tmp_path: Path, result: SegmentationResult, image: np.ndarray
) -> None:
    out = tmp_path / "out" / "nested"
    written = write_all(image, result, out, "living_room")
    assert written == output_paths(out, "living_room")
    assert sorted(p.name for p in out.iterdir()) == [
        "living_room.json",
        "living_room.masks",
        "living_room.overlay.png",
        "living_room.semantic.png",
    ]
    assert sorted(p.name for p in (out / "living_room.masks").iterdir()) == [
        "cat.png",
        "sofa.png",
        "traffic_light.png",
    ]
    data = json.loads(written["coco"].read_text())
    assert len(data["annotations"]) == 4 and data["images"][0]["file_name"] == "living_room.jpg"
    with Image.open(written["semantic"]) as sem:
        np.testing.assert_array_equal(np.array(sem), result.semantic_map() + 1)
    with Image.open(written["overlay"]) as ov:
        assert ov.size == (60, 40) and ov.mode == "RGB"


def test_refuses_without_overwrite_and_changes_nothing(
    tmp_path: Path,
    result: SegmentationResult,
    image: np.ndarray,
    result_factory: Callable[..., SegmentationResult],
) -> None:
    write_all(image, result, tmp_path, "x")
    before = _snapshot(tmp_path)
    other = result_factory(unknown=True)
    with pytest.raises(OutputError, match="already exist") as info:
        write_all(image, other, tmp_path, "x")
    assert info.value.hint is not None and "--overwrite" in info.value.hint
    assert str(tmp_path / "x.overlay.png") in str(info.value)
    assert _snapshot(tmp_path) == before  # same files, bytes and mtimes; no temporaries

    # one existing output is enough to refuse
    (tmp_path / "x.json").unlink()
    (tmp_path / "x.overlay.png").unlink()
    before = _snapshot(tmp_path)
    with pytest.raises(OutputError):
        write_all(image, other, tmp_path, "x")
    assert _snapshot(tmp_path) == before


def test_overwrite_replaces(tmp_path: Path, result: SegmentationResult, image: np.ndarray) -> None:
    write_all(image, result, tmp_path, "x")
    only_sofa = dataclasses.replace(
        result,
        masks=result.masks[:1],
        class_ids=result.class_ids[:1],
        scores=result.scores[:1],
        class_scores=result.class_scores[:1],
        predicted_iou=result.predicted_iou[:1],
        stability_score=result.stability_score[:1],
        point_coords=result.point_coords[:1],
        crop_box=result.crop_box[:1],
    )
    written = write_all(image, only_sofa, tmp_path, "x", overwrite=True)
    assert sorted(p.name for p in written["masks_dir"].iterdir()) == ["sofa.png"]  # not merged
    assert len(json.loads(written["coco"].read_text())["annotations"]) == 1
    with Image.open(written["semantic"]) as sem:
        assert set(np.unique(np.array(sem)).tolist()) == {0, 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "x.json",
        "x.masks",
        "x.overlay.png",
        "x.semantic.png",
    ]  # no temporaries, old folders


def test_formats_subset(tmp_path: Path, result: SegmentationResult, image: np.ndarray) -> None:
    written = write_all(image, result, tmp_path, "x", formats=["coco", "overlay"])
    assert set(written) == {"coco", "overlay"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.overlay.png"]
    # existing files of formats not asked for do not block
    written = write_all(image, result, tmp_path, "x", formats=["semantic"])
    assert set(written) == {"semantic"}


def test_json_written_last(
    tmp_path: Path, result: SegmentationResult, image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real = writers.write_json_atomic

    def spy(path: Path, obj: Any) -> Path:
        seen.extend(sorted(p.name for p in tmp_path.iterdir()))
        return real(path, obj)

    monkeypatch.setattr(writers, "write_json_atomic", spy)
    write_all(image, result, tmp_path, "x")
    assert seen == ["x.masks", "x.overlay.png", "x.semantic.png"]  # the rest was complete


def test_failure_midway_leaves_no_json(
    tmp_path: Path, result: SegmentationResult, image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_all(image, result, tmp_path, "x")
    monkeypatch.setattr(
        writers, "write_semantic_png", _raise(OutputError("disk full while writing x.semantic.png"))
    )
    with pytest.raises(OutputError, match="disk full"):
        write_all(image, result, tmp_path, "x", overwrite=True)
    # the old JSON was removed first: no marker vouches for a half-rewritten image
    assert not (tmp_path / "x.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_disk_full_during_png_save(
    tmp_path: Path, result: SegmentationResult, image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        Image.Image, "save", _raise(OSError(errno.ENOSPC, "No space left on device"))
    )
    with pytest.raises(OutputError, match=r"disk full while writing .*x\.overlay\.png"):
        write_all(image, result, tmp_path, "x")
    assert list(tmp_path.iterdir()) == []


def test_bad_image_writes_nothing(
    tmp_path: Path, result: SegmentationResult, image: np.ndarray
) -> None:
    with pytest.raises(ValueError, match="image must be"):
        write_all(image[:10], result, tmp_path / "out", "x")
    assert not (tmp_path / "out").exists()


def test_replace_incomplete(tmp_path: Path, result: SegmentationResult, image: np.ndarray) -> None:
    write_all(image, result, tmp_path, "x")
    (tmp_path / "x.json").unlink()  # as if interrupted before the JSON
    with pytest.raises(OutputError):
        write_all(image, result, tmp_path, "x")
    written = write_all(image, result, tmp_path, "x", replace_incomplete=True)
    assert written["coco"].exists()
    before = _snapshot(tmp_path)
    with pytest.raises(OutputError):  # complete now: refused again
        write_all(image, result, tmp_path, "x", replace_incomplete=True)
    assert _snapshot(tmp_path) == before


def test_replace_dir_atomic_never_deletes_a_folder_it_did_not_write(tmp_path: Path) -> None:
    target = tmp_path / "x.jpg.masks"
    (target / "holiday").mkdir(parents=True)  # a sub-folder: not a folder of class masks
    (target / "holiday" / "p.jpg").write_bytes(b"photo")
    with pytest.raises(OutputError, match="not a folder of masks"):
        replace_dir_atomic(target, lambda tmp: (tmp / "cat.png").write_bytes(b"new"))
    assert (target / "holiday" / "p.jpg").read_bytes() == b"photo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jpg.masks"]  # no temporaries
    link = tmp_path / "link.masks"
    link.symlink_to(target, target_is_directory=True)
    with pytest.raises(OutputError, match="not a folder of masks"):
        replace_dir_atomic(link, lambda tmp: (tmp / "cat.png").write_bytes(b"new"))
    assert (target / "holiday" / "p.jpg").exists()


def test_json_with_undecodable_file_names_stays_valid_utf8(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.jpg")
    path = write_json_atomic(tmp_path / "a.json", {"file_name": name, "ok": "café"})
    raw = path.read_bytes()
    assert b"\\udce9" in raw and "café".encode() in raw
    back = json.loads(raw.decode("utf-8"))
    assert os.fsencode(back["file_name"]) == b"caf\xe9.jpg" and back["ok"] == "café"


def test_a_class_mask_folder_with_per_mask_pngs_is_replaced_on_rerun(
    tmp_path: Path, result: SegmentationResult, image: np.ndarray
) -> None:
    first = write_all(image, result, tmp_path, "x.jpg", per_mask=True)
    assert (first["masks_dir"] / "per-mask").is_dir()
    again = write_all(image, result, tmp_path, "x.jpg", overwrite=True, per_mask=True)
    assert sorted(p.name for p in again["masks_dir"].iterdir()) == sorted(
        p.name for p in first["masks_dir"].iterdir()
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "x.jpg.json",
        "x.jpg.masks",
        "x.jpg.overlay.png",
        "x.jpg.semantic.png",
    ]
    (again["masks_dir"] / "per-mask" / "deeper").mkdir()  # not ours: left alone
    with pytest.raises(OutputError, match="not a folder of masks"):
        write_all(image, result, tmp_path, "x.jpg", overwrite=True)
    assert again["coco"].is_file()  # refused before anything of the image changed

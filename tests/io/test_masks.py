"""Class PNGs and the semantic PNG: values, unions, round trips, consistency, 16-bit path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samadapter.io.masks import (
    class_file_names,
    class_mask_paths,
    safe_class_filename,
    semantic_png_array,
    write_class_masks,
    write_semantic_png,
)
from samadapter.io.overlay import class_color
from samadapter.structures import SegmentationResult


def test_safe_class_filename_examples() -> None:
    taken: set[str] = set()
    assert safe_class_filename("traffic light", taken) == "traffic_light"
    assert safe_class_filename("a/b", taken) == "a_b"
    assert safe_class_filename("a b", taken) == "a_b_2"  # unique
    assert safe_class_filename("A\\B", taken) == "A_B_3"  # case-insensitive uniqueness
    assert safe_class_filename("../etc/passwd", taken) == "etc_passwd"
    assert safe_class_filename("..", taken) == "class"
    assert safe_class_filename("", taken) == "class_2"
    assert safe_class_filename("con", taken) == "con_"
    assert safe_class_filename("what?*:<>|", taken) == "what"
    assert safe_class_filename("猫", taken) == "猫"
    assert safe_class_filename("t-shirt / top", taken) == "t-shirt_top"
    assert taken >= {"traffic_light", "a_b", "a_b_2", "a_b_3", "con_", "猫"}


def test_safe_class_filename_long_and_never_hidden() -> None:
    taken: set[str] = set()
    long_name = safe_class_filename("é" * 300, taken)
    assert len(long_name.encode("utf-8")) <= 120 and set(long_name) == {"é"}
    for name in [".hidden", "-dash", "x\x00y", "tab\tname", "a" * 500]:
        stem = safe_class_filename(name, taken)
        assert stem and not stem.startswith((".", "-")) and "/" not in stem and "\x00" not in stem
        assert len(stem.encode("utf-8")) <= 130


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.array(img)


def test_write_class_masks(tmp_path: Path, result: SegmentationResult) -> None:
    paths = write_class_masks(result, tmp_path / "masks")
    assert paths == {
        "cat": tmp_path / "masks" / "cat.png",
        "sofa": tmp_path / "masks" / "sofa.png",
        "traffic light": tmp_path / "masks" / "traffic_light.png",
    }
    assert paths == class_mask_paths(result, tmp_path / "masks")
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == [
        "cat.png",
        "sofa.png",
        "traffic_light.png",
    ]  # no temporary files left
    for name, path in paths.items():
        with Image.open(path) as img:
            assert img.mode == "L" and img.size == (60, 40)
        arr = _read(path)
        assert set(np.unique(arr).tolist()) <= {0, 255}
        c = result.class_names.index(name)
        expected = result.masks[result.class_ids == c].any(axis=0)
        np.testing.assert_array_equal(arr == 255, expected)
    cat = _read(paths["cat"]) == 255
    assert cat.sum() == 100 + 104  # union of its two masks


def test_only_present_classes(tmp_path: Path, result: SegmentationResult) -> None:
    keep = result.class_ids != 2
    no_light = dataclasses.replace(
        result,
        masks=result.masks[keep],
        class_ids=result.class_ids[keep],
        scores=result.scores[keep],
        class_scores=result.class_scores[keep],
        predicted_iou=result.predicted_iou[keep],
        stability_score=result.stability_score[keep],
        point_coords=result.point_coords[keep],
        crop_box=result.crop_box[keep],
    )
    assert set(write_class_masks(no_light, tmp_path)) == {"cat", "sofa"}
    assert not (tmp_path / "traffic_light.png").exists()


def test_unknown_class_png(tmp_path: Path, result_unknown: SegmentationResult) -> None:
    paths = write_class_masks(result_unknown, tmp_path)
    assert paths["unknown"].name == "unknown.png"
    np.testing.assert_array_equal(_read(paths["unknown"]) == 255, result_unknown.masks[4])


def test_semantic_array(result: SegmentationResult) -> None:
    ids = semantic_png_array(result)
    assert ids.dtype == np.uint8 and ids.shape == (40, 60)
    np.testing.assert_array_equal(ids, result.semantic_map() + 1)
    assert ids[0, 0] == 0  # no mask
    assert ids[7, 5] == 2  # only the sofa
    assert ids[3, 51] == 3  # traffic light
    assert ids[34, 50] == 1  # second cat mask
    assert set(np.unique(ids).tolist()) == {0, 1, 2, 3}


def test_semantic_png_roundtrip_and_palette(tmp_path: Path, result: SegmentationResult) -> None:
    path = write_semantic_png(result, tmp_path / "s.semantic.png")
    with Image.open(path) as img:
        assert img.mode == "P" and img.size == (60, 40)
        palette = img.getpalette()
    assert palette is not None
    assert palette[0:3] == [0, 0, 0]
    for i, name in enumerate(result.class_names, start=1):
        assert tuple(palette[3 * i : 3 * i + 3]) == class_color(name)
    np.testing.assert_array_equal(_read(path), semantic_png_array(result))


def test_semantic_agrees_with_class_pngs(
    tmp_path: Path, result_unknown: SegmentationResult
) -> None:
    res = result_unknown
    sem = _read(write_semantic_png(res, tmp_path / "s.png"))
    pngs = write_class_masks(res, tmp_path / "m")
    union = np.zeros(res.image_size, dtype=bool)
    for name, path in pngs.items():
        cls = _read(path) == 255
        cid = res.class_names.index(name) + 1
        assert cls[sem == cid].all()  # a pixel labelled c is inside c's PNG
        union |= cls
    np.testing.assert_array_equal(union, sem > 0)
    assert sem.max() == 4  # unknown is category K + 1


@pytest.mark.parametrize(
    ("n_classes", "mode_dtype"), [(255, np.uint8), (256, np.uint16), (300, np.uint16)]
)
def test_many_classes(
    tmp_path: Path, result: SegmentationResult, n_classes: int, mode_dtype: type
) -> None:
    names = [f"class {i}" for i in range(n_classes)]
    ids = np.array([n_classes - 1, 0, 150, n_classes - 2], dtype=np.int64)
    many = dataclasses.replace(
        result,
        class_ids=ids,
        class_names=names,
        synonyms=[[n] for n in names],
        class_scores=np.zeros((4, n_classes), np.float32),
    )
    arr = semantic_png_array(many)
    assert arr.dtype == mode_dtype
    path = write_semantic_png(many, tmp_path / "many.png")
    back = _read(path)
    np.testing.assert_array_equal(back.astype(np.int64), many.semantic_map() + 1)
    assert back.max() == n_classes  # the last class's id is not clipped
    with Image.open(path) as img:
        assert img.mode == ("P" if mode_dtype is np.uint8 else "I;16")
    pngs = write_class_masks(many, tmp_path / "m")
    assert len(pngs) == 4 and pngs[f"class {n_classes - 1}"].name == f"class_{n_classes - 1}.png"


def _only(result: SegmentationResult, classes: list[int]) -> SegmentationResult:
    keep = np.isin(result.class_ids, classes)
    return dataclasses.replace(
        result,
        masks=result.masks[keep],
        class_ids=result.class_ids[keep],
        scores=result.scores[keep],
        class_scores=result.class_scores[keep],
        predicted_iou=result.predicted_iou[keep],
        stability_score=result.stability_score[keep],
        point_coords=result.point_coords[keep],
        crop_box=result.crop_box[keep],
    )


def test_class_file_names_are_stable_across_images(
    tmp_path: Path, result: SegmentationResult
) -> None:
    """'a/b' and 'a_b' sanitise alike; which one gets 'a_b.png' must not depend on which of
    them an image has, and the COCO categories say which file is which."""
    from samadapter.io.coco import to_coco

    res = dataclasses.replace(
        result, class_names=["a_b", "a/b", "A B"], synonyms=[["a_b"], ["a/b"], ["A B"]]
    )
    assert class_file_names(res.class_names) == ["a_b.png", "a_b_2.png", "A_B_3.png"]
    both = write_class_masks(res, tmp_path / "both")
    only_slash = write_class_masks(_only(res, [1]), tmp_path / "slash")  # 'a/b' alone
    only_under = write_class_masks(_only(res, [0]), tmp_path / "under")  # 'a_b' alone
    assert both["a/b"].name == only_slash["a/b"].name == "a_b_2.png"
    assert both["a_b"].name == only_under["a_b"].name == "a_b.png"
    np.testing.assert_array_equal(_read(only_slash["a/b"]) == 255, res.masks[0])  # its one mask
    for part in (res, _only(res, [1])):
        files = {c["name"]: c["mask_file"] for c in to_coco(part)["categories"]}
        assert files == {"a_b": "a_b.png", "a/b": "a_b_2.png", "A B": "A_B_3.png"}

"""Polygon exports (YOLO-seg, Label Studio, CVAT): write, parse back, rasterise, compare."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from samadapter.io.cvat import cvat_xml, read_cvat, write_cvat
from samadapter.io.labelstudio import (
    labelstudio_config,
    labelstudio_masks,
    labelstudio_task,
    read_labelstudio,
    write_labelstudio,
)
from samadapter.io.polygons import mask_iou
from samadapter.io.yolo import (
    JOIN_MIN_IOU,
    read_yolo_labels,
    read_yolo_names,
    write_yolo_data_yaml,
    write_yolo_labels,
    yolo_lines,
)
from samadapter.structures import SegmentationResult

H, W = 48, 64


def shapes_result(names: tuple[str, ...] = ("ring", "pair", "cat & <dog>")) -> SegmentationResult:
    """Masks that polygons find hard: a ring (hole), two parts, a blob on the image border, a
    diagonal staircase, and a ring with an island in its hole."""
    yy, xx = np.mgrid[0:H, 0:W]
    d = np.hypot(yy - 20, xx - 20)
    masks = np.zeros((5, H, W), dtype=bool)
    masks[0] = (d <= 14) & (d > 6)
    masks[1, 2:10, 40:50] = True
    masks[1, 30:44, 50:62] = True
    masks[2, 36:, :18] = True
    masks[3] = (np.abs(xx - yy - 10) <= 2) & (yy > 25) & (xx > 30)
    masks[4] = ((d <= 14) & (d > 9)) | (d <= 3)
    n = len(masks)
    class_ids = np.array([0, 1, 2, 2, 0], dtype=np.int64)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5], dtype=np.float32)
    return SegmentationResult(
        masks=masks,
        class_ids=class_ids,
        scores=scores,
        class_scores=np.full((n, len(names)), 0.2, dtype=np.float32),
        class_names=list(names),
        synonyms=[[s] for s in names],
        predicted_iou=np.full(n, np.nan, np.float32),
        stability_score=np.full(n, np.nan, np.float32),
        point_coords=np.full((n, 2), np.nan, np.float32),
        crop_box=np.tile(np.array([0, 0, W, H], np.float32), (n, 1)),
        file_name="shapes.png",
    )


@pytest.fixture(params=["shapes", "conftest"])
def any_result(request: pytest.FixtureRequest, result: SegmentationResult) -> SegmentationResult:
    return shapes_result() if request.param == "shapes" else result


def assert_round_trip(source: SegmentationResult, masks: np.ndarray, labels: list[str]) -> None:
    assert masks.shape == source.masks.shape
    assert labels == source.labels
    for i, (got, want) in enumerate(zip(masks, source.masks, strict=True)):
        assert mask_iou(got, want) >= 0.95, f"mask {i}: IoU {mask_iou(got, want):.3f}"


def only_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------------------- YOLO


def test_yolo_round_trip(any_result: SegmentationResult, tmp_path: Path) -> None:
    label = write_yolo_labels(any_result, tmp_path / "labels" / "x.txt", join_parts=True)
    yaml_path = write_yolo_data_yaml(tmp_path / "data.yaml", any_result.class_names)
    assert only_files(tmp_path) == ["data.yaml", "labels"]  # no temporary files left
    names = read_yolo_names(yaml_path)
    assert names == any_result.class_names
    h, w = any_result.image_size
    ids, masks = read_yolo_labels(label, h, w)
    assert_round_trip(any_result, masks, [names[i] for i in ids])
    # Our reader fills with the centre rule: exact, bridges included.
    for got, want in zip(masks, any_result.masks, strict=True):
        assert np.array_equal(got, want)
    # By default distant parts are lines of their own: each class's union is still exact.
    ids, masks = read_yolo_labels(write_yolo_labels(any_result, label), h, w)
    for k in range(len(names)):
        assert np.array_equal(
            masks[ids == k].any(axis=0), any_result.masks[any_result.class_ids == k].any(axis=0)
        )


def ultralytics_fill(fields: list[str]) -> np.ndarray:
    """Ultralytics' loader: scale, truncate to int32, cv2.fillPoly (boundary included)."""
    coords = np.array(fields[1:], dtype=float).reshape(-1, 2)
    filled = np.zeros((H, W), np.uint8)
    cv2.fillPoly(filled, [(coords * [W, H]).astype(np.int32)], 1)
    return filled.astype(bool)


def test_yolo_lines_format_and_ultralytics_fill() -> None:
    result = shapes_result()
    lines = yolo_lines(result)
    # Mask 1's two rectangles are far apart: a bridge would paint the background between them,
    # so they are two lines; mask 4's island sits in its ring's hole, the bridge is short.
    per_mask = [1, 2, 1, 1, 1]
    assert len(lines) == sum(per_mask)
    start = 0
    for i, (count, source) in enumerate(zip(per_mask, result.masks, strict=True)):
        union = np.zeros((H, W), dtype=bool)
        for line in lines[start : start + count]:
            fields = line.split()
            assert int(fields[0]) == result.class_ids[i]
            coords = np.array(fields[1:], dtype=float).reshape(-1, 2)
            assert len(coords) >= 3 and coords.min() >= 0 and coords.max() <= 1
            assert all(len(v.split(".")[1]) == 6 for v in fields[1:])
            union |= ultralytics_fill(fields)
        start += count
        assert (union >= source).all()
        assert mask_iou(union, source) >= JOIN_MIN_IOU, i
        if i == 1:  # split parts: exact
            assert np.array_equal(union, source)
    joined = yolo_lines(result, join_parts=True)
    assert len(joined) == len(result)  # one line per object, the bridge painted as a 1-px line
    assert 0 < (ultralytics_fill(joined[1].split()) & ~result.masks[1]).sum() <= 25
    split = yolo_lines(result, join_parts=False)
    assert len(split) == len(result) + 2  # masks 1 and 4 have two parts


def test_yolo_data_yaml_is_yaml(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml", reason="needs PyYAML to parse the YAML independently")
    names = ["cat", "sofa: big", 'say "hi"', "naïve", "unknown"]
    path = write_yolo_data_yaml(tmp_path / "data.yaml", names, train="images/train")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert data["names"] == dict(enumerate(names))
    assert data["nc"] == 5 and data["train"] == "images/train" and data["val"] == "images"
    assert read_yolo_names(path) == names


def test_yolo_empty_result_writes_an_empty_file(result: SegmentationResult, tmp_path: Path) -> None:
    from samadapter.postprocess import select

    empty = select(result, np.zeros(len(result), dtype=bool))
    path = write_yolo_labels(empty, tmp_path / "e.txt")
    assert path.read_text() == ""
    ids, masks = read_yolo_labels(path, *result.image_size)
    assert ids.shape == (0,) and masks.shape == (0, *result.image_size)


# -------------------------------------------------------------------------------- Label Studio


def test_labelstudio_round_trip(any_result: SegmentationResult, tmp_path: Path) -> None:
    path = write_labelstudio(
        any_result, tmp_path / "x.labelstudio.json", image_url="/data/local-files/?d=x.png"
    )
    assert only_files(tmp_path) == ["x.labelstudio.json"]
    tasks = read_labelstudio(path)
    assert len(tasks) == 1 and tasks[0]["data"] == {"image": "/data/local-files/?d=x.png"}
    back = labelstudio_masks(tasks[0])
    assert_round_trip(any_result, back.masks, back.labels)
    np.testing.assert_allclose(back.scores, any_result.scores, rtol=1e-6)


def test_labelstudio_task_is_a_prediction_with_polygon_regions() -> None:
    result = shapes_result()
    task = labelstudio_task(result, model_version="v-test")
    assert task["data"] == {"image": "shapes.png"}
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == "v-test"
    assert prediction["score"] == pytest.approx(float(result.scores.mean()))
    regions = prediction["result"]
    ids = [r["id"] for r in regions]
    assert ids == ["m0", "m1p0", "m1p1", "m2", "m3", "m4p0", "m4p1"]  # parts of one mask
    for region in regions:
        assert region["type"] == "polygonlabels"
        assert (region["from_name"], region["to_name"]) == ("label", "image")
        assert (region["original_width"], region["original_height"]) == (W, H)
        points = np.array(region["value"]["points"])
        assert points.shape[1] == 2 and points.min() >= 0 and points.max() <= 100
        assert region["value"]["closed"] is True
        assert len(region["value"]["polygonlabels"]) == 1
    json.dumps(task, allow_nan=False)  # plain JSON types


def test_labelstudio_config_matches_the_tasks() -> None:
    names = ["cat", "a & <b>", 'q"uote']
    root = ET.fromstring(labelstudio_config(names))
    assert root.find("Image").get("value") == "$image"  # type: ignore[union-attr]
    tag = root.find("PolygonLabels")
    assert tag is not None and tag.get("name") == "label" and tag.get("toName") == "image"
    assert [lb.get("value") for lb in tag.iter("Label")] == names


def test_labelstudio_several_tasks_in_one_file(result: SegmentationResult, tmp_path: Path) -> None:
    tasks = [labelstudio_task(result, image_url=f"img{i}.jpg") for i in range(2)]
    path = write_labelstudio(tasks, tmp_path / "all.json")
    assert [t["data"]["image"] for t in read_labelstudio(path)] == ["img0.jpg", "img1.jpg"]


# ---------------------------------------------------------------------------------------- CVAT


def test_cvat_round_trip(any_result: SegmentationResult, tmp_path: Path) -> None:
    path = write_cvat(any_result, tmp_path / "x.cvat.xml")
    assert only_files(tmp_path) == ["x.cvat.xml"]
    (image,) = read_cvat(path)
    assert image.name == any_result.file_name
    assert_round_trip(any_result, image.masks, image.labels)


def test_cvat_xml_structure() -> None:
    result = shapes_result()
    root = ET.fromstring(cvat_xml(result).encode("utf-8"))
    assert root.findtext("version") == "1.1"
    labels = [lb.findtext("name") for lb in root.iter("label")]
    assert labels == result.class_names  # "cat & <dog>" escaped and read back
    (image,) = root.iter("image")
    assert (image.get("id"), image.get("width"), image.get("height")) == ("0", str(W), str(H))
    polygons = list(image.iter("polygon"))
    assert len(polygons) == 7  # masks 1 and 4 have two parts each
    groups = [p.get("group_id") for p in polygons]
    assert groups == [None, "1", "1", None, None, "2", "2"]
    for p in polygons:
        assert p.get("source") == "auto" and p.get("occluded") == "0"
        pairs = p.get("points", "").split(";")
        assert len(pairs) >= 3 and all(len(pair.split(",")) == 2 for pair in pairs)
    # Smaller masks are drawn above larger ones.
    areas = result.masks.sum(axis=(1, 2))
    z = {int(p.get("z_order", -1)) for p in polygons[:1]}
    assert z == {int(np.argsort(np.argsort(-areas, kind="stable"))[0])}


def test_cvat_several_images(result: SegmentationResult) -> None:
    other = shapes_result()
    root = ET.fromstring(cvat_xml([result, other], image_names=["a.jpg", "b.png"]))
    assert [im.get("name") for im in root.iter("image")] == ["a.jpg", "b.png"]
    assert root.findtext("meta/task/size") == "2"
    names = [lb.findtext("name") for lb in root.iter("label")]
    assert len(names) == len(set(names)) == len(set(result.class_names) | set(other.class_names))


def test_cvat_names_xml_cannot_hold_stay_parsable(tmp_path: Path) -> None:
    """Issue 11.8: a control character or U+FFFE in a class or file name never makes the XML
    unparsable; the escaped name is the same in the labels and the shapes."""
    names = ("ring\x01", "pair\ufffe", "cat & <dog>")
    result = shapes_result(names)
    path = write_cvat(result, tmp_path / "x.xml", image_names=["a\x1fb.png"])
    (image,) = read_cvat(path)  # parses
    assert image.name == "a\\x1fb.png"
    assert image.labels == ["ring\\x01", "pair\\ufffe", "cat & <dog>", "cat & <dog>", "ring\\x01"]
    root = ET.parse(path).getroot()
    assert [lb.findtext("name") for lb in root.iter("label")] == [
        "ring\\x01",
        "pair\\ufffe",
        "cat & <dog>",
    ]
    for got, want in zip(image.masks, result.masks, strict=True):
        assert np.array_equal(got, want)


def test_labelstudio_config_with_names_xml_cannot_hold() -> None:
    names = ["a\x01", "b\ufffe"]
    root = ET.fromstring(labelstudio_config(names))
    assert [lb.get("value") for lb in root.iter("Label")] == ["a\\x01", "b\\ufffe"]
    result = shapes_result(("a\x01", "b\ufffe", "c"))
    labels = {
        r["value"]["polygonlabels"][0] for r in labelstudio_task(result)["predictions"][0]["result"]
    }
    assert labels == {"a\\x01", "b\\ufffe", "c"}


def test_segment_cli_default_labelstudio_root_is_label_studios_local_files() -> None:
    import inspect

    from samadapter.cli.segment import segment
    from samadapter.io.labelstudio import LOCAL_FILES_ROOT

    default = inspect.signature(segment).parameters["labelstudio_root"].default
    assert default == LOCAL_FILES_ROOT == "/data/local-files/?d="


def test_labelstudio_url_encodes_every_special_character() -> None:
    from samadapter.io.labelstudio import labelstudio_url

    assert (
        labelstudio_url("a/my photo ü#1.jpg")
        == "/data/local-files/?d=a/my%20photo%20%C3%BC%231.jpg"
    )
    assert (
        labelstudio_url("x+y&z%?.png", "/data/local-files/?d=photos")
        == "/data/local-files/?d=photos/x%2By%26z%25%3F.png"
    )
    assert labelstudio_url("a b.jpg", "https://host/p/") == "https://host/p/a%20b.jpg"
    assert labelstudio_url("caf\udce9.jpg", "") == "caf%E9.jpg"  # the file name's own bytes

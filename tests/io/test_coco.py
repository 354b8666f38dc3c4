"""COCO JSON: loads with pycocotools, masks / boxes / areas / categories exact."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samadapter.io.coco import to_coco, write_coco
from samadapter.structures import SegmentationResult

# pycocotools' own decode trips a numpy 2 deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# Hand-computed from the fixture's rectangles (x, y, w, h) and their pixel counts.
EXPECTED_BBOXES = [
    [2.0, 5.0, 38.0, 25.0],
    [25.0, 10.0, 10.0, 10.0],
    [45.0, 30.0, 13.0, 8.0],
    [50.0, 2.0, 4.0, 4.0],
]
EXPECTED_AREAS = [950, 100, 104, 16]


def _load(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_loads_with_pycocotools(tmp_path: Path, result: SegmentationResult) -> None:
    path = write_coco(result, tmp_path / "living_room.json")
    coco = _load(path)
    assert coco.getImgIds() == [1]
    img = coco.loadImgs(1)[0]
    assert img == {"id": 1, "file_name": "living_room.jpg", "width": 60, "height": 40}
    cats = {c["id"]: c for c in coco.loadCats(coco.getCatIds())}
    assert {k: v["name"] for k, v in cats.items()} == {1: "cat", 2: "sofa", 3: "traffic light"}
    assert cats[2]["synonyms"] == ["sofa", "couch", "settee"]
    assert cats[1]["supercategory"] == "object"
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["id"] for a in anns] == [1, 2, 3, 4]
    assert [a["category_id"] for a in anns] == [2, 1, 1, 3]
    assert coco.getAnnIds(catIds=[1]) == [2, 3]
    for i, ann in enumerate(anns):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), result.masks[i])
        assert ann["bbox"] == EXPECTED_BBOXES[i]
        assert ann["area"] == EXPECTED_AREAS[i] and isinstance(ann["area"], int)
        assert ann["iscrowd"] == 0 and ann["image_id"] == 1
        assert isinstance(ann["segmentation"]["counts"], str)
        assert ann["segmentation"]["size"] == [40, 60]
        assert ann["score"] == pytest.approx(float(result.scores[i]))
        assert ann["predicted_iou"] == pytest.approx(float(result.predicted_iou[i]))
        assert ann["stability_score"] == pytest.approx(float(result.stability_score[i]))
        assert ann["crop_box"] == [0.0, 0.0, 60.0, 40.0]
        x, y, w, h = EXPECTED_BBOXES[i]
        assert ann["point_coords"] == [[x + w / 2, y + h / 2]]


def test_load_res_and_self_eval(tmp_path: Path, result: SegmentationResult) -> None:
    coco = _load(write_coco(result, tmp_path / "r.json"))
    anns = to_coco(result)["annotations"]
    with contextlib.redirect_stdout(io.StringIO()):
        dets = coco.loadRes(json.loads(json.dumps(anns)))
        for ann in dets.loadAnns(dets.getAnnIds()):
            np.testing.assert_array_equal(
                dets.annToMask(ann).astype(bool), result.masks[ann["id"] - 1]
            )
        ev = COCOeval(coco, dets, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # predictions == ground truth: AP 1


def test_unknown_category(tmp_path: Path, result_unknown: SegmentationResult) -> None:
    data = json.loads(write_coco(result_unknown, tmp_path / "u.json").read_text())
    assert [c["name"] for c in data["categories"]] == ["cat", "sofa", "traffic light", "unknown"]
    assert data["categories"][3] == {
        "id": 4,
        "name": "unknown",
        "synonyms": [],
        "supercategory": "unknown",
        "mask_file": "unknown.png",
    }
    assert data["annotations"][-1]["category_id"] == 4
    coco = _load(tmp_path / "u.json")
    assert coco.loadCats(4)[0]["name"] == "unknown"


def test_no_unknown_category_without_unknown(result: SegmentationResult) -> None:
    assert len(to_coco(result)["categories"]) == 3


def test_nan_fields_are_null(tmp_path: Path, result: SegmentationResult) -> None:
    n = len(result)
    nan_result = dataclasses.replace(
        result,
        predicted_iou=np.full(n, np.nan, np.float32),
        stability_score=np.full(n, np.nan, np.float32),
        point_coords=np.full((n, 2), np.nan, np.float32),
    )
    path = write_coco(nan_result, tmp_path / "n.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    ann = json.loads(text)["annotations"][0]
    assert ann["predicted_iou"] is None and ann["stability_score"] is None
    assert ann["point_coords"] is None
    _load(path)  # still loads


def test_image_id_and_file_name(result: SegmentationResult) -> None:
    data = to_coco(result, image_id=7, file_name="sub/x.png")
    assert data["images"] == [{"id": 7, "file_name": "sub/x.png", "width": 60, "height": 40}]
    assert {a["image_id"] for a in data["annotations"]} == {7}
    json.dumps(data, allow_nan=False)  # only JSON types


def test_empty_result(tmp_path: Path, result: SegmentationResult) -> None:
    empty = dataclasses.replace(
        result,
        masks=np.zeros((0, 40, 60), bool),
        class_ids=np.zeros(0, np.int64),
        scores=np.zeros(0, np.float32),
        class_scores=np.zeros((0, 3), np.float32),
        predicted_iou=np.zeros(0, np.float32),
        stability_score=np.zeros(0, np.float32),
        point_coords=np.zeros((0, 2), np.float32),
        crop_box=np.zeros((0, 4), np.float32),
    )
    coco = _load(write_coco(empty, tmp_path / "e.json"))
    assert coco.getAnnIds() == [] and len(coco.getCatIds()) == 3


def test_compact_json(tmp_path: Path, result: SegmentationResult) -> None:
    text = write_coco(result, tmp_path / "c.json").read_text(encoding="utf-8")
    assert ", " not in text.replace("traffic light", "") and ": " not in text
    assert text.count("\n") == 1


def test_large_scaled_masks_roundtrip(
    tmp_path: Path, result_factory: Callable[..., SegmentationResult]
) -> None:
    big = result_factory(scale=7)
    coco = _load(write_coco(big, tmp_path / "b.json"))
    for i, ann in enumerate(coco.loadAnns(coco.getAnnIds())):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), big.masks[i])
        assert ann["area"] == EXPECTED_AREAS[i] * 49

"""``to_supervision``: shapes and names of the ``sv.Detections``; the hint without supervision."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from samadapter.errors import ConfigError, SamAdapterError
from samadapter.io.supervision import SupervisionMissingError, to_supervision
from samadapter.postprocess import select
from samadapter.structures import SegmentationResult


def test_detections_shapes_and_names(result_unknown: SegmentationResult) -> None:
    sv = pytest.importorskip("supervision", reason="needs the optional supervision package")
    result = result_unknown
    det = to_supervision(result)
    n, (h, w) = len(result), result.image_size
    assert isinstance(det, sv.Detections) and len(det) == n
    assert det.xyxy.shape == (n, 4) and det.mask.shape == (n, h, w) and det.mask.dtype == bool
    assert np.array_equal(det.mask, result.masks)
    np.testing.assert_array_equal(det.confidence, result.scores)
    np.testing.assert_array_equal(det.class_id, result.class_ids)
    assert list(det.data["class_name"]) == result.labels
    assert list(det.data["class_name"])[-1] == "unknown"
    boxes = result.boxes_xywh
    np.testing.assert_array_equal(det.xyxy[:, :2], boxes[:, :2])
    np.testing.assert_array_equal(det.xyxy[:, 2:], boxes[:, :2] + boxes[:, 2:])
    assert det.data["predicted_iou"].shape == (n,)
    if hasattr(det, "metadata"):
        assert det.metadata["class_names"] == result.class_names


def test_detections_work_with_supervision_tools(
    result: SegmentationResult, image: np.ndarray
) -> None:
    sv = pytest.importorskip("supervision", reason="needs the optional supervision package")
    det = to_supervision(result)
    cats = det[det.data["class_name"] == "cat"]
    assert len(cats) == 2 and set(cats.class_id.tolist()) == {0}
    annotated = sv.MaskAnnotator().annotate(scene=image.copy(), detections=det)
    assert annotated.shape == image.shape and not np.array_equal(annotated, image)
    np.testing.assert_allclose(det.area, result.areas)


def test_empty_result(result: SegmentationResult) -> None:
    pytest.importorskip("supervision", reason="needs the optional supervision package")
    det = to_supervision(select(result, np.zeros(len(result), dtype=bool)))
    assert len(det) == 0 and det.xyxy.shape == (0, 4) and det.mask.shape == (0, 40, 60)
    assert det.data["class_name"].shape == (0,)


def test_missing_supervision_gives_the_install_hint(
    result: SegmentationResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "supervision", None)  # import supervision -> ImportError
    with pytest.raises(SupervisionMissingError) as err:
        to_supervision(result)
    assert "pip install supervision" in str(err.value)
    assert isinstance(err.value, ImportError)
    assert isinstance(err.value, ConfigError) and isinstance(err.value, SamAdapterError)

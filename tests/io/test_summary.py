"""Per-class summary rows and the rich table."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from rich.console import Console

from samadapter.io.summary import summary_rows, summary_table
from samadapter.structures import SegmentationResult


def test_summary_rows(result: SegmentationResult) -> None:
    rows = summary_rows(result)
    assert [r[:2] for r in rows] == [("sofa", 1), ("cat", 2), ("traffic light", 1)]
    sem = result.semantic_map()
    n = 40 * 60
    for name, _, share, _ in rows:
        c = result.class_names.index(name)
        assert share == pytest.approx(100.0 * (sem == c).sum() / n)
    assert rows[2][2] == pytest.approx(100.0 * 16 / n)
    assert sum(r[2] for r in rows) == pytest.approx(100.0 * (sem >= 0).sum() / n)  # no overlap
    assert rows[1][3] == pytest.approx(0.87)  # best of the two cat masks
    assert rows[0][3] == pytest.approx(0.91)


def test_summary_table_renders(result_unknown: SegmentationResult) -> None:
    res = dataclasses.replace(
        result_unknown, class_names=["[bold]cat", "sofa", "traffic light", "unknown"]
    )
    table = summary_table(res, title="img[1].jpg")
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "img[1].jpg" in text and "[bold]cat" in text  # names are not markup
    assert "traffic light" in text and "unknown" in text and "0.91" in text
    assert "5 masks, 4 classes" in text


def test_summary_empty(result: SegmentationResult) -> None:
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
    assert summary_rows(empty) == []
    assert summary_table(empty, "x").row_count == 0

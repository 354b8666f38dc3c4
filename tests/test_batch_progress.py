"""Batch progress: each image is reported when its outputs are written, not when a queue drains."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np

from samadapter.batch import BatchOptions, BatchRunner, ImageRecord, InputImage, collect_inputs
from samadapter.pipeline import Segmenter
from samadapter.structures import SegmentationResult
from samadapter.vocab import parse_classes

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def test_each_image_is_reported_before_the_next_but_one_is_processed(
    tmp_path: Path, tiny_segmenter: Segmenter
) -> None:
    """Image k's processing waits until image k-1 was reported: with reports lagging by the
    writer queue (2 x writer threads images), the first wait would time out."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        shutil.copy(SAMPLES / "chelsea.jpg", folder / f"img{i}.jpg")
    items = collect_inputs([folder])
    runner = BatchRunner(
        tiny_segmenter,
        parse_classes("cat,sofa"),
        BatchOptions(out_dir=tmp_path / "out", writer_threads=2, max_size=96),
    )
    reported = {item.file_name: threading.Event() for item in items}
    order: list[str] = []
    late: list[str] = []
    process = runner._process

    def gated(item: InputImage, image: np.ndarray, stage):  # type: ignore[no-untyped-def]
        index = items.index(item)
        if index and not reported[items[index - 1].file_name].wait(timeout=20):
            late.append(items[index - 1].file_name)
        return process(item, image, stage)

    runner._process = gated  # type: ignore[method-assign]

    def on_image(record: ImageRecord, result: SegmentationResult | None) -> None:
        order.append(record.file)
        reported[record.file].set()

    summary = runner.run(items, on_image=on_image)
    assert late == []
    assert order == [f"img{i}.jpg" for i in range(5)]
    assert [r.status for r in summary.records] == ["done"] * 5
    for record in summary.records:  # the record was complete when reported
        coco = json.loads((tmp_path / "out" / "per-image" / f"{record.output}.json").read_text())
        assert record.masks == len(coco["annotations"])
    assert all("write" in r.seconds for r in summary.records)  # reported after the write

"""Browsing a run's output folder (samadapter/app/runs.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from samadapter.app.photo import LabelRequest
from samadapter.app.runs import RunFolder
from samadapter.errors import OutputError
from samadapter.vocab import parse_classes


def test_summary_counts_and_classes(cached_run: Path) -> None:
    run = RunFolder(cached_run)
    summary = run.summary()
    assert [(i["name"], i["classes"], i["overlay"]) for i in summary["images"]] == [
        ("chelsea.jpg", {"dog": 1}, True),
        ("coffee.jpg", {"plate": 1}, True),
    ]
    assert summary["counts"] == [
        {"class": "dog", "images": 1, "masks": 1},
        {"class": "plate", "images": 1, "masks": 1},
    ]
    assert summary["can_relabel"] is True
    assert summary["classes_text"] == "dog,cup,plate"
    assert run.overlay_bytes(0).startswith(b"\x89PNG")


def test_mask_view_from_the_json(cached_run: Path) -> None:
    run = RunFolder(cached_run)
    detail = run.rows(1)
    coco = json.loads((cached_run / "per-image" / "coffee.jpg.json").read_text())
    ann = coco["annotations"][0]
    assert detail["rows"] == [
        {
            "index": 0,
            "class": "plate",
            "score": round(ann["score"], 4),
            "area": ann["area"],
            "color": detail["rows"][0]["color"],
        }
    ]
    rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
    mask = mask_utils.decode(rle).astype(bool)
    ys, xs = np.nonzero(mask)
    assert [h["class"] for h in run.masks_at(1, int(xs[0]), int(ys[0]))] == ["plate"]
    ys, xs = np.nonzero(~mask)
    assert run.masks_at(1, int(xs[0]), int(ys[0])) == []
    with pytest.raises(OutputError, match="no image 5"):
        run.rows(5)


def test_untrusted_files_are_listed_with_their_problem(run_copy: Path, tmp_path: Path) -> None:
    per_image = run_copy / "per-image"
    (per_image / "broken.jpg.json").write_text("{not json")
    (per_image / "other.jpg.json").write_text(json.dumps({"images": "nope"}))
    outside = tmp_path / "outside.json"
    outside.write_text((per_image / "chelsea.jpg.json").read_text())
    os.symlink(outside, per_image / "linked.jpg.json")
    run = RunFolder(run_copy)
    by_name = {i.name: i for i in run.images}
    assert set(by_name) == {"broken.jpg", "chelsea.jpg", "coffee.jpg", "other.jpg"}
    assert by_name["broken.jpg"].error == "broken.jpg.json is unreadable (JSONDecodeError)"
    assert by_name["other.jpg"].error == "other.jpg.json is not a samadapter COCO result"
    assert run.summary()["counts"] == [
        {"class": "dog", "images": 1, "masks": 1},
        {"class": "plate", "images": 1, "masks": 1},
    ]
    with pytest.raises(OutputError, match="has no overlay"):
        run.overlay_bytes(by_name["broken.jpg"].id)


def test_not_a_run_and_no_features(tmp_path: Path, run_copy: Path) -> None:
    with pytest.raises(OutputError, match="holds no run"):
        RunFolder(tmp_path)
    run = RunFolder(run_copy)
    request = LabelRequest(parse_classes("tabby,sofa|couch"), 0.5, 0.0)
    command = run.relabel_command(request, "cpu")
    assert command[3:] == [
        "relabel",
        str(run_copy.resolve()),
        "--classes",
        "tabby,sofa|couch",
        "--keep-ratio",
        "0.5",
        "--score-thresh",
        "0.0",
        "--device",
        "cpu",
    ]
    record = json.loads((run_copy / "run.json").read_text())
    record["cache_features"] = False
    (run_copy / "run.json").write_text(json.dumps(record))
    run.scan()
    assert run.summary()["can_relabel"] is False
    with pytest.raises(OutputError, match="kept no features"):
        run.relabel_command(request, "cpu")

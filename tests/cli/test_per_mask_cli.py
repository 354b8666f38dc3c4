"""``segment --per-mask-png`` (amg.py's per-mask layout) and SAM's extra generator flags."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from samadapter.cli.main import app

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "chelsea.jpg"
ARGS = [
    "segment",
    str(SAMPLE),
    "-c",
    "cat,sofa",
    "--preset",
    "tiny-random",
    "--device",
    "cpu",
    "--keep-unknown",
    "--score-thresh",
    "0",
]


def test_per_mask_pngs_match_the_coco_annotations(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    result = CliRunner().invoke(
        app,
        [
            *ARGS,
            "-o",
            str(tmp_path),
            "--per-mask-png",
            "--crop-nms-thresh",
            "0.6",
            "--stability-score-offset",
            "0.9",
        ],
    )
    assert result.exit_code == 0, result.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gt = COCO(str(tmp_path / "per-image" / "chelsea.jpg.json"))
    anns = gt.loadAnns(gt.getAnnIds())
    assert len(anns) >= 1
    folder = tmp_path / "per-image" / "chelsea.jpg.masks" / "per-mask"
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(
        f"{i}.png" for i in range(len(anns))
    )
    names = {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())}
    with (folder / "metadata.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:14] == [
        "id",
        "area",
        "bbox_x0",
        "bbox_y0",
        "bbox_w",
        "bbox_h",
        "point_input_x",
        "point_input_y",
        "predicted_iou",
        "stability_score",
        "crop_box_x0",
        "crop_box_y0",
        "crop_box_w",
        "crop_box_h",
    ]
    assert len(rows) == len(anns)
    for i, (row, ann) in enumerate(zip(rows, sorted(anns, key=lambda a: a["id"]), strict=True)):
        png = np.array(Image.open(folder / f"{i}.png"))
        assert png.dtype == np.uint8 and set(np.unique(png)) <= {0, 255}
        np.testing.assert_array_equal(png == 255, gt.annToMask(ann).astype(bool))
        assert int(row["id"]) == i and int(row["area"]) == ann["area"] == (png == 255).sum()
        assert [float(row[k]) for k in ("bbox_x0", "bbox_y0", "bbox_w", "bbox_h")] == ann["bbox"]
        assert row["class"] == names[ann["category_id"]]
        assert float(row["score"]) == ann["score"]
        assert float(row["predicted_iou"]) == ann["predicted_iou"]
    # the class unions are still beside them
    assert any(p.suffix == ".png" for p in folder.parent.iterdir())
    amg = json.loads((tmp_path / "run.json").read_text())["settings"]["models"]["amg"]
    assert amg["crop_nms_thresh"] == 0.6 and amg["stability_score_offset"] == 0.9
    assert "crop_overlap_ratio" not in amg  # at SAM's default: records stay as before


def test_per_mask_png_is_part_of_the_resume_identity(tmp_path: Path) -> None:
    plain = CliRunner().invoke(app, [*ARGS, "-o", str(tmp_path)])
    assert plain.exit_code == 0, plain.stderr
    assert not (tmp_path / "per-image" / "chelsea.jpg.masks" / "per-mask").exists()
    amg = json.loads((tmp_path / "run.json").read_text())["settings"]["models"]["amg"]
    assert "stability_score_offset" not in amg and "crop_nms_thresh" not in amg
    again = CliRunner().invoke(app, [*ARGS, "-o", str(tmp_path), "--per-mask-png"])
    assert again.exit_code == 0, again.stderr
    assert "skipped" not in again.stderr  # redone, now with the per-mask files
    assert (tmp_path / "per-image" / "chelsea.jpg.masks" / "per-mask" / "metadata.csv").is_file()


def test_sam_knob_flags_are_checked() -> None:
    for flag, value in (
        ("--crop-nms-thresh", "1.5"),
        ("--crop-n-points-downscale-factor", "0"),
        ("--crop-overlap-ratio", "-0.1"),
    ):
        result = CliRunner().invoke(app, [*ARGS, flag, value])
        assert result.exit_code == 2 and flag in result.stderr

"""Plug-and-play: classify given masks, the Python API, exports and post-processing flags."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from samadapter.cli.main import app
from samadapter.io.coco import to_coco
from samadapter.io.supervision import to_supervision
from samadapter.modeling.proposer import sam2_available
from samadapter.models import load_segmenter
from samadapter.structures import rle_to_masks

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TINY = ["--preset", "tiny-random", "--device", "cpu", "--keep-unknown", "-q"]


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "240"})
    return result.exit_code, result.stdout, result.stderr


def annotations(path: Path) -> list[dict]:
    return json.loads(path.read_text())["annotations"]


def test_classify_reproduces_a_segment_runs_labels(tmp_path: Path) -> None:
    assert run("segment", SAMPLES, "-c", "cat,cup", *TINY, "-o", tmp_path / "seg")[0] == 0
    code, _, stderr = run(
        "classify",
        SAMPLES / "coffee.jpg",
        "--masks",
        tmp_path / "seg" / "per-image" / "coffee.jpg.json",
        "-c",
        "cat,cup",
        *TINY,
        "-o",
        tmp_path / "cls",
    )
    assert code == 0, stderr
    want, got = (
        annotations(tmp_path / "seg" / "per-image" / "coffee.jpg.json"),
        annotations(tmp_path / "cls" / "per-image" / "coffee.jpg.json"),
    )
    assert len(got) == len(want) >= 1
    assert [a["category_id"] for a in got] == [a["category_id"] for a in want]
    assert [a["segmentation"] for a in got] == [a["segmentation"] for a in want]
    np.testing.assert_allclose([a["score"] for a in got], [a["score"] for a in want], atol=1e-5)
    # SAM's own fields travel with the masks.
    assert [a["predicted_iou"] for a in got] == pytest.approx([a["predicted_iou"] for a in want])


def test_classify_a_folder_with_per_image_mask_files(tmp_path: Path) -> None:
    assert run("segment", SAMPLES, "-c", "cat,cup", *TINY, "-o", tmp_path / "seg")[0] == 0
    code, _, stderr = run(
        "classify",
        SAMPLES,
        "--masks",
        tmp_path / "seg",
        "-c",
        "dog,mug",
        *TINY,
        "-o",
        tmp_path / "cls",
    )
    assert code == 0, stderr
    assert (tmp_path / "cls" / "per-image" / "chelsea.jpg.json").exists()
    assert (tmp_path / "cls" / "per-image" / "coffee.jpg.json").exists()


def test_bad_masks_are_reported_one_line_each_and_left_out(tmp_path: Path) -> None:
    folder = tmp_path / "masks"
    folder.mkdir()
    h, w = 300, 451
    good = np.zeros((h, w), np.uint8)
    good[50:150, 100:300] = 255
    Image.fromarray(good).save(folder / "0_good.png")
    Image.fromarray(np.zeros((h, w), np.uint8)).save(folder / "1_empty.png")
    Image.fromarray(good[:100, :100]).save(folder / "2_small.png")
    (folder / "3_broken.png").write_bytes(b"not a png")
    code, _, stderr = run(
        "classify",
        SAMPLES / "chelsea.jpg",
        "--masks",
        folder,
        "-c",
        "cat",
        *TINY,
        "-o",
        tmp_path / "out",
    )
    assert code == 0, stderr
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3
    assert any("1_empty.png" in x for x in warnings) and any("2_small.png" in x for x in warnings)
    assert any("3_broken.png" in x for x in warnings)
    got = annotations(tmp_path / "out" / "per-image" / "chelsea.jpg.json")
    assert len(got) == 1
    np.testing.assert_array_equal(rle_to_masks([got[0]["segmentation"]])[0], good > 0)


def test_max_masks_caps_a_label_png_with_one_warning(tmp_path: Path) -> None:
    h, w = 300, 451
    labels = (np.arange(h * w, dtype=np.int64) % 3000 + 1).reshape(h, w).astype(np.uint16)
    labels[:100, :100] = 7  # the largest region by far
    Image.fromarray(labels).save(tmp_path / "labels.png")
    code, _, stderr = run(
        "classify",
        SAMPLES / "chelsea.jpg",
        "--masks",
        tmp_path / "labels.png",
        "-c",
        "cat",
        *TINY,
        "--max-masks",
        "25",
        "-o",
        tmp_path / "out",
    )
    assert code == 0, stderr
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: chelsea.jpg: labels.png holds more than 25 masks (the "
        "--max-masks limit): kept the 25 largest, left out 2975; raise "
        "--max-masks to keep more"
    ]
    got = annotations(tmp_path / "out" / "per-image" / "chelsea.jpg.json")
    assert 1 <= len(got) <= 25
    assert max(a["area"] for a in got) >= 100 * 100  # label 7 was kept
    code, _, stderr = run(
        "classify",
        SAMPLES / "chelsea.jpg",
        "--masks",
        tmp_path / "labels.png",
        "-c",
        "cat",
        *TINY,
        "--max-masks",
        "0",
        "-o",
        tmp_path / "out0",
    )
    assert code == 2 and "--max-masks" in stderr


def test_new_masks_under_the_same_path_are_classified_again(tmp_path: Path) -> None:
    # A rerun with the same settings skips finished images, but only while their masks are
    # unchanged: a rewritten masks file (or mask folder) is classified again, never answered
    # with the previous masks' outputs.
    h, w = 300, 451
    mask = np.zeros((h, w), np.uint8)
    mask[50:150, 100:300] = 255
    source = tmp_path / "masks"
    source.mkdir()
    Image.fromarray(mask).save(source / "0.png")
    args = (
        "classify",
        SAMPLES / "chelsea.jpg",
        "--masks",
        source,
        "-c",
        "cat",
        *TINY,
        "-o",
        tmp_path / "out",
    )
    out = tmp_path / "out" / "per-image" / "chelsea.jpg.json"
    assert run(*args)[0] == 0 and len(annotations(out)) == 1
    code, _, stderr = run(*args)
    assert code == 0 and len(annotations(out)) == 1
    assert json.loads((tmp_path / "out" / "run.json").read_text())["counts"]["skipped"] == 1
    second = np.zeros((h, w), np.uint8)
    second[200:280, 10:90] = 255
    Image.fromarray(second).save(source / "1.png")
    code, _, stderr = run(*args)
    assert code == 0, stderr
    assert len(annotations(out)) == 2
    coco = tmp_path / "masks.json"
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "chelsea.jpg", "width": w, "height": h}],
                "annotations": [
                    {
                        "id": 1,
                        "image_id": 1,
                        "category_id": 1,
                        "segmentation": [[10, 10, 60, 10, 60, 60]],
                    }
                ],
            }
        )
    )
    args = (
        "classify",
        SAMPLES / "chelsea.jpg",
        "--masks",
        coco,
        "-c",
        "cat",
        *TINY,
        "-o",
        tmp_path / "out2",
    )
    out = tmp_path / "out2" / "per-image" / "chelsea.jpg.json"
    assert run(*args)[0] == 0 and len(annotations(out)) == 1
    data = json.loads(coco.read_text())
    data["annotations"].append(
        {
            "id": 2,
            "image_id": 1,
            "category_id": 1,
            "segmentation": [[100, 100, 200, 100, 200, 200, 100, 200]],
        }
    )
    coco.write_text(json.dumps(data))
    code, _, stderr = run(*args)
    assert code == 0, stderr
    assert len(annotations(out)) == 2


def test_missing_masks_file_is_one_clear_line(tmp_path: Path) -> None:
    code, _, stderr = run(
        "classify",
        SAMPLES / "chelsea.jpg",
        "--masks",
        tmp_path / "nope.json",
        "-c",
        "cat",
        *TINY,
        "-o",
        tmp_path / "out",
    )
    assert code == 2
    assert "nope.json" in stderr and len(stderr.strip().splitlines()) == 1


def test_python_api_equals_the_cli(tmp_path: Path) -> None:
    seg = load_segmenter("tiny-random", device="cpu", settings={"keep_unknown": True})
    result = seg(str(SAMPLES / "chelsea.jpg"), classes=["cat", "sofa|couch"])
    api = to_coco(result)
    code, _, stderr = run(
        "segment", SAMPLES / "chelsea.jpg", "-c", "cat,sofa|couch", *TINY, "-o", tmp_path
    )
    assert code == 0, stderr
    cli = json.loads((tmp_path / "per-image" / "chelsea.jpg.json").read_text())
    assert api["images"] == cli["images"] and api["categories"] == cli["categories"]
    assert [a["segmentation"] for a in api["annotations"]] == [
        a["segmentation"] for a in cli["annotations"]
    ]
    assert [a["category_id"] for a in api["annotations"]] == [
        a["category_id"] for a in cli["annotations"]
    ]
    # PIL images and arrays give the same result as the path.
    from_pil = seg(Image.open(SAMPLES / "chelsea.jpg"), classes="cat,sofa|couch")
    np.testing.assert_array_equal(from_pil.masks, result.masks)
    assert from_pil.labels == result.labels
    semantic = result.semantic_map()
    assert semantic.shape == (300, 451)


def test_result_to_supervision() -> None:
    sv = pytest.importorskip("supervision", reason="needs supervision (pip install supervision)")
    seg = load_segmenter("tiny-random", device="cpu", settings={"keep_unknown": True})
    result = seg(str(SAMPLES / "coffee.jpg"), classes="cup,spoon")
    detections = to_supervision(result)
    assert isinstance(detections, sv.Detections)
    assert len(detections) == len(result)
    assert detections.mask.shape == result.masks.shape
    assert list(detections.data["class_name"]) == result.labels


def test_exports_and_post_processing_flags(tmp_path: Path) -> None:
    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(SAMPLES / "chelsea.jpg", images / "a.jpg")
    code, _, stderr = run(
        "segment",
        images,
        "-c",
        "cat,sofa",
        *TINY,
        "-o",
        tmp_path / "out",
        "--format",
        "yolo-seg,labelstudio",
        "-f",
        "cvat",
        "--semantic-only",
        "--labelstudio-root",
        "https://host/photos/",
        "--yolo-copy-images",
    )
    assert code == 0, stderr
    out = tmp_path / "out"
    assert (out / "yolo" / "labels" / "a.txt").exists()
    assert (out / "yolo" / "images" / "a.jpg").read_bytes() == (images / "a.jpg").read_bytes()
    assert "names:" in (out / "yolo" / "data.yaml").read_text()
    tasks = json.loads((out / "labelstudio" / "tasks.json").read_text())
    assert len(tasks) == 1 and tasks[0]["data"]["image"] == "https://host/photos/a.jpg"
    assert "<PolygonLabels" in (out / "labelstudio" / "config.xml").read_text()
    assert "<annotations>" in (out / "cvat" / "annotations.xml").read_text()
    anns = annotations(out / "per-image" / "a.jpg.json")
    ids = [a["category_id"] for a in anns]
    assert len(ids) == len(set(ids))  # --semantic-only: one mask per class
    code, _, stderr = run(
        "segment", images, "-c", "cat", *TINY, "-o", tmp_path / "o2", "--format", "pdf"
    )
    assert code == 2 and "pdf" in stderr


def test_demo_preset_without_sam2_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "sam2" or m.startswith("sam2.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sam2", None)  # as if sam2 were not installed
    assert not sam2_available()
    code, _, stderr = run(
        "segment",
        SAMPLES / "chelsea.jpg",
        "-c",
        "cat",
        "--preset",
        "demo",
        "--device",
        "cpu",
        "--weights-dir",
        tmp_path,
        "-o",
        tmp_path / "out",
    )
    assert code == 2
    assert "samadapter[sam2]" in stderr and "missing" not in stderr


def test_classify_names_every_given_mask_unless_keep_ratio_is_given(tmp_path: Path) -> None:
    folder = tmp_path / "masks"
    folder.mkdir()
    h, w = 300, 451
    for i, (y0, y1, x0, x1) in enumerate(
        [
            (0, 90, 250, 451),
            (240, 300, 0, 451),
            (60, 210, 0, 45),
            (80, 200, 100, 250),
            (100, 230, 260, 400),
        ]
    ):
        mask = np.zeros((h, w), np.uint8)
        mask[y0:y1, x0:x1] = 255
        Image.fromarray(mask).save(folder / f"{i}.png")
    classes = "cat,sofa|couch,floor,wall,blanket"
    code, _, stderr = run(
        "classify",
        SAMPLES / "chelsea.jpg",
        "--masks",
        folder,
        "-c",
        classes,
        *TINY,
        "-o",
        tmp_path / "all",
    )
    assert code == 0, stderr
    assert len(annotations(tmp_path / "all" / "per-image" / "chelsea.jpg.json")) == 5
    code, _, stderr = run(
        "classify",
        SAMPLES / "chelsea.jpg",
        "--masks",
        folder,
        "-c",
        classes,
        *TINY,
        "--keep-ratio",
        "0.999",
        "-o",
        tmp_path / "demo",
    )
    assert code == 0, stderr
    kept = annotations(tmp_path / "demo" / "per-image" / "chelsea.jpg.json")
    assert 1 <= len(kept) < 5  # only masks within 0.1 % of some class's best


def test_keep_unknown_with_a_class_named_unknown_is_refused_before_the_models_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import samadapter.models

    def no_models(*_: object, **__: object) -> None:
        raise AssertionError("models loaded before the class list was checked")

    monkeypatch.setattr(samadapter.models, "load_segmenter", no_models)
    masks = tmp_path / "m.png"
    Image.fromarray(np.zeros((300, 451), np.uint8)).save(masks)
    code, _, stderr = run(
        "classify",
        SAMPLES / "chelsea.jpg",
        "--masks",
        masks,
        "--vocab",
        "pc459",  # has a class named 'unknown'
        "--keep-unknown",
        *TINY,
        "-o",
        tmp_path / "o",
    )
    assert code == 2, stderr
    assert "unknown" in stderr and not (tmp_path / "o").exists()

"""A photo's kept work and its relabels (samadapter/app/photo.py)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samadapter.app import photo as photo_module
from samadapter.app.photo import Labeller, LabelRequest, PhotoSession, read_upload
from samadapter.errors import ConfigError, ImageError, VocabularyError
from samadapter.io.images import load_image
from samadapter.modeling.proposer import Proposals
from samadapter.pipeline import Segmenter
from samadapter.postprocess import keep_near_best
from samadapter.vocab import parse_classes

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "chelsea.jpg"
CLASSES = "cat,sofa|couch,cup,wall,floor,table,window"


def scene_photo(seg: Segmenter, scene: tuple[np.ndarray, np.ndarray]) -> PhotoSession:
    """The three-rectangle scene with its masks as the kept proposals (no SAM)."""
    image, masks = scene
    features = seg.image_features(image)
    proposals = Proposals.from_masks(masks)
    return PhotoSession(
        "scene.png", image, proposals, features, seg.mask_embeddings(features, masks)
    )


def test_relabel_from_kept_work_equals_a_fresh_run_and_runs_sam_once(counting: Segmenter) -> None:
    labeller = Labeller(counting)
    image = load_image(SAMPLE)
    seg = labeller.segmenter(0.0, 0.0)
    photo = PhotoSession.compute(seg, image, "chelsea.jpg")
    assert counting.proposer.calls == 1
    for classes in ("tabby,mug", CLASSES):
        got = photo.relabel(seg, LabelRequest(parse_classes(classes), 0.0, 0.0))
        fresh = seg(image, classes)  # the whole pipeline: SAM, CLIP, adapter, text
        assert got.labels == fresh.labels
        np.testing.assert_allclose(got.scores, fresh.scores, atol=1e-6)
        np.testing.assert_allclose(got.class_scores, fresh.class_scores, atol=1e-6)
        np.testing.assert_array_equal(got.masks, fresh.masks)
    assert counting.proposer.calls == 1 + 2  # the two fresh runs; the relabels none
    assert photo.version == 2 and photo.overlay_jpeg.startswith(b"\xff\xd8")


def test_keep_ratio_and_score_threshold_select_as_the_pipeline_rule(
    tiny_segmenter: Segmenter, scene: tuple[np.ndarray, np.ndarray]
) -> None:
    labeller = Labeller(tiny_segmenter)
    photo = scene_photo(tiny_segmenter, scene)
    vocab = parse_classes("red,green,blue")
    everything = photo.relabel(labeller.segmenter(0.0, 0.0), LabelRequest(vocab, 0.0, 0.0))
    assert len(everything) == 3
    probs = everything.class_scores
    strict = photo.relabel(labeller.segmenter(0.99, 0.0), LabelRequest(vocab, 0.99, 0.0))
    assert len(strict) == int(keep_near_best(probs, 0.99).sum())
    floor = float(np.sort(probs.max(axis=1))[1])  # drops exactly the least confident mask
    thresholded = photo.relabel(labeller.segmenter(0.0, floor), LabelRequest(vocab, 0.0, floor))
    assert len(thresholded) == 2
    assert labeller.segmenter(0.0, 0.0) is labeller.segmenter(0.0, 0.0)  # one view per rule
    assert labeller.base.settings.keep_ratio == tiny_segmenter.settings.keep_ratio


def test_table_top_classes_and_hit_test(
    tiny_segmenter: Segmenter, scene: tuple[np.ndarray, np.ndarray]
) -> None:
    photo = scene_photo(tiny_segmenter, scene)
    seg = Labeller(tiny_segmenter).segmenter(0.0, 0.0)
    result = photo.relabel(seg, LabelRequest(parse_classes(CLASSES), 0.0, 0.0))
    rows = photo.table()
    assert [r["area"] for r in rows] == [28 * 38, 26 * 32, 10 * 10]
    assert [r["class"] for r in rows] == result.labels
    info = photo.mask_info(0)
    assert len(info["top"]) == 5
    ps = [t["p"] for t in info["top"]]
    assert ps == sorted(ps, reverse=True)
    assert info["top"][0]["name"] == rows[0]["class"]
    assert info["top"][0]["p"] == pytest.approx(float(result.scores[0]), abs=1e-4)
    names = [n[0] for n in parse_classes(CLASSES).classes]
    by_name = dict(zip(names, result.class_scores[0].tolist(), strict=True))
    for t in info["top"]:
        assert t["p"] == pytest.approx(by_name[t["name"]], abs=1e-4)
    # (10, 40) lies in the small blue square only; (35, 25) in the red and green rectangles
    assert [h["index"] for h in photo.masks_at(10, 40)] == [2]
    assert [h["index"] for h in photo.masks_at(35, 25)] == [1, 0]  # smallest first
    assert photo.masks_at(0, 0) == [] and photo.masks_at(500, 5) == []
    veil = Image.open(io.BytesIO(photo.highlight_png(2)))
    alpha = np.asarray(veil)[..., 3]
    assert alpha.shape == (48, 64) and int((alpha > 0).sum()) == 100
    with pytest.raises(ConfigError, match="no mask 3"):
        photo.mask_info(3)


def test_downloads_are_the_writers_files(
    tiny_segmenter: Segmenter, scene: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    photo = scene_photo(tiny_segmenter, scene)
    seg = Labeller(tiny_segmenter).segmenter(0.0, 0.0)
    result = photo.relabel(seg, LabelRequest(parse_classes("red,green,blue"), 0.0, 0.0))
    data, name = photo.download("coco.json", tmp_path)
    coco = json.loads(data)
    assert name == "scene.png.json"
    assert [a["area"] for a in coco["annotations"]] == [28 * 38, 26 * 32, 100]
    assert [c["name"] for c in coco["categories"]] == ["red", "green", "blue"]
    data, name = photo.download("semantic.png", tmp_path)
    semantic = np.asarray(Image.open(io.BytesIO(data)))
    assert name == "scene.png.semantic.png"
    np.testing.assert_array_equal(semantic, result.semantic_map() + 1)  # 0 = no mask
    data, name = photo.download("all.zip", tmp_path)
    files = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert {"scene.png.json", "scene.png.overlay.png", "scene.png.semantic.png"} <= files
    assert any(f.startswith("scene.png.masks/") for f in files)
    data, name = photo.download("overlay.png", tmp_path)
    assert Image.open(io.BytesIO(data)).size == (64, 48)
    with pytest.raises(ConfigError, match="unknown download"):
        photo.download("x.exe", tmp_path)
    assert list(tmp_path.iterdir()) == []  # temporary folders are gone


@pytest.mark.parametrize(
    ("request_json", "error", "message"),
    [
        ({}, VocabularyError, "no classes given"),
        ({"classes": " , "}, VocabularyError, "no classes given"),
        ({"classes": "cat,Cat"}, VocabularyError, "classes: duplicate class name 'Cat'"),
        ({"classes": "cat,,dog"}, VocabularyError, "classes: empty class name"),
        ({"vocab": "nope"}, VocabularyError, "unknown vocabulary 'nope'"),
        ({"classes": "cat", "keep_ratio": 1}, ConfigError, "keep ratio must be in \\[0, 1\\)"),
        ({"classes": "cat", "score_thresh": "x"}, ConfigError, "score thresh must be a number"),
        ({"classes": "cat", "keep_ratio": "nan"}, ConfigError, "finite"),
        ([], ConfigError, "JSON object"),
    ],
)
def test_bad_label_requests_are_one_line(
    tiny_segmenter: Segmenter, request_json: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        LabelRequest.from_json(request_json, tiny_segmenter)


def test_label_request_defaults_and_builtin_vocabulary(tiny_segmenter: Segmenter) -> None:
    request = LabelRequest.from_json({"vocab": "ade150", "keep_ratio": ""}, tiny_segmenter)
    assert len(request.vocab) == 150
    assert request.keep_ratio == tiny_segmenter.settings.keep_ratio
    assert request.score_thresh == tiny_segmenter.settings.score_thresh


def test_uploads_bad_files_and_big_photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImageError, match=r"^notes.jpg is not an image PIL can read \(pass a JPEG"):
        read_upload(b"hello", "notes.jpg", tmp_path)
    with pytest.raises(ImageError, match=r"thin\.png"):
        buffer = io.BytesIO()
        Image.new("RGB", (200, 4)).save(buffer, format="PNG")
        read_upload(buffer.getvalue(), "thin.png", tmp_path)
    buffer = io.BytesIO()
    Image.new("RGB", (3000, 1500), (200, 10, 10)).save(buffer, format="PNG")
    image, notes = read_upload(buffer.getvalue(), "wide.png", tmp_path)
    assert image.shape == (800, 1600, 3)
    assert notes == ["wide.png is 3000x1500: shrunk to 1600x800 for the page"]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a decompression bomb, cheaply
    with pytest.raises(ImageError, match=r"wide\.png is too large to decode safely"):
        read_upload(buffer.getvalue(), "wide.png", tmp_path)
    monkeypatch.setattr(photo_module, "MAX_UPLOAD_BYTES", 10)
    with pytest.raises(photo_module.UploadTooLarge, match="the page takes up to"):
        read_upload(b"x" * 11, "big.jpg", tmp_path)
    assert list(tmp_path.iterdir()) == []  # staged bytes are removed

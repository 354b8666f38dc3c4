"""Bounded memory for large photos: masks at a working resolution, outputs at the image's size.

The pipeline keeps masks at ``PipelineSettings.working_size`` (long side); writers upsample one
mask (or class) at a time. These tests check the shapes the result holds, that every output is at
the image's size and equals what the same masks written at full size give, and that images no
larger than the working size come out exactly as the full-resolution path makes them.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samadapter import pipeline
from samadapter.batch import BatchOptions, BatchRunner, RelabelRunner, collect_inputs
from samadapter.io.cvat import cvat_image
from samadapter.io.exports import write_image_exports
from samadapter.io.feature_store import load_proposals, save_features
from samadapter.io.images import working_image, working_shape
from samadapter.io.labelstudio import labelstudio_task
from samadapter.io.layout import feature_path, image_output_dir
from samadapter.io.overlay import render_overlay
from samadapter.io.writers import output_paths, write_all
from samadapter.io.yolo import yolo_lines
from samadapter.modeling.proposer import AmgSettings, Proposals
from samadapter.pipeline import (
    LargeImageWarning,
    Segmenter,
    limit_pixels,
    rescale_proposals,
)
from samadapter.structures import SegmentationResult
from samadapter.vocab import parse_classes

VOCAB = parse_classes("red thing,green thing,blue thing")


def with_settings(seg: Segmenter, **kw: object) -> Segmenter:
    return dataclasses.replace(
        seg, settings=dataclasses.replace(seg.settings, **kw), _text_cache={}
    )


def photo(h: int, w: int) -> np.ndarray:
    """A gradient with three coloured rectangles (placed relative to the size)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([60 + xx * 80 // w, 60 + yy * 80 // h, np.full_like(xx, 100)], axis=2)
    img = img.astype(np.uint8)
    for (y0, y1, x0, x1), colour in [
        ((0.1, 0.6, 0.05, 0.5), (220, 40, 40)),
        ((0.4, 0.95, 0.45, 0.9), (40, 220, 40)),
        ((0.7, 0.9, 0.1, 0.3), (40, 40, 220)),
    ]:
        img[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)] = colour
    return img


def test_working_shape_and_image() -> None:
    assert working_shape((3000, 4000), 1024) == (768, 1024)
    assert working_shape((4000, 3000), 256) == (256, 192)
    assert working_shape((700, 1024), 1024) == (700, 1024)  # not larger: unchanged
    assert working_shape((3000, 4000), 0) == (3000, 4000)  # 0: full size
    assert working_shape((1, 40000), 1024) == (1, 1024)
    small = photo(30, 40)
    assert working_image(small, 64) is small
    assert working_image(photo(300, 400), 64).shape == (48, 64, 3)


def test_big_image_keeps_masks_at_the_working_resolution(
    tiny_segmenter: Segmenter, tmp_path: Path
) -> None:
    seg = with_settings(tiny_segmenter, working_size=256, score_thresh=0.0, keep_unknown=True)
    image = photo(2250, 3000)
    proposals = seg.propose(image)
    assert proposals.masks.shape[1:] == (192, 256) and proposals.image_size == (2250, 3000)
    assert len(proposals) > 0
    np.testing.assert_array_equal(proposals.crop_box, [[0, 0, 3000, 2250]] * len(proposals))
    assert (proposals.point_coords[:, 0] <= 3000).all() and proposals.point_coords.max() > 256
    result = seg.classify(image, proposals, VOCAB, file_name="big.jpg")
    n = len(result)
    assert n > 0 and result.image_size == (2250, 3000) and result.resampled
    assert result.masks.shape == (n, 192, 256)  # what the result holds: 49 kB a mask, not 6.8 MB
    assert result.masks.nbytes == n * 192 * 256

    written = write_all(image, result, tmp_path, "big", file_name="big.jpg")
    for key in ("overlay", "semantic"):
        assert Image.open(written[key]).size == (3000, 2250)
    pngs = sorted(written["masks_dir"].iterdir())
    assert pngs and all(Image.open(p).size == (3000, 2250) for p in pngs)
    coco = json.loads(written["coco"].read_text())
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (3000, 2250)
    for i, ann in enumerate(coco["annotations"][:3]):
        rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
        full = mask_utils.decode(rle).astype(bool)
        assert full.shape == (2250, 3000) and int(full.sum()) == ann["area"]
        np.testing.assert_array_equal(full, result.full_mask(i))
        x, y, w, h = ann["bbox"]
        ys, xs = np.nonzero(full)
        assert (x, y, w, h) == (
            xs.min(),
            ys.min(),
            xs.max() - xs.min() + 1,
            ys.max() - ys.min() + 1,
        )
    semantic = np.asarray(Image.open(written["semantic"]))
    np.testing.assert_array_equal(
        semantic, result.upsample((result.semantic_map(full_size=False) + 1).astype(np.uint8))
    )


def _scaled_result(size: tuple[int, int]) -> SegmentationResult:
    """Overlapping blobs and a thin line at 30x45, for an image of ``size``."""
    yy, xx = np.mgrid[0:30, 0:45]
    masks = np.stack(
        [
            (yy - 12) ** 2 + (xx - 15) ** 2 < 90,
            (yy - 18) ** 2 + (xx - 25) ** 2 < 60,
            (xx == 40) & (yy > 3),
            ((yy - 25) ** 2 + (xx - 8) ** 2 < 12) & ~((yy - 25) ** 2 + (xx - 8) ** 2 < 2),
        ]
    )
    n = len(masks)
    return SegmentationResult(
        masks=masks,
        class_ids=np.array([0, 1, 0, 2]),
        scores=np.array([0.9, 0.8, 0.6, 0.7], np.float32),
        class_scores=np.full((n, 3), 0.2, np.float32),
        class_names=["cat", "sofa", "lamp"],
        synonyms=[["cat"], ["sofa"], ["lamp"]],
        predicted_iou=np.full(n, 0.9, np.float32),
        stability_score=np.full(n, 0.95, np.float32),
        point_coords=np.full((n, 2), 10.0, np.float32),
        crop_box=np.tile(np.array([0, 0, size[1], size[0]], np.float32), (n, 1)),
        file_name="room.jpg",
        original_size=size,
    )


@pytest.mark.parametrize("size", [(97, 151), (30, 45)])
def test_streaming_writers_equal_writing_the_full_size_masks(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    """Every output of a result at a working resolution is what the old path (the full-size
    masks held in memory) writes."""
    lazy = _scaled_result(size)
    full = dataclasses.replace(lazy, masks=lazy.full_masks(), original_size=None)
    assert full.masks.shape == (4, *size) and not full.resampled
    image = photo(*size)
    outs = {}
    for name, res in (("lazy", lazy), ("full", full)):
        outs[name] = write_all(
            image, res, tmp_path / name, "room", formats=("semantic", "masks", "coco")
        )
        write_image_exports(
            res,
            tmp_path / name,
            PurePosixPath("room"),
            ("yolo-seg", "labelstudio", "cvat"),
            "room.jpg",
        )
    files = sorted(
        p.relative_to(tmp_path / "full") for p in (tmp_path / "full").rglob("*") if p.is_file()
    )
    assert len(files) == 8  # json, semantic, 3 class PNGs, 3 exports
    for rel in files:
        assert (tmp_path / "lazy" / rel).read_bytes() == (tmp_path / "full" / rel).read_bytes(), rel
    assert yolo_lines(lazy) == yolo_lines(full)
    assert labelstudio_task(lazy) == labelstudio_task(full)
    assert (cvat_image(lazy).attrib, len(cvat_image(lazy))) == (
        cvat_image(full).attrib,
        len(cvat_image(full)),
    )
    np.testing.assert_array_equal(
        render_overlay(image, lazy, labels=False), render_overlay(image, full, labels=False)
    )
    drawn = render_overlay(image, lazy)  # labels are placed from the working masks
    assert drawn.shape == image.shape and not np.array_equal(drawn, image)


def test_small_image_gives_exactly_the_full_resolution_outputs(
    tiny_segmenter: Segmenter, tmp_path: Path
) -> None:
    """At or below the working size nothing is resampled: the default settings write the same
    bytes as ``working_size=0`` (the full-resolution path)."""
    image = photo(120, 160)
    files = {}
    for size in (160, 0):
        seg = with_settings(tiny_segmenter, working_size=size, score_thresh=0.0, keep_unknown=True)
        result = seg(image, VOCAB, file_name="small.jpg")
        assert not result.resampled and result.masks.shape[1:] == (120, 160)
        out = tmp_path / str(size)
        write_all(image, result, out, "small")
        write_image_exports(result, out, PurePosixPath("small"), ("yolo-seg", "cvat"), "small.jpg")
        files[size] = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len(files[0]) >= 5 and files[160] == files[0]


def test_proposer_runs_on_the_working_image(tiny_segmenter: Segmenter) -> None:
    seen: list[tuple[int, ...]] = []

    class Recorder:
        settings = AmgSettings(min_mask_region_area=100)

        def __call__(self, image: np.ndarray) -> Proposals:
            seen.append(image.shape)
            masks = np.zeros((1, *image.shape[:2]), dtype=bool)
            masks[0, 5:20, 10:30] = True
            props = Proposals.from_masks(masks)
            props.point_coords[:] = [[16.0, 8.0]]
            return props

    seg = dataclasses.replace(with_settings(tiny_segmenter, working_size=128), proposer=Recorder())
    props = seg.propose(photo(512, 1024))
    assert seen == [(64, 128, 3)]
    np.testing.assert_allclose(props.point_coords, [[128.0, 64.0]])  # in image pixels
    np.testing.assert_array_equal(props.crop_box, [[0, 0, 1024, 512]])
    assert props.original_size == (512, 1024) and props.masks.shape == (1, 64, 128)
    assert props.image_size == (512, 1024)
    small = seg.propose(photo(50, 60))  # no resampling below the working size
    assert small.original_size is None and seen[-1] == (50, 60, 3)
    assert rescale_proposals(small, (50, 60)) is small


def test_arrays_above_the_pixel_limit_are_shrunk_with_a_warning(
    tiny_segmenter: Segmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Python API applies the batch decoder's pixel limit to arrays too."""
    monkeypatch.setattr(pipeline, "DEFAULT_MAX_PIXELS", 20_000)
    image = photo(300, 400)  # 120,000 pixels
    small, note = limit_pixels(image)
    assert small.shape[0] * small.shape[1] <= 20_000 and small.shape[:2] == (122, 163)
    assert note == "400x300 is 0.12 MP, above the 0.02 MP limit: segmented and written at 163x122"
    assert limit_pixels(small) == (small, None)
    seg = with_settings(tiny_segmenter, score_thresh=0.0, keep_unknown=True)
    with pytest.warns(LargeImageWarning, match="big.jpg: 400x300"):
        result = seg(image, VOCAB, file_name="big.jpg")
    assert result.image_size == (122, 163)


def test_cached_working_masks_relabel_at_the_image_size(
    tiny_segmenter: Segmenter, tmp_path: Path
) -> None:
    seg = with_settings(tiny_segmenter, working_size=128, score_thresh=0.0, keep_unknown=True)
    Image.fromarray(photo(400, 600)).save(tmp_path / "wide.png")
    items = collect_inputs([tmp_path / "wide.png"])
    out = tmp_path / "out"
    BatchRunner(seg, VOCAB, BatchOptions(out_dir=out, cache_features=True)).run(items)
    props, _ = load_proposals(feature_path(out, items[0].rel))
    assert props is not None and props.masks.shape[1:] == (85, 128)
    assert props.original_size == (400, 600)
    coco_path = output_paths(image_output_dir(out, items[0].rel), items[0].rel.name)["coco"]
    first = json.loads(coco_path.read_text())
    seg_text = dataclasses.replace(seg, proposer=None)
    summary = RelabelRunner(
        seg_text,
        parse_classes("sky,grass,road"),
        BatchOptions(out_dir=out, cache_features=True, overwrite=True),
    ).run(items)
    assert [r.status for r in summary.records] == ["done"]
    again = json.loads(coco_path.read_text())
    assert [a["segmentation"] for a in again["annotations"]] == [
        a["segmentation"] for a in first["annotations"]
    ]
    assert again["annotations"] and all(
        a["segmentation"]["size"] == [400, 600] for a in again["annotations"]
    )


def test_feature_cache_round_trips_the_original_size(
    tiny_segmenter: Segmenter, tmp_path: Path
) -> None:
    image = photo(200, 300)
    feats = tiny_segmenter.image_features(image)
    masks = np.zeros((2, 40, 60), dtype=bool)
    masks[0, :10] = True
    masks[1, 20:, 30:] = True
    props = dataclasses.replace(Proposals.from_masks(masks), original_size=(200, 300))
    save_features(tmp_path / "f.npz", feats, props)
    back, _ = load_proposals(tmp_path / "f.npz")
    assert back is not None and back.original_size == (200, 300)
    np.testing.assert_array_equal(back.masks, masks)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = tiny_segmenter.classify(feats, back, VOCAB)
    assert result.image_size == (200, 300)

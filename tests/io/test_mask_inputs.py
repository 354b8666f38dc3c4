"""User-given masks: every input format reads back the masks it was given; bad items are named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samadapter.errors import ImageError, SamAdapterError
from samadapter.io.coco import write_coco
from samadapter.io.mask_inputs import MaskInputError, binary_mask_from_image, read_mask_input
from samadapter.io.polygons import mask_to_polygons
from samadapter.structures import SegmentationResult, masks_to_rle

SIZE = (40, 60)


def sam_amg_records(masks: np.ndarray) -> list[dict]:
    """What segment-anything's ``scripts/amg.py --convert-to-rle`` writes for one image."""
    out = []
    for i, rle in enumerate(masks_to_rle(masks)):
        ys, xs = np.nonzero(masks[i])
        out.append({"segmentation": rle, "area": int(masks[i].sum()),
                    "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)), int(np.ptp(ys))],
                    "predicted_iou": 0.9 - i / 100, "point_coords": [[float(xs[0]), float(ys[0])]],
                    "stability_score": 0.95, "crop_box": [0, 0, SIZE[1], SIZE[0]]})
    return out


def write_json(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def save_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


# ------------------------------------------------------------------------------------ COCO JSON


def test_our_coco_json(result: SegmentationResult, tmp_path: Path) -> None:
    path = write_coco(result, tmp_path / "x.json")
    got = read_mask_input(path, SIZE, "living_room.jpg")
    assert np.array_equal(got.masks, result.masks)
    assert got.sources == [f"annotation id {i + 1}" for i in range(len(result))]
    assert got.categories == result.labels
    np.testing.assert_allclose(got.scores, result.scores)
    np.testing.assert_allclose(got.predicted_iou, result.predicted_iou, rtol=1e-6)
    np.testing.assert_allclose(got.point_coords, result.point_coords)


def test_sam_amg_rle_output_keeps_sams_fields(result: SegmentationResult, tmp_path: Path
                                              ) -> None:
    path = write_json(tmp_path / "amg.json", sam_amg_records(result.masks))
    got = read_mask_input(path, SIZE)
    assert np.array_equal(got.masks, result.masks)
    assert got.sources == [f"record {i}" for i in range(len(result))]
    assert got.categories == [None] * len(result)
    props = got.to_proposals()
    assert np.array_equal(props.masks, result.masks)
    np.testing.assert_allclose(props.predicted_iou, [0.9, 0.89, 0.88, 0.87], rtol=1e-6)
    assert np.all(props.stability_score == np.float32(0.95))
    assert props.crop_box.tolist() == [[0, 0, 60, 40]] * len(result)
    assert np.isnan(got.scores).all()


def test_results_list_with_polygons_and_uncompressed_rle(result: SegmentationResult,
                                                         tmp_path: Path) -> None:
    records = []
    for i, mask in enumerate(result.masks):
        if i % 2 == 0:
            seg = [p.reshape(-1).tolist() for p in mask_to_polygons(mask)]
        else:  # uncompressed RLE: counts as a list of run lengths (column-major)
            flat = mask.T.reshape(-1).astype(np.int8)
            change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
            seg = {"size": list(SIZE), "counts": np.diff(np.concatenate([[0], change])).tolist()}
        records.append({"image_id": 7, "category_id": 3, "segmentation": seg, "score": 0.5})
    got = read_mask_input(write_json(tmp_path / "res.json", records), SIZE)
    assert np.array_equal(got.masks, result.masks)
    assert np.all(got.scores == 0.5)


def test_multi_image_dataset_picks_the_image(result: SegmentationResult, tmp_path: Path) -> None:
    rles = masks_to_rle(result.masks)
    data = {"images": [{"id": 1, "file_name": "train/a.jpg", "height": 40, "width": 60},
                       {"id": 2, "file_name": "train/b.jpg", "height": 40, "width": 60}],
            "categories": [{"id": 5, "name": "cat"}],
            "annotations": [{"id": 10 + i, "image_id": 1 + i % 2, "category_id": 5,
                             "segmentation": rle} for i, rle in enumerate(rles)]}
    path = write_json(tmp_path / "ds.json", data)
    by_name = read_mask_input(path, SIZE, "/photos/b.jpg")
    assert by_name.sources == ["annotation id 11", "annotation id 13"]
    assert np.array_equal(by_name.masks, result.masks[1::2])
    assert by_name.categories == ["cat", "cat"]
    by_stem = read_mask_input(path, SIZE, "a.png")
    assert np.array_equal(by_stem.masks, result.masks[0::2])
    by_id = read_mask_input(path, SIZE, "zzz.jpg", image_id=2)
    assert np.array_equal(by_id.masks, result.masks[1::2])
    with pytest.raises(MaskInputError, match=r"2 images and none is named c\.jpg") as err:
        read_mask_input(path, SIZE, "c.jpg")
    assert "train/a.jpg" in str(err.value)


def test_results_for_several_images_need_an_id(result: SegmentationResult, tmp_path: Path
                                               ) -> None:
    records = [{"image_id": i % 2, "segmentation": rle}
               for i, rle in enumerate(masks_to_rle(result.masks))]
    path = write_json(tmp_path / "res.json", records)
    with pytest.raises(MaskInputError, match="results for 2 images"):
        read_mask_input(path, SIZE)
    assert len(read_mask_input(path, SIZE, image_id=0)) == 2


def test_bad_coco_items_are_each_named(result: SegmentationResult, tmp_path: Path) -> None:
    records = sam_amg_records(result.masks)
    records[1]["segmentation"] = masks_to_rle(np.zeros((1, 30, 60), dtype=bool))[0]
    records[2]["segmentation"] = masks_to_rle(np.zeros((1, 40, 60), dtype=bool))[0]
    records[3] = {"bbox": [1, 2, 3, 4]}
    path = write_json(tmp_path / "amg.json", records)
    with pytest.raises(MaskInputError) as err:
        read_mask_input(path, SIZE)
    message = str(err.value)
    assert "3 of 4 masks" in message
    assert "record 1: mask is 30x60 but the image is 40x60" in message
    assert "record 2: empty mask" in message
    assert "record 3: no segmentation" in message
    assert len(err.value.problems) == 3
    assert isinstance(err.value, ImageError) and isinstance(err.value, SamAdapterError)
    got = read_mask_input(path, SIZE, skip_invalid=True)
    assert len(got) == 1 and len(got.skipped) == 3


def test_undecodable_segmentations_are_named(tmp_path: Path) -> None:
    records = [{"id": 1, "segmentation": {"size": [40, 60], "counts": "zz!!##"}},
               {"id": 2, "segmentation": {"size": [40, 60], "counts": [5, 10]}},
               {"id": 3, "segmentation": [[1, 2, 3]]}]
    with pytest.raises(MaskInputError) as err:
        read_mask_input(write_json(tmp_path / "c.json", records), SIZE)
    assert [p.split(":")[0] for p in err.value.problems] == [
        "annotation id 1", "annotation id 2", "annotation id 3"]
    assert "corrupt RLE" in err.value.problems[0]
    assert "do not add up to 40x60" in err.value.problems[1]
    assert "fewer than 3" in err.value.problems[2]


def test_transposed_size_hints_at_exif(tmp_path: Path) -> None:
    rle = masks_to_rle(np.ones((1, 60, 40), dtype=bool))
    path = write_json(tmp_path / "r.json", [{"segmentation": rle[0]}])
    with pytest.raises(MaskInputError, match="EXIF"):
        read_mask_input(path, SIZE)


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ('{"images": [], "annotations": []}', "no annotations"),
    ('"just a string"', "neither a COCO dataset"),
])
def test_unusable_json_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(MaskInputError, match=match):
        read_mask_input(path, SIZE)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(MaskInputError, match="does not exist"):
        read_mask_input(tmp_path / "nope.json", SIZE)


# ------------------------------------------------------------------------- folder of binary PNGs


def test_folder_of_binary_masks(result: SegmentationResult, tmp_path: Path) -> None:
    folder = tmp_path / "masks"
    folder.mkdir()
    m = result.masks
    save_png(folder / "mask_10.png", m[3].astype(np.uint8) * 255)  # after mask_2 (numeric order)
    save_png(folder / "mask_2.png", m[2].astype(np.uint8))  # 0/1 values
    save_png(folder / "mask_1.png", (m[1].astype(np.uint16) * 40000))
    rgba = np.zeros((*SIZE, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere: only the alpha says where the mask is
    rgba[..., 3] = m[0] * 255
    save_png(folder / "mask_0.png", rgba)
    (folder / ".hidden.png").write_bytes(b"junk")
    (folder / "notes.txt").write_text("not a mask")
    got = read_mask_input(folder, SIZE)
    assert got.sources == ["masks/mask_0.png", "masks/mask_1.png", "masks/mask_2.png",
                           "masks/mask_10.png"]
    assert np.array_equal(got.masks, m)
    assert np.isnan(got.predicted_iou).all() and got.crop_box[0].tolist() == [0, 0, 60, 40]


def test_folder_problems_are_listed_per_file(result: SegmentationResult, tmp_path: Path) -> None:
    folder = tmp_path / "masks"
    folder.mkdir()
    save_png(folder / "a_good.png", result.masks[0].astype(np.uint8) * 255)
    save_png(folder / "b_small.png", np.full((20, 30), 255, np.uint8))
    save_png(folder / "c_empty.png", np.zeros(SIZE, np.uint8))
    (folder / "d_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(MaskInputError) as err:
        read_mask_input(folder, SIZE)
    problems = err.value.problems
    assert [p.split(":")[0] for p in problems] == ["masks/b_small.png", "masks/c_empty.png",
                                                   "masks/d_broken.png"]
    assert "20x30 but the image is 40x60" in problems[0]
    got = read_mask_input(folder, SIZE, skip_invalid=True)
    assert got.sources == ["masks/a_good.png"] and len(got.skipped) == 3


def test_folder_without_masks(tmp_path: Path) -> None:
    with pytest.raises(MaskInputError, match="no mask images"):
        read_mask_input(tmp_path, SIZE)


def test_jpeg_masks_are_thresholded(tmp_path: Path) -> None:
    mask = np.zeros(SIZE, dtype=bool)
    mask[10:30, 10:40] = True
    path = tmp_path / "m.jpg"
    Image.fromarray(mask.astype(np.uint8) * 255).save(path, quality=70)
    got = binary_mask_from_image(path)
    assert (got != mask).sum() <= 0.02 * mask.sum()


# --------------------------------------------------------------------------------- label images


def test_palette_label_png(tmp_path: Path) -> None:
    labels = np.zeros(SIZE, np.uint8)
    labels[0:10, 0:10] = 7
    labels[20:30, 5:50] = 3
    img = Image.fromarray(labels, mode="P")
    img.putpalette([0, 0, 0] + [200, 10, 10] * 255)
    img.save(tmp_path / "labels.png")
    got = read_mask_input(tmp_path / "labels.png", SIZE)
    assert got.sources == ["label 3", "label 7"]
    assert np.array_equal(got.masks, np.stack([labels == 3, labels == 7]))


def test_sixteen_bit_label_png_with_ignore_value(tmp_path: Path) -> None:
    labels = np.zeros(SIZE, np.uint16)
    labels[:, :20] = 1000
    labels[:, 20:30] = 255
    path = save_png(tmp_path / "l.png", labels)
    assert Image.open(path).mode.startswith("I")
    assert read_mask_input(path, SIZE).sources == ["label 255", "label 1000"]
    got = read_mask_input(path, SIZE, ignore_values=(0, 255))
    assert got.sources == ["label 1000"] and np.array_equal(got.masks[0], labels == 1000)


def test_colour_label_png_and_single_binary_png(tmp_path: Path) -> None:
    rgb = np.zeros((*SIZE, 3), np.uint8)
    rgb[:5] = (255, 0, 0)
    rgb[-5:] = (0, 128, 255)
    got = read_mask_input(save_png(tmp_path / "c.png", rgb), SIZE)
    assert got.sources == ["colour #0080ff", "colour #ff0000"]
    assert got.masks.sum(axis=(1, 2)).tolist() == [300, 300]
    binary = np.zeros(SIZE, np.uint8)
    binary[3:9, 4:8] = 255
    one = read_mask_input(save_png(tmp_path / "b.png", binary), SIZE)
    assert len(one) == 1 and np.array_equal(one.masks[0], binary > 0)


def test_label_png_errors(tmp_path: Path) -> None:
    with pytest.raises(MaskInputError, match="is 20x20 but the image is 40x60"):
        read_mask_input(save_png(tmp_path / "s.png", np.ones((20, 20), np.uint8)), SIZE)
    with pytest.raises(MaskInputError, match="no usable masks"):
        read_mask_input(save_png(tmp_path / "z.png", np.zeros(SIZE, np.uint8)), SIZE)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(MaskInputError, match=r"label image .*bad\.png: not an image"):
        read_mask_input(tmp_path / "bad.png", SIZE)


def test_rle_round_trip_matches_pycocotools(result: SegmentationResult, tmp_path: Path) -> None:
    """RLEs with ``counts`` as bytes-decoded strings, as pycocotools writes them."""
    rles = mask_utils.encode(np.asfortranarray(result.masks.transpose(1, 2, 0).astype(np.uint8)))
    records = [{"segmentation": {"size": r["size"], "counts": r["counts"].decode()}}
               for r in rles]
    got = read_mask_input(write_json(tmp_path / "r.json", records), SIZE)
    assert np.array_equal(got.masks, result.masks)

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
from samadapter.io.mask_inputs import (
    MaskInputError,
    binary_mask_from_image,
    read_mask_input,
    rle_string_counts,
)
from samadapter.io.polygons import mask_to_polygons
from samadapter.structures import SegmentationResult, masks_to_rle

SIZE = (40, 60)


def sam_amg_records(masks: np.ndarray) -> list[dict]:
    """What segment-anything's ``scripts/amg.py --convert-to-rle`` writes for one image."""
    out = []
    for i, rle in enumerate(masks_to_rle(masks)):
        ys, xs = np.nonzero(masks[i])
        out.append(
            {
                "segmentation": rle,
                "area": int(masks[i].sum()),
                "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)), int(np.ptp(ys))],
                "predicted_iou": 0.9 - i / 100,
                "point_coords": [[float(xs[0]), float(ys[0])]],
                "stability_score": 0.95,
                "crop_box": [0, 0, SIZE[1], SIZE[0]],
            }
        )
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


def test_sam_amg_rle_output_keeps_sams_fields(result: SegmentationResult, tmp_path: Path) -> None:
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


def test_results_list_with_polygons_and_uncompressed_rle(
    result: SegmentationResult, tmp_path: Path
) -> None:
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
    data = {
        "images": [
            {"id": 1, "file_name": "train/a.jpg", "height": 40, "width": 60},
            {"id": 2, "file_name": "train/b.jpg", "height": 40, "width": 60},
        ],
        "categories": [{"id": 5, "name": "cat"}],
        "annotations": [
            {"id": 10 + i, "image_id": 1 + i % 2, "category_id": 5, "segmentation": rle}
            for i, rle in enumerate(rles)
        ],
    }
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


def test_results_for_several_images_need_an_id(result: SegmentationResult, tmp_path: Path) -> None:
    records = [
        {"image_id": i % 2, "segmentation": rle} for i, rle in enumerate(masks_to_rle(result.masks))
    ]
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
    records = [
        {"id": 1, "segmentation": {"size": [40, 60], "counts": "zz!!##"}},
        {"id": 2, "segmentation": {"size": [40, 60], "counts": [5, 10]}},
        {"id": 3, "segmentation": [[1, 2, 3]]},
    ]
    with pytest.raises(MaskInputError) as err:
        read_mask_input(write_json(tmp_path / "c.json", records), SIZE)
    assert [p.split(":")[0] for p in err.value.problems] == [
        "annotation id 1",
        "annotation id 2",
        "annotation id 3",
    ]
    assert "corrupt RLE" in err.value.problems[0]
    assert "do not add up to 40x60" in err.value.problems[1]
    assert "fewer than 3" in err.value.problems[2]


def test_transposed_size_hints_at_exif(tmp_path: Path) -> None:
    rle = masks_to_rle(np.ones((1, 60, 40), dtype=bool))
    path = write_json(tmp_path / "r.json", [{"segmentation": rle[0]}])
    with pytest.raises(MaskInputError, match="EXIF"):
        read_mask_input(path, SIZE)


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not valid JSON"),
        ('{"images": [], "annotations": []}', "no annotations"),
        ('"just a string"', "neither a COCO dataset"),
    ],
)
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
    assert got.sources == [
        "masks/mask_0.png",
        "masks/mask_1.png",
        "masks/mask_2.png",
        "masks/mask_10.png",
    ]
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
    assert [p.split(":")[0] for p in problems] == [
        "masks/b_small.png",
        "masks/c_empty.png",
        "masks/d_broken.png",
    ]
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
    records = [{"segmentation": {"size": r["size"], "counts": r["counts"].decode()}} for r in rles]
    got = read_mask_input(write_json(tmp_path / "r.json", records), SIZE)
    assert np.array_equal(got.masks, result.masks)


# ---------------------------------------------------------------------------- untrusted files


def test_rle_string_parser_matches_pycocotools() -> None:
    """Our own reading of compressed RLE strings gives pycocotools' run lengths exactly."""
    rng = np.random.default_rng(0)
    for h, w, p in [(40, 60, 0.5), (7, 3, 0.9), (300, 451, 0.001), (64, 64, 0.0), (64, 64, 1.0)]:
        mask = rng.random((h, w)) < p
        mask[h // 4 : h // 2, w // 4 : w // 2] = True  # long runs too (several 5-bit chunks)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        flat = mask.T.reshape(-1).astype(np.int8)  # column-major, as COCO counts
        change = np.flatnonzero(np.diff(flat)) + 1
        bounds = np.concatenate(([0], change, [flat.size]))
        runs = np.diff(bounds).tolist()
        if flat[0]:
            runs = [0, *runs]
        assert rle_string_counts(rle["counts"].decode()).tolist() == runs


# Each record is bad in one way; each must give exactly one problem line naming it.
HOSTILE_RECORDS = [
    ({"segmentation": [[0, 0, float("nan"), 5, 10, 10]]}, "NaN or infinite"),
    ({"segmentation": [[0, 0, float("inf"), 5, 10, 10]]}, "NaN or infinite"),
    ({"segmentation": [[0, 0, 1e300, 5, 10, 10]]}, "far outside"),
    ({"segmentation": [[0, 0, -1e9, 5, 10, 10]]}, "far outside"),
    ({"segmentation": [[0, 0, 59, 0, 59, 39] * 4000]}, "too long to rasterise"),
    ({"segmentation": [[0, 0, "a", 5, 10, 10]]}, "not numbers"),
    ({"segmentation": [[0, 0, True, 5, 10, 10]]}, "not numbers"),
    ({"segmentation": [0, 0, [1], 5, 10, 10]}, "not numbers"),
    (
        {"segmentation": {"size": [200000, 200000], "counts": "0"}},
        "mask is 200000x200000 but the image is 40x60",
    ),
    ({"segmentation": {"size": [-40, 60], "counts": [2400]}}, "mask is -40x60"),
    ({"segmentation": {"size": ["abc", 60], "counts": [2400]}}, "not two whole numbers"),
    ({"segmentation": {"size": 5, "counts": [2400]}}, "not two whole numbers"),
    ({"segmentation": {"size": [40, 60, 1], "counts": [2400]}}, "not two whole numbers"),
    ({"segmentation": {"size": [40, 60], "counts": [1200, -5, 1205]}}, "negative run length"),
    ({"segmentation": {"size": [40, 60], "counts": [10**30]}}, "do not add up"),
    ({"segmentation": {"size": [40, 60], "counts": [1.5, 2398.5]}}, "not whole numbers"),
    ({"segmentation": {"size": [40, 60], "counts": 5}}, "neither a string nor a list"),
    ({"segmentation": {"size": [40, 60], "counts": "\x00\x00"}}, "corrupt RLE"),
    ({"segmentation": {"size": [40, 60], "counts": "ooooooooooooo1"}}, "corrupt RLE"),
    ({"segmentation": {"size": [40, 60], "counts": "1o"}}, "ends inside a value"),
    ({"segmentation": "abc"}, "no segmentation"),
    ({"segmentation": []}, "no segmentation"),
]


@pytest.mark.parametrize("record, match", HOSTILE_RECORDS)
def test_hostile_records_give_one_line_each(tmp_path: Path, record: dict, match: str) -> None:
    good = {"segmentation": masks_to_rle(np.ones((1, *SIZE), dtype=bool))[0]}
    path = tmp_path / "m.json"
    path.write_text(json.dumps([good, {"id": 9, **record}]), encoding="utf-8")  # NaN allowed
    with pytest.raises(MaskInputError) as err:
        read_mask_input(path, SIZE)
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith("annotation id 9: ")
    assert match in err.value.problems[0]
    got = read_mask_input(path, SIZE, skip_invalid=True)
    assert len(got) == 1 and got.skipped == err.value.problems


def test_rle_string_whose_runs_overrun_the_image_is_not_decoded(tmp_path: Path) -> None:
    """pycocotools' decoder trusts the runs; a string claiming more pixels must never reach it."""
    big = mask_utils.encode(np.asfortranarray(np.ones((400, 60), np.uint8)))
    record = {"id": 1, "segmentation": {"size": list(SIZE), "counts": big["counts"].decode()}}
    with pytest.raises(MaskInputError) as err:
        read_mask_input(write_json(tmp_path / "m.json", [record]), SIZE)
    assert err.value.problems == [
        "annotation id 1: corrupt RLE (its run lengths do not add up to 40x60 pixels)"
    ]


def coco_with(**changes: object) -> dict:
    data: dict = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 60}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 30, 0, 30, 20]]}
        ],
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "data, match",
    [
        (coco_with(annotations=5), "'annotations' is 5, not a list"),
        (coco_with(images="x"), "'images' is x, not a list"),
        (coco_with(categories={"a": 1}), "'categories' is {'a': 1}, not a list"),
        (coco_with(images=[{"id": 1, "height": "abc", "width": 60}]), "height abc, not a whole"),
        (coco_with(images=[{"id": 1, "height": 40, "width": -60}]), "width -60, not a whole"),
        (coco_with(images=[{"id": 1, "height": 40.5, "width": 60}]), "height 40.5, not a whole"),
        (
            coco_with(images=[{"id": 1, "height": 200000, "width": 200000}]),
            "gives its image's size as 200000x200000 but the image is 40x60",
        ),
    ],
)
def test_hostile_coco_files_give_one_error(tmp_path: Path, data: dict, match: str) -> None:
    with pytest.raises(MaskInputError, match=match) as err:
        read_mask_input(write_json(tmp_path / "m.json", data), SIZE, "a.jpg")
    assert "\n" not in str(err.value)


def test_odd_ids_are_data_not_errors(tmp_path: Path) -> None:
    data = coco_with(categories=[{"id": [1], "name": "list id"}, {"id": 1, "name": "cat"}])
    data["annotations"][0]["category_id"] = [1]  # unhashable: no category, not a TypeError
    data["annotations"][0]["id"] = {"deep": list(range(100))}
    data["annotations"][0]["score"] = float("inf")
    data["annotations"][0]["crop_box"] = [0, 0, float("nan"), 5]
    got = read_mask_input(write_json(tmp_path / "m.json", data), SIZE, "a.jpg")
    assert got.categories == [None] and np.isnan(got.scores[0])
    assert got.crop_box[0].tolist() == [0, 0, 60, 40]
    assert got.sources[0].startswith("annotation id {'deep'") and len(got.sources[0]) < 60
    results = [
        {"image_id": [1], "segmentation": [[0, 0, 30, 0, 30, 20]]},
        {"image_id": {"a": 1}, "segmentation": [[0, 0, 30, 0, 30, 20]]},
    ]
    with pytest.raises(MaskInputError, match="results for 2 images"):
        read_mask_input(write_json(tmp_path / "r.json", results), SIZE)


def test_deeply_nested_json_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(MaskInputError, match="nested too deeply"):
        read_mask_input(path, SIZE)


BAD_VALUES = [
    5,
    "abc",
    None,
    [],
    {},
    float("nan"),
    1e308,
    -1,
    [1, 2],
    [[1]],
    True,
    {"size": [40, 60]},
]


@pytest.mark.parametrize(
    "where",
    [
        "images",
        "image",
        "height",
        "annotations",
        "annotation",
        "segmentation",
        "polygon",
        "point",
        "image_id",
        "categories",
        "category",
        "category_id",
        "score",
        "size",
        "counts",
    ],
)
def test_any_malformed_field_is_a_mask_input_error(tmp_path: Path, where: str) -> None:
    """Whatever value sits anywhere, the reader answers with masks or one MaskInputError."""
    for i, value in enumerate(BAD_VALUES):
        data = coco_with()
        data["annotations"].append(
            {
                "id": 2,
                "image_id": 1,
                "category_id": 1,
                "segmentation": {"size": [40, 60], "counts": [100, 50, 2250]},
            }
        )
        ann, rle = data["annotations"][0], data["annotations"][1]["segmentation"]
        target = {
            "images": (data, "images"),
            "image": (data["images"], 0),
            "height": (data["images"][0], "height"),
            "annotations": (data, "annotations"),
            "annotation": (data["annotations"], 0),
            "segmentation": (ann, "segmentation"),
            "polygon": (ann["segmentation"], 0),
            "point": (ann["segmentation"][0], 2),
            "image_id": (ann, "image_id"),
            "categories": (data, "categories"),
            "category": (data["categories"], 0),
            "category_id": (ann, "category_id"),
            "score": (ann, "score"),
            "size": (rle, "size"),
            "counts": (rle, "counts"),
        }[where]
        target[0][target[1]] = value
        path = write_json(tmp_path / f"m{i}.json", data)
        for skip in (False, True):
            try:
                got = read_mask_input(path, SIZE, "a.jpg", skip_invalid=skip)
            except MaskInputError as e:
                assert "\n" not in str(e)
            else:
                assert got.masks.shape[1:] == SIZE and len(got) >= 1


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width x height`` but holds no pixel data at all."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_declared_image_sizes_are_checked_before_decoding(tmp_path: Path) -> None:
    folder = tmp_path / "masks"
    folder.mkdir()
    save_png(folder / "a.png", np.full(SIZE, 255, np.uint8))
    png_header_only(folder / "b.png", 9000, 9000)  # decoding would need 81 MB, and fail
    got = read_mask_input(folder, SIZE, skip_invalid=True)
    assert got.skipped == ["masks/b.png: mask is 9000x9000 but the image is 40x60 (HxW)"]
    with pytest.raises(MaskInputError, match="is 9000x9000 but the image is 40x60"):
        read_mask_input(png_header_only(tmp_path / "label.png", 9000, 9000), SIZE)


def many_valued_labels(n_big: int = 5) -> np.ndarray:
    """A 256 x 256 16-bit label map using all 65,535 non-zero values once, except that values
    1..n_big each fill a 16 x 16 block (the largest regions)."""
    labels = np.arange(65536, dtype=np.int64).reshape(256, 256)
    labels[0, 0] = 65535  # value 0 (background) nowhere
    for v in range(1, n_big + 1):
        labels[16 * v : 16 * v + 16, 0:16] = v
    return labels.astype(np.uint16)


def test_label_png_with_65535_values_is_capped_and_bounded(tmp_path: Path) -> None:
    import tracemalloc

    labels = many_valued_labels()
    path = save_png(tmp_path / "many.png", labels)
    n_values = len(np.unique(labels))
    tracemalloc.start()
    try:
        got = read_mask_input(path, labels.shape, max_masks=40)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(got) == 40 and got.dropped == n_values - 40
    # The 5 big regions are kept, and the masks are exactly their values' pixels.
    assert got.sources[:5] == [f"label {v}" for v in range(1, 6)]
    for source, mask in zip(got.sources, got.masks, strict=True):
        assert np.array_equal(mask, labels == int(source.split()[1]))
    assert got.notes == [
        f"many.png holds more than 40 masks (the --max-masks limit): kept the "
        f"40 largest, left out {n_values - 40}; raise --max-masks to keep more"
    ]
    # 65,535 full-size masks would take 65535 * 65536 B = 4.3 GB; a handful of [H, W] int64
    # working arrays plus the 40 kept masks is what the reader may use.
    assert peak < 8 * 65536 * 8 + 40 * 65536, peak


def test_default_mask_limit_applies(tmp_path: Path) -> None:
    from samadapter.cli.classify import DEFAULT_MAX_MASKS as CLI_DEFAULT
    from samadapter.io.mask_inputs import DEFAULT_MAX_MASKS

    assert CLI_DEFAULT == DEFAULT_MAX_MASKS  # the CLI writes the number out to start fast

    labels = many_valued_labels()
    got = read_mask_input(save_png(tmp_path / "many.png", labels), (256, 256))
    assert len(got) == DEFAULT_MAX_MASKS == 1000
    assert got.dropped == len(np.unique(labels)) - 1000 > 60000
    assert got.masks.sum(axis=(1, 2)).min() >= 1


def test_coco_cap_keeps_the_largest_in_file_order(tmp_path: Path) -> None:
    records = []
    for i, side in enumerate([3, 9, 5, 12, 7]):
        m = np.zeros((1, *SIZE), dtype=bool)
        m[0, :side, i : i + side] = True
        records.append({"id": i + 1, "segmentation": masks_to_rle(m)[0]})
    got = read_mask_input(write_json(tmp_path / "m.json", records), SIZE, max_masks=3)
    assert got.sources == ["annotation id 2", "annotation id 4", "annotation id 5"]
    assert got.masks.sum(axis=(1, 2)).tolist() == [81, 144, 49] and got.dropped == 2


def test_folder_cap_opens_only_the_first_files(tmp_path: Path) -> None:
    folder = tmp_path / "masks"
    folder.mkdir()
    for i in range(4):
        save_png(folder / f"m{i}.png", np.full(SIZE, 255, np.uint8))
    (folder / "m9.png").write_bytes(b"broken, but never opened")
    got = read_mask_input(folder, SIZE, max_masks=3)
    assert got.sources == ["masks/m0.png", "masks/m1.png", "masks/m2.png"]
    assert got.dropped == 2 and got.skipped == []
    assert "kept the first 3 files by name, left out 2" in got.notes[0]
    with pytest.raises(MaskInputError, match="at least 1"):
        read_mask_input(folder, SIZE, max_masks=0)

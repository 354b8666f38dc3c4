"""COCO-Stuff-164k and COCO panoptic loaders read back exactly what tiny synthetic copies hold."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import synth_data  # tests/synth_data.py (tests/ is on sys.path via its conftest)
import typer
from PIL import Image
from typer.testing import CliRunner

from samadapter.cli.train import open_training_dataset, train
from samadapter.data.base import IGNORE
from samadapter.data.coco import (
    CocoPanopticDataset,
    decode_panoptic_ids,
    load_coco_panoptic,
    load_coco_stuff,
)
from samadapter.data.folder import FolderDataset, label_lookup
from samadapter.errors import ConfigError, DatasetError
from samadapter.train.gt_masks import RegionSettings, region_masks
from samadapter.vocab import load_builtin


def load_synth() -> ModuleType:
    """The synthetic-dataset writer shared by the data, eval and CLI tests."""
    return synth_data


synth = load_synth()
STUFF = load_builtin("coco-stuff")
PANOPTIC = load_builtin("coco-panoptic")


# --------------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------------


def write_coco_stuff(root: Path, split: str = "val2017", n: int = 3) -> dict[str, np.ndarray]:
    """``root/coco/SPLIT/*.jpg`` + ``root/coco/stuffthingmaps_detectron2/SPLIT/*.png`` (pixel =
    contiguous class index 0..170, 255 = ignore); returns the class-index maps by name."""
    images = root / "coco" / split
    labels = root / "coco" / "stuffthingmaps_detectron2" / split
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    written = {}
    for i, classes in enumerate([[0, 91, 170], [12, 0, 79], [170, 80, 5]][:n]):
        h, w = synth.SIZES[i]
        label = synth.make_label(h, w, classes, seed=i)
        name = f"{139 + i:012d}"
        Image.fromarray(synth.image_for(label, seed=i)).save(images / f"{name}.jpg", quality=95)
        raw = np.where(label == IGNORE, 255, label).astype(np.uint8)
        Image.fromarray(raw).save(labels / f"{name}.png")
        written[name] = label
    return written


@dataclass
class Panoptic:
    """A written panoptic split: ground truth by name and the files."""

    labels: dict[str, np.ndarray]
    instances: dict[str, np.ndarray]
    json_path: Path
    png_dir: Path


def _encode(ids: np.ndarray) -> np.ndarray:
    """``[H, W]`` segment ids → ``[H, W, 3]`` uint8 RGB, id = R + 256·G + 256²·B."""
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def write_coco_panoptic(root: Path, split: str = "val2017", images_list: bool = True) -> Panoptic:
    """Two images: the first with two touching ``person`` instances (a thing), ``wall`` (stuff,
    two separate patches forming one segment), a crowd ``car`` and an unlabelled strip; the
    second with one ``dog`` and ``grass`` plus a listed segment absent from its PNG."""
    top = root / "coco"
    (top / split).mkdir(parents=True)
    png_dir = top / f"panoptic_{split}"
    png_dir.mkdir()
    (top / "annotations").mkdir()
    person, wall, car, dog, grass = 1, 199, 3, 18, 193
    k = PANOPTIC.ids.index
    images, annotations = [], []
    labels, instances = {}, {}

    # image 1: 40 x 56
    ids = np.full((40, 56), 0x0A0B0C, dtype=np.int64)  # wall everywhere ...
    ids[5:25, 5:15] = 0x010203  # person #1
    ids[5:25, 15:25] = 0x3F2F1F  # person #2, touching #1
    ids[28:36, 30:50] = 0xC8C8C8  # crowd of cars
    ids[:, 53:] = 0  # unlabelled strip
    segs = [(0x010203, person, 0), (0x3F2F1F, person, 0), (0x0A0B0C, wall, 0), (0xC8C8C8, car, 1)]
    label = np.full((40, 56), k(wall), dtype=np.int32)
    label[5:25, 5:25] = k(person)
    label[28:36, 30:50] = IGNORE
    label[:, 53:] = IGNORE
    inst = np.full((40, 56), 3, dtype=np.int32)
    inst[5:25, 5:15] = 1
    inst[5:25, 15:25] = 2
    inst[28:36, 30:50] = 0
    inst[:, 53:] = 0
    # image 2: 36 x 48
    ids2 = np.full((36, 48), 77, dtype=np.int64)  # grass
    ids2[10:30, 10:30] = 5_000_000  # dog
    segs2 = [(5_000_000, dog, 0), (123, person, 0), (77, grass, 0)]  # 123 is not in the PNG
    label2 = np.full((36, 48), k(grass), dtype=np.int32)
    label2[10:30, 10:30] = k(dog)
    inst2 = np.full((36, 48), 3, dtype=np.int32)
    inst2[10:30, 10:30] = 1

    for image_id, seg_ids, seg_list, lab, ins in (
        (139, ids, segs, label, inst),
        (285, ids2, segs2, label2, inst2),
    ):
        name = f"{image_id:012d}"
        rgb = synth.image_for(np.where(lab < 0, 0, lab), seed=image_id)
        Image.fromarray(rgb).save(top / split / f"{name}.jpg", quality=95)
        Image.fromarray(_encode(seg_ids)).save(png_dir / f"{name}.png")
        images.append(
            {
                "id": image_id,
                "file_name": f"{name}.jpg",
                "height": lab.shape[0],
                "width": lab.shape[1],
            }
        )
        annotations.append(
            {
                "image_id": image_id,
                "file_name": f"{name}.png",
                "segments_info": [
                    {"id": s, "category_id": c, "iscrowd": crowd, "area": 1, "bbox": [0, 0, 1, 1]}
                    for s, c, crowd in seg_list
                ],
            }
        )
        labels[name], instances[name] = lab, ins
    data = {
        "annotations": annotations,
        "categories": [
            {"id": i, "name": n} for i, n in zip(PANOPTIC.ids, PANOPTIC.names, strict=True)
        ],
    }
    if images_list:
        data["images"] = images
    json_path = top / "annotations" / f"panoptic_{split}.json"
    json_path.write_text(json.dumps(data), encoding="utf-8")
    return Panoptic(labels, instances, json_path, png_dir)


# --------------------------------------------------------------------------------------------------
# COCO-Stuff
# --------------------------------------------------------------------------------------------------


def test_coco_stuff_reads_back_contiguous_labels_and_ignore(tmp_path: Path) -> None:
    written = write_coco_stuff(tmp_path)
    ds = load_coco_stuff(tmp_path, "val")
    assert isinstance(ds, FolderDataset) and ds.contiguous
    assert ds.vocab.name == "coco-stuff" and len(ds.vocab) == 171
    assert ds.names() == sorted(written) and len(ds) == 3
    for i, name in enumerate(ds.names()):
        sample = ds[i]
        assert sample.name == name and sample.label.dtype == np.int32
        np.testing.assert_array_equal(sample.label, written[name])
        assert sample.image.shape == (*written[name].shape, 3)
        assert sample.instances is None
    # value = position among the 171 valid classes, not the COCO id (which has gaps)
    assert ds.vocab.names[0] == "person" and ds.vocab.ids[0] == 1
    assert ds.vocab.names[170] == "wood" and ds.vocab.ids[170] == 182
    assert (ds[0].label == 170).any() and (ds[0].label == IGNORE).any()
    assert "coco-stuff val2017" in ds.description


def test_coco_stuff_root_may_be_the_coco_folder_and_splits_have_aliases(tmp_path: Path) -> None:
    written = write_coco_stuff(tmp_path, "train2017", n=2)
    for root in (tmp_path, tmp_path / "coco"):
        for split in ("train", "train2017", "training"):
            assert load_coco_stuff(root, split).names() == sorted(written)
    with pytest.raises(ConfigError, match="unknown COCO split"):
        load_coco_stuff(tmp_path, "test2017")


def test_coco_stuff_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as e:
        load_coco_stuff(tmp_path / "nowhere", "val")
    assert "stuffthingmaps_detectron2/val2017" in str(e.value)
    assert "cocodataset.org" in str(e.value)
    assert "prepare_coco_stuff_164k_sem_seg.py" in str(e.value)
    with pytest.raises(DatasetError, match="coco-stuff not found under") as e:
        load_coco_stuff(tmp_path, "val")
    assert f"{tmp_path / 'coco' / 'val2017'}/" in str(e.value)
    (tmp_path / "coco" / "val2017").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"found .*val2017 but not .*stuffthingmaps_detectron2"):
        load_coco_stuff(tmp_path, "val")


def test_coco_stuff_rejects_values_that_are_no_class_index(tmp_path: Path) -> None:
    write_coco_stuff(tmp_path, n=1)
    label_file = next((tmp_path / "coco" / "stuffthingmaps_detectron2" / "val2017").iterdir())
    raw = np.array(Image.open(label_file))
    raw[0, 0] = 171
    Image.fromarray(raw).save(label_file)
    with pytest.raises(DatasetError, match="no class: 171") as e:
        load_coco_stuff(tmp_path, "val")[0]
    assert "class index 0..170" in str(e.value)


def test_label_lookup_contiguous_and_by_id() -> None:
    by_index = label_lookup(STUFF, 255, contiguous=True)
    np.testing.assert_array_equal(by_index[:171], np.arange(171))
    assert by_index[255] == IGNORE and by_index[171] == -2
    by_id = label_lookup(STUFF, 255)  # the default is unchanged: pixel value = class id
    assert by_id[1] == 0 and by_id[182] == 170 and by_id[12] == -2 and by_id[0] == -2
    shifted = label_lookup(STUFF, 0, -1, contiguous=True)  # value + offset = class index
    assert shifted[0] == IGNORE and shifted[1] == 0 and shifted[171] == 170
    with pytest.raises(ConfigError, match="pixel value 5 is both"):
        label_lookup(STUFF, 5, contiguous=True)


# --------------------------------------------------------------------------------------------------
# COCO panoptic
# --------------------------------------------------------------------------------------------------


def test_coco_panoptic_reads_back_labels_instances_and_crowd(tmp_path: Path) -> None:
    written = write_coco_panoptic(tmp_path)
    ds = load_coco_panoptic(tmp_path, "val")
    assert isinstance(ds, CocoPanopticDataset)
    assert ds.vocab.name == "coco-panoptic" and len(ds.vocab) == 133
    assert ds.names() == ["000000000139", "000000000285"] and len(ds) == 2
    for i, name in enumerate(ds.names()):
        sample = ds[i]
        assert sample.name == name
        assert sample.label.dtype == np.int32 and sample.instances is not None
        assert sample.instances.dtype == np.int32
        np.testing.assert_array_equal(sample.label, written.labels[name])
        np.testing.assert_array_equal(sample.instances, written.instances[name])
        np.testing.assert_array_equal(ds.label(i), written.labels[name])
        assert sample.image.shape == (*sample.label.shape, 3)
    first = ds[0]
    assert first.instances is not None
    crowd = np.zeros_like(first.label, dtype=bool)
    crowd[28:36, 30:50] = True
    assert (first.label[crowd] == IGNORE).all() and (first.instances[crowd] == 0).all()
    assert (first.label[:, 53:] == IGNORE).all()
    # the two touching persons stay two masks; the wall is one mask
    gt = region_masks(first.label, first.instances, RegionSettings(min_area=1))
    names = [ds.vocab.names[c] for c in gt.classes]
    assert names == ["person", "person", "wall"]
    assert [int(m.sum()) for m in gt.masks[:2]] == [200, 200]


def test_coco_panoptic_without_images_list_and_root_is_coco_folder(tmp_path: Path) -> None:
    written = write_coco_panoptic(tmp_path, "train2017", images_list=False)
    ds = load_coco_panoptic(tmp_path / "coco", "train")
    assert ds.names() == sorted(written.labels)
    np.testing.assert_array_equal(ds[1].label, written.labels["000000000285"])


def test_decode_panoptic_ids() -> None:
    ids = np.array([[0, 1, 256], [65536, 0x3F2F1F, 16_777_215]])
    np.testing.assert_array_equal(decode_panoptic_ids(_encode(ids)), ids)


def test_coco_panoptic_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as e:
        load_coco_panoptic(tmp_path / "nowhere", "val")
    text = str(e.value)
    assert "panoptic_val2017/" in text and "annotations/panoptic_val2017.json" in text
    assert "cocodataset.org" in text and "panoptic_annotations_trainval2017.zip" in text
    with pytest.raises(DatasetError, match="coco-panoptic not found under"):
        load_coco_panoptic(tmp_path, "val")
    written = write_coco_panoptic(tmp_path)
    written.json_path.rename(written.json_path.with_suffix(".bak"))
    with pytest.raises(DatasetError, match=r"but not .*annotations/panoptic_val2017\.json"):
        load_coco_panoptic(tmp_path, "val")


def _edit_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_coco_panoptic_content_errors(tmp_path: Path) -> None:
    written = write_coco_panoptic(tmp_path)
    (written.png_dir / "000000000285.png").rename(written.png_dir / "x.png")
    with pytest.raises(DatasetError, match=r"missing files named in .*: 1, e\.g\. .*285\.png"):
        load_coco_panoptic(tmp_path, "val")
    (written.png_dir / "x.png").rename(written.png_dir / "000000000285.png")

    def unknown_category(data: dict[str, Any]) -> None:
        data["annotations"][0]["segments_info"][0]["category_id"] = 12  # a gap in COCO's ids

    _edit_json(written.json_path, unknown_category)
    with pytest.raises(DatasetError, match="category_id 12"):
        load_coco_panoptic(tmp_path, "val")

    def drop_person(data: dict[str, Any]) -> None:
        data["annotations"][0]["segments_info"][0]["category_id"] = 1
        del data["annotations"][0]["segments_info"][1]  # person #2 is in the PNG only

    _edit_json(written.json_path, drop_person)
    ds = load_coco_panoptic(tmp_path, "val")
    with pytest.raises(DatasetError, match=f"does not list: {0x3F2F1F}"):
        ds[0]
    np.testing.assert_array_equal(ds[1].label, written.labels["000000000285"])

    written.json_path.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_coco_panoptic(tmp_path, "val")


def test_coco_panoptic_png_must_be_rgb(tmp_path: Path) -> None:
    written = write_coco_panoptic(tmp_path)
    Image.fromarray(np.zeros((40, 56), dtype=np.uint8)).save(written.png_dir / "000000000139.png")
    with pytest.raises(DatasetError, match="is a L image"):
        load_coco_panoptic(tmp_path, "val").label(0)


# --------------------------------------------------------------------------------------------------
# samadapter train
# --------------------------------------------------------------------------------------------------


def test_open_training_dataset_coco_splits(tmp_path: Path) -> None:
    write_coco_stuff(tmp_path / "s", "val2017", n=1)
    write_coco_stuff(tmp_path / "s2", "train2017", n=2)
    assert len(open_training_dataset("coco-stuff", tmp_path / "s", "val")) == 1
    assert len(open_training_dataset("coco-stuff", tmp_path / "s2", None)) == 2
    write_coco_panoptic(tmp_path / "p", "val2017")
    ds = open_training_dataset("coco-panoptic", tmp_path / "p", "val2017")
    assert len(ds) == 2 and len(ds.vocab) == 133
    with pytest.raises(DatasetError, match="panoptic_train2017"):
        open_training_dataset("coco-panoptic", tmp_path / "p", None)
    with pytest.raises(ConfigError, match="--data-root"):
        open_training_dataset("coco-stuff", None, None)


def test_train_on_coco_panoptic_end_to_end(tmp_path: Path) -> None:
    write_coco_panoptic(tmp_path / "data", "train2017")
    app = typer.Typer()
    app.command()(train)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "--dataset",
            "coco-panoptic",
            "--data-root",
            str(tmp_path / "data"),
            "--clip",
            "tiny-random",
            "--clip-size",
            "64",
            "--steps",
            "2",
            "--batch-size",
            "1",
            "--warmup-steps",
            "1",
            "--threads",
            "1",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--output",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "model_final.pth").is_file()
    classes = (out / "classes.txt").read_text(encoding="utf-8").splitlines()
    assert len([line for line in classes if line.strip()]) == 133


def test_benchmark_scores_coco_panoptic_and_stuff(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from samadapter.cli.main import app
    from samadapter.data.coco import load_coco_panoptic, load_coco_stuff
    from samadapter.eval.benchmark import Method, oracle_classifier, run_benchmark

    write_coco_panoptic(tmp_path / "p")
    write_coco_stuff(tmp_path / "s")
    for ds in (
        load_coco_panoptic(tmp_path / "p", "val2017"),
        load_coco_stuff(tmp_path / "s", "val2017"),
    ):
        oracle = Method("oracle", oracle_classifier(len(ds.vocab)))
        result = run_benchmark(ds, tmp_path / f"o{len(ds.vocab)}", methods=[oracle], masks="gt")
        assert result.metrics()["gt/oracle"].miou == 100
    out = CliRunner().invoke(
        app,
        [
            "benchmark",
            "--dataset",
            "coco-panoptic",
            "--root",
            str(tmp_path / "p"),
            "--masks",
            "gt",
            "--preset",
            "tiny-random",
            "--device",
            "cpu",
            "-o",
            str(tmp_path / "cli"),
        ],
    )
    assert out.exit_code == 0, out.stderr
    assert (tmp_path / "cli" / "metrics.json").exists()

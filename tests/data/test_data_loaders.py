"""ADE20K-150 / ADE20K-847 / folder loaders read back exactly what the synthetic writers wrote."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import synth_data  # tests/synth_data.py (tests/ is on sys.path via its conftest)
import tifffile
from PIL import Image

from samadapter.data.ade20k import load_ade20k
from samadapter.data.base import IGNORE
from samadapter.data.folder import FolderDataset, label_lookup, read_label_file
from samadapter.errors import ConfigError, DatasetError
from samadapter.vocab import load_builtin, read_classes_file


def load_synth() -> ModuleType:
    """The synthetic-dataset writer shared by the data, eval and CLI tests."""
    return synth_data


synth = load_synth()


def test_ade150_reads_back_labels_and_ignore(tmp_path: Path) -> None:
    written = synth.write_ade150(tmp_path)
    ds = load_ade20k(tmp_path, "ade20k-150")
    assert ds.vocab.name == "ade150" and len(ds.vocab) == 150
    assert ds.names() == written.names and len(ds) == 3
    for i, name in enumerate(written.names):
        sample = ds[i]
        assert sample.name == name
        assert sample.label.dtype == np.int32
        np.testing.assert_array_equal(sample.label, written.labels[name])
        np.testing.assert_array_equal(ds.label(i), written.labels[name])
        assert sample.image.shape == (*written.labels[name].shape, 3)
        assert sample.image.dtype == np.uint8
    # pixel value = id: index 149 is 'id 150', the last class; 0 is ignore
    assert ds.vocab.ids[149] == 150
    assert (ds[0].label == 149).any() and (ds[0].label == IGNORE).any()


def test_ade150_root_may_be_the_dataset_folder_itself(tmp_path: Path) -> None:
    written = synth.write_ade150(tmp_path)
    ds = load_ade20k(tmp_path / "ADEChallengeData2016", "ade20k-150")
    assert ds.names() == written.names


def test_ade847_reads_16bit_tiff_value_is_id_minus_one(tmp_path: Path) -> None:
    written = synth.write_ade847(tmp_path)
    ds = load_ade20k(tmp_path, "ade20k-847")
    assert ds.vocab.name == "ade847" and len(ds.vocab) == 847
    for i, name in enumerate(written.names):
        np.testing.assert_array_equal(ds[i].label, written.labels[name])
    # value 846 (the largest) is class id 847, the last class; 65535 is ignore
    assert ds.vocab.ids[846] == 847
    raw = read_label_file(ds.label_paths[0])
    assert raw.dtype == np.uint16 and {846, 65535} <= set(np.unique(raw).tolist())
    assert (ds[0].label == 846).any() and (ds[0].label == IGNORE).any()


def test_folder_reads_nested_names_offset_and_ignore(tmp_path: Path) -> None:
    written = synth.write_folder(tmp_path, offset=1, ignore=255)
    vocab = read_classes_file(tmp_path / "classes.txt")
    ds = FolderDataset.from_folders(
        tmp_path / "images", tmp_path / "labels", vocab, ignore_index=255, label_offset=1
    )
    assert ds.names() == written.names
    assert "city/img_1" in ds.names()
    for i, name in enumerate(ds.names()):
        sample = ds[i]
        np.testing.assert_array_equal(sample.label, written.labels[name])
        np.testing.assert_array_equal(sample.image, written.images[name])  # PNG: lossless


def test_folder_offset_zero_and_other_ignore_value(tmp_path: Path) -> None:
    written = synth.write_folder(tmp_path, offset=0, ignore=0, nested=False)
    vocab = read_classes_file(tmp_path / "classes.txt")  # ids 1..4 = pixel values
    ds = FolderDataset.from_folders(
        tmp_path / "images", tmp_path / "labels", vocab, ignore_index=0, label_offset=0
    )
    for i, name in enumerate(ds.names()):
        np.testing.assert_array_equal(ds[i].label, written.labels[name])


def test_label_lookup_maps_ids_and_rejects_clashes() -> None:
    vocab = load_builtin("ade150")
    lut = label_lookup(vocab, ignore_index=0, label_offset=0)
    assert lut[0] == IGNORE and lut[1] == 0 and lut[150] == 149 and lut[151] == -2
    lut = label_lookup(load_builtin("ade847"), ignore_index=65535, label_offset=1)
    assert lut[0] == 0 and lut[846] == 846 and lut[65535] == IGNORE
    with pytest.raises(ConfigError, match="both --ignore-index and class"):
        label_lookup(vocab, ignore_index=1, label_offset=0)
    with pytest.raises(ConfigError, match="pixel value -1"):
        label_lookup(vocab, ignore_index=255, label_offset=2)


def test_missing_root_names_the_expected_paths_and_the_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as e:
        load_ade20k(tmp_path / "nowhere", "ade20k-150")
    text = str(e.value)
    assert "does not exist" in text
    assert "ADEChallengeData2016/images/validation/*.jpg" in text
    assert "ADEChallengeData2016.zip" in text


def test_wrong_layout_says_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "ADE20K_2021_17_01" / "images" / "validation").mkdir(parents=True)
    with pytest.raises(DatasetError) as e:
        load_ade20k(tmp_path, "ade20k-847")
    text = str(e.value)
    assert "ADE20K_2021_17_01/images_detectron2/validation/*.jpg" in text
    assert "annotations_detectron2/validation/*.tif" in text
    assert "prepare_ade20k_full_sem_seg.py" in text


def test_images_without_annotations_folder(tmp_path: Path) -> None:
    synth.write_ade150(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "ADEChallengeData2016" / "annotations")
    with pytest.raises(DatasetError, match="annotations/validation"):
        load_ade20k(tmp_path, "ade20k-150")


def test_an_image_without_its_label_map(tmp_path: Path) -> None:
    synth.write_ade150(tmp_path)
    (
        tmp_path / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000002.png"
    ).unlink()
    with pytest.raises(DatasetError, match=r"1 of 3 images .* no label map.*ADE_val_00000002"):
        load_ade20k(tmp_path, "ade20k-150")


def test_unknown_pixel_value_is_an_error_naming_file_and_value(tmp_path: Path) -> None:
    written = synth.write_folder(tmp_path, nested=False)
    vocab = read_classes_file(tmp_path / "classes.txt")
    path = tmp_path / "labels" / f"{written.names[0]}.png"
    raw = np.array(Image.open(path))
    raw[0, 0] = 77
    Image.fromarray(raw).save(path)
    ds = FolderDataset.from_folders(
        tmp_path / "images", tmp_path / "labels", vocab, ignore_index=255, label_offset=1
    )
    with pytest.raises(DatasetError, match=r"img_0\.png holds pixel values that are no class: 77"):
        ds.label(0)


def test_label_size_must_match_image(tmp_path: Path) -> None:
    written = synth.write_folder(tmp_path, nested=False)
    vocab = read_classes_file(tmp_path / "classes.txt")
    path = tmp_path / "labels" / f"{written.names[0]}.png"
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(path)
    ds = FolderDataset.from_folders(
        tmp_path / "images", tmp_path / "labels", vocab, ignore_index=255, label_offset=1
    )
    with pytest.raises(DatasetError, match="must match its image's size"):
        ds[0]


def test_rgb_label_maps_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    with pytest.raises(DatasetError, match="is a RGB image"):
        read_label_file(path)


def test_read_label_file_formats(tmp_path: Path) -> None:
    a = np.array([[0, 1], [2, 300]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", a)
    Image.fromarray(a).save(tmp_path / "a.png")
    p = Image.fromarray(np.array([[0, 1], [2, 3]], np.uint8))
    p.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    p.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_label_file(tmp_path / "a.tif"), a)
    np.testing.assert_array_equal(read_label_file(tmp_path / "a.png"), a)
    np.testing.assert_array_equal(read_label_file(tmp_path / "p.png"), [[0, 1], [2, 3]])
    with pytest.raises(DatasetError, match="label map not found"):
        read_label_file(tmp_path / "missing.png")


def test_folder_pairs_cityscapes_style_names(tmp_path: Path) -> None:
    from PIL import Image

    from samadapter.vocab import parse_classes

    (tmp_path / "img" / "city").mkdir(parents=True)
    (tmp_path / "lbl" / "city").mkdir(parents=True)
    label = np.array([[0, 1], [1, 255]], dtype=np.uint8)
    for i in range(2):
        Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(
            tmp_path / "img" / "city" / f"city_00{i}_leftImg8bit.png"
        )
        Image.fromarray(label).save(
            tmp_path / "lbl" / "city" / f"city_00{i}_gtFine_labelTrainIds.png"
        )
    vocab = parse_classes("road,sidewalk")
    with pytest.raises(DatasetError, match="--label-name-suffix"):
        FolderDataset.from_folders(tmp_path / "img", tmp_path / "lbl", vocab, label_offset=1)
    ds = FolderDataset.from_folders(
        tmp_path / "img",
        tmp_path / "lbl",
        vocab,
        label_offset=1,
        image_name_suffix="_leftImg8bit",
        label_name_suffix="_gtFine_labelTrainIds",
    )
    assert ds.names() == ["city/city_000", "city/city_001"]
    assert ds[1].label.tolist() == [[0, 1], [1, -1]]

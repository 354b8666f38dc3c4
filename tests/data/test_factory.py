"""open_dataset: one name -> dataset dispatch for benchmark and train."""

from __future__ import annotations

from pathlib import Path

import pytest
import synth_data  # tests/synth_data.py (tests/ is on sys.path via its conftest)

from samadapter.data.factory import open_dataset
from samadapter.errors import ConfigError
from samadapter.vocab import read_classes_file


def test_folder_from_its_root_or_from_two_folders(tmp_path: Path) -> None:
    written = synth_data.write_folder(tmp_path / "f", n=3, offset=1)
    vocab = read_classes_file(tmp_path / "f" / "classes.txt")
    by_root = open_dataset("folder", tmp_path / "f", vocab=vocab, label_offset=1)
    by_folders = open_dataset(
        "folder",
        None,
        images=tmp_path / "f" / "images",
        labels=tmp_path / "f" / "labels",
        vocab=vocab,
        label_offset=1,
    )
    assert sorted(by_root.names()) == sorted(by_folders.names()) == written.names
    name = written.names[0]
    assert (by_root[by_root.names().index(name)].label == written.labels[name]).all()


def test_ade20k_val_is_the_validation_split(tmp_path: Path) -> None:
    written = synth_data.write_ade150(tmp_path / "ade", n=2)
    ds = open_dataset("ade20k-150", tmp_path / "ade", "val")
    assert len(ds) == 2 and len(ds.vocab) == 150 and ds.names() == written.names


def test_synthetic_splits_have_their_own_seed_and_size() -> None:
    train = open_dataset("synthetic", None, synthetic_images=40)
    val = open_dataset("synthetic", None, "Validation", synthetic_images=40)
    assert (len(train), len(val)) == (40, 10)
    assert train.names()[0] == "synthetic-0/00000" and val.names()[0] == "synthetic-1/00000"
    assert len(open_dataset("synthetic", None, "test", synthetic_images=4)) == 8


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("coco", Path(".")), {}, "unknown dataset 'coco'"),
        (("ade20k-150", None), {}, "ade20k-150 needs its folder"),
        (("folder", None), {}, "folder needs its folder"),
        (("folder", Path(".")), {}, "folder needs its images, labels and classes"),
        (("synthetic", None, "holdout"), {}, "unknown synthetic split 'holdout'"),
    ],
)
def test_what_is_missing_is_named(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_dataset(*args, **kwargs)

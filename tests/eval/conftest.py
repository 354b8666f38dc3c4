"""Synthetic datasets for the benchmark tests (written by tests/synth_data.py)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import synth_data  # tests/synth_data.py (tests/ is on sys.path via its conftest)

from samadapter.data.folder import FolderDataset
from samadapter.vocab import read_classes_file


def load_synth() -> ModuleType:
    """The synthetic-dataset writer shared by the data, eval and CLI tests."""
    return synth_data


@pytest.fixture
def synth() -> ModuleType:
    return load_synth()


@pytest.fixture
def folder_ds(tmp_path: Path, synth: ModuleType) -> FolderDataset:
    """Three small images (one in a sub-folder), 4 classes, 255 = ignore, 0-based values."""
    root = tmp_path / "data"
    synth.write_folder(root)
    return FolderDataset.from_folders(
        root / "images",
        root / "labels",
        read_classes_file(root / "classes.txt"),
        ignore_index=255,
        label_offset=1,
    )

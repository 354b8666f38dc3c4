"""Synthetic datasets for the benchmark tests (written by tests/data/synth.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from samadapter.data.folder import FolderDataset
from samadapter.vocab import read_classes_file


def load_synth() -> ModuleType:
    """tests/data/synth.py, imported once under a private name."""
    name = "samadapter_tests_synth"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "data" / "synth.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def synth() -> ModuleType:
    return load_synth()


@pytest.fixture
def folder_ds(tmp_path: Path, synth: ModuleType) -> FolderDataset:
    """Three small images (one in a sub-folder), 4 classes, 255 = ignore, 0-based values."""
    root = tmp_path / "data"
    synth.write_folder(root)
    return FolderDataset.from_folders(root / "images", root / "labels",
                                      read_classes_file(root / "classes.txt"),
                                      ignore_index=255, label_offset=1)

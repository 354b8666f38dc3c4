"""The real readers of our export formats (pycocotools, supervision, ultralytics, label-studio-sdk,
datumaro), for tests that check our files with the tools users run.

CI sets ``SAMADAPTER_REAL_READERS=1`` (``.ci/run`` installs them): a missing reader is then an
error, never a skip. Elsewhere a test whose reader is not installed is skipped.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from types import ModuleType

import pytest


def real_reader(module: str) -> ModuleType:
    """Import ``module`` (skip the test when it is missing, unless CI requires it)."""
    if module.startswith("ultralytics"):
        # Offline (no DNS probe at import) and no settings file in the user's home.
        os.environ["YOLO_OFFLINE"] = "1"
        os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="ultralytics-"))
    if os.environ.get("SAMADAPTER_REAL_READERS") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"real reader {module} not installed "
                                              "(pip install -e .[readers], see .ci/run)")

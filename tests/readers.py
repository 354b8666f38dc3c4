"""The real readers of our export formats (pycocotools, supervision, ultralytics, label-studio-sdk,
datumaro), for tests that check our files with the tools users run.

CI sets ``SAMADAPTER_REAL_READERS=1`` (``.ci/run`` installs them): a missing reader is then an
error, never a skip. Elsewhere a test whose reader is not installed is skipped.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def real_reader(module: str) -> ModuleType:
    """Import ``module`` (skip the test when it is missing, unless CI requires it)."""
    assert not module.startswith("ultralytics"), "use in_ultralytics (a separate process)"
    if os.environ.get("SAMADAPTER_REAL_READERS") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(
        module,
        reason=f"real reader {module} not installed (pip install -e .[readers], see .ci/run)",
    )


def in_ultralytics(script: str, tmp_path: Path, **inputs: Any) -> Any:
    """Run ``script`` in a fresh Python with ultralytics imported; return what it prints as JSON.

    Importing ultralytics patches ``PIL.Image.open``, ``cv2.imread`` and ``torch.load`` for the
    whole process (and tries to pip-install plugins on unknown images), so it never runs inside
    the test process. The script sees ``ARGS`` (``inputs``, JSON types) and ends with
    ``print(json.dumps(...))``.
    """
    if (
        os.environ.get("SAMADAPTER_REAL_READERS") != "1"
        and importlib.util.find_spec("ultralytics") is None
    ):
        pytest.skip("real reader ultralytics not installed (see .ci/run)")
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path / "yolo-config")}
    prelude = "import json, sys\nARGS = json.loads(sys.argv[1])\nimport ultralytics\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script), json.dumps(inputs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])

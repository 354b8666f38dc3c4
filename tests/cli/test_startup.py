"""Start-up: argument parsing, --help, --version, vocab and weights listing never load torch.

Each check runs a fresh interpreter (``sys.modules`` of the test process already holds torch) and
asserts on the modules it loaded, not on time: the timings are printed by
``benchmarks/cli_startup.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "segment_anything", "sam2", "open_clip", "sympy", "cv2", "numpy")

_PROBE = """
import sys
from samadapter.cli.main import app
try:
    app(sys.argv[1:], prog_name="samadapter")
except SystemExit as e:
    code = e.code
else:
    code = 0
loaded = [m for m in {heavy!r} if m in sys.modules]
print("LOADED=" + ",".join(loaded), file=sys.stderr)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SAMADAPTER_OFFLINE": "1", **extra}
    return env


def _loaded(stderr: str) -> list[str]:
    line = [x for x in stderr.splitlines() if x.startswith("LOADED=")][-1]
    return [m for m in line[len("LOADED=") :].split(",") if m]


def test_importing_the_cli_loads_no_heavy_module() -> None:
    code = (
        "import sys, samadapter.cli.main, samadapter; "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True
    )
    assert proc.stdout.strip() == "[]"


def test_segmenter_is_still_reachable_lazily() -> None:
    code = (
        "import sys, samadapter; assert 'torch' not in sys.modules; "
        "S = samadapter.Segmenter; assert 'torch' in sys.modules; print(S.__name__)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True
    )
    assert proc.stdout.strip() == "Segmenter"


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["vocab", "list"],
        ["vocab", "show", "voc21"],
        ["weights", "list"],
        ["segment", "--help"],
        ["classify", "--help"],
        ["relabel", "--help"],
        ["benchmark", "--help"],
        ["train", "--help"],
        ["weights", "--help"],
    ],
)
def test_light_commands_load_no_heavy_module(tmp_path: Path, argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), *argv],
        capture_output=True,
        text=True,
        env=_env(SAMADAPTER_HOME=str(tmp_path)),
        cwd=tmp_path,
    )
    assert _loaded(proc.stderr) == []
    assert proc.stdout.strip()  # it did print its help / table / version


def test_shell_completion_loads_no_heavy_module_and_completes_choices(tmp_path: Path) -> None:
    env = _env(
        _SAMADAPTER_COMPLETE="complete_bash",
        COMP_WORDS="samadapter segment --pre",
        COMP_CWORD="2",
        SAMADAPTER_HOME=str(tmp_path),
    )
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert _loaded(proc.stderr) == []
    assert set(proc.stdout.split()) == {"--preset", "--pred-iou-thresh", "--precision"}


def test_python_m_samadapter_version_loads_no_heavy_module() -> None:
    code = (
        "import runpy, sys; sys.argv = ['samadapter', '--version']\n"
        "try:\n    runpy.run_module('samadapter', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert proc.stdout.startswith("samadapter 0.")
    assert proc.stderr.strip().splitlines()[-1] == "[]"

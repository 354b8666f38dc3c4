"""Start-up time of the ``samadapter`` command line (target: under 1 s, torch never loaded).

Not a test: it prints the median wall time of fresh processes for each light command, the
modules from the heavy list each one loaded, and, for scale, the time of ``import torch`` alone.

    python benchmarks/cli_startup.py            # 5 runs of each
    python benchmarks/cli_startup.py --runs 11
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HEAVY = ("torch", "torchvision", "segment_anything", "sam2", "open_clip", "sympy")
COMMANDS: list[tuple[str, list[str], dict[str, str]]] = [
    ("import samadapter.cli.main", [], {}),
    ("samadapter --help", ["--help"], {}),
    ("samadapter --version", ["--version"], {}),
    ("samadapter segment --help", ["segment", "--help"], {}),
    ("samadapter train --help", ["train", "--help"], {}),
    ("samadapter vocab list", ["vocab", "list"], {}),
    ("samadapter vocab show ade150", ["vocab", "show", "ade150"], {}),
    ("samadapter weights list", ["weights", "list"], {}),
    (
        "TAB: samadapter segment --pre",
        [],
        {
            "_SAMADAPTER_COMPLETE": "complete_bash",
            "COMP_WORDS": "samadapter segment --pre",
            "COMP_CWORD": "2",
        },
    ),
    (
        "TAB: samadapter segment --sam ",
        [],
        {
            "_SAMADAPTER_COMPLETE": "complete_bash",
            "COMP_WORDS": "samadapter segment --sam ",
            "COMP_CWORD": "3",
        },
    ),
]
PROBE = f"""
import sys
from samadapter.cli.main import app
if len(sys.argv) > 1 or "_SAMADAPTER_COMPLETE" in __import__("os").environ:
    try:
        app(sys.argv[1:], prog_name="samadapter")
    except SystemExit:
        pass
print(",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
"""


def _time(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, str]:
    seconds = []
    loaded = ""
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env)
        seconds.append(time.perf_counter() - t0)
        loaded = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    return statistics.median(seconds), loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="samadapter-startup-")
    base = {**os.environ, "SAMADAPTER_HOME": home, "SAMADAPTER_OFFLINE": "1"}
    python, _ = _time([sys.executable, "-c", "pass"], base, args.runs)
    torch_s, _ = _time([sys.executable, "-c", "import torch"], base, args.runs)
    print(f"{'command':<34} {'median s':>9}  heavy modules loaded")
    print(f"{'python -c pass':<34} {python:>9.3f}")
    print(f"{'python -c import torch':<34} {torch_s:>9.3f}  (for scale)")
    worst = 0.0
    for name, cli_args, extra in COMMANDS:
        seconds, loaded = _time(
            [sys.executable, "-c", PROBE, *cli_args], {**base, **extra}, args.runs
        )
        worst = max(worst, seconds)
        print(f"{name:<34} {seconds:>9.3f}  {loaded or '-'}")
    verdict = "PASS" if worst < 1.0 else "FAIL"
    print(f"{verdict}: slowest light command {worst:.3f} s (target < 1 s, no heavy module)")


if __name__ == "__main__":
    main()

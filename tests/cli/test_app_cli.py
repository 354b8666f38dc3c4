"""``samadapter app``: arguments, the address it binds, and a real start on the tiny models."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from typer.testing import CliRunner

from samadapter.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["app", "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    for option in ("OUTPUT_DIR", "--preset", "--host", "--port", "--device"):
        assert option in result.stdout


def test_a_folder_that_is_no_run_is_one_error_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["app", str(tmp_path), "--preset", "tiny-random"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: {tmp_path} holds no run (per-image/ missing) (give the --output "
        "folder of a samadapter segment run)"
    ]


def _start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "samadapter",
            "app",
            "--preset",
            "tiny-random",
            "--device",
            "cpu",
            *args,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _lines_until(child: subprocess.Popen[str], marker: str) -> list[str]:
    assert child.stderr is not None
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = child.stderr.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if marker in line:
            return lines
    raise AssertionError("\n".join(lines))


def test_listening_beyond_this_machine_warns_and_serves() -> None:
    child = _start("--host", "0.0.0.0", "--port", "0")
    try:
        lines = _lines_until(child, "open http://")
        assert lines[0].startswith("warning: listening on 0.0.0.0: anyone who can reach")
        address = lines[-1].split("open ", 1)[1].split(" ", 1)[0]
        assert address.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(address + "/api/info", timeout=30) as reply:
            assert b'"allow_open": false' in reply.read()
    finally:
        child.terminate()
        child.wait(30)


def test_a_port_in_use_is_one_error_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            app, ["app", "--preset", "tiny-random", "--device", "cpu", "--port", str(port)]
        )
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use) "
        "(choose another --port, or stop what uses it)"
    ]  # refused before the models load: no other line

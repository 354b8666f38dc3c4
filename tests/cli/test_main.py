"""The entry point: arguments that are not UTF-8 are one clear error, before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from samadapter.cli.main import undecodable_argument


def test_undecodable_argument_is_found_and_shown_as_bytes() -> None:
    latin1 = os.fsdecode(b"caf\xe9.jpg")  # what Python makes of Latin-1 bytes in argv
    assert undecodable_argument(["segment", "ok.jpg", latin1]) == "caf\\xe9.jpg"
    assert undecodable_argument(["segment", "café.jpg", "-c", "猫"]) is None


def test_latin1_argument_is_one_error_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "samadapter",
            "segment",
            b"caf\xe9.jpg",
            "-c",
            "cat",
            "-o",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.decode("utf-8").strip().splitlines()
    assert lines == [
        "error: command-line argument 'caf\\xe9.jpg' is not valid UTF-8 text; samadapter writes "
        "names into JSON and XML, which need UTF-8 (rename the file to a UTF-8 name, e.g. convmv "
        "-f latin1 -t utf8 --notest FILE, or retype the text)"
    ]
    assert not (tmp_path / "out").exists() and proc.stdout == b""

"""``--help`` at 80 columns: every option name whole, plain metavars, choices shown and
completed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from samadapter.cli import choices
from samadapter.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


def _commands() -> list[tuple[list[str], Any]]:
    """``(argv prefix, click command)`` of the root, every command and every sub-command."""
    found: list[tuple[list[str], Any]] = []

    def walk(prefix: list[str], command: Any) -> None:
        found.append((prefix, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk([*prefix, name], sub)

    walk([], get_command(app))
    return found


COMMANDS = _commands()


def _help(argv: list[str], columns: int = 80) -> str:
    result = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_command_is_covered() -> None:
    names = {" ".join(argv) for argv, _ in COMMANDS}
    assert {
        "segment",
        "classify",
        "relabel",
        "benchmark",
        "train",
        "weights list",
        "weights download",
        "weights verify",
        "vocab list",
        "vocab show",
    } <= names


@pytest.mark.parametrize(
    ("argv", "command"), COMMANDS, ids=[" ".join(argv) or "root" for argv, _ in COMMANDS]
)
def test_help_at_80_columns_shows_every_option_name_whole(argv: list[str], command: Any) -> None:
    text = _help(argv)
    assert max(len(line) for line in text.splitlines()) <= 80
    ctx = typer.core._click.Context(command, info_name="samadapter")
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        for name in (*param.opts, *param.secondary_opts):
            if name.startswith("-"):
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), (name, text)
    for python_type in ("<bool>", "<str>", "<path>", "<int", "<float", "<list["):
        assert python_type not in text, (python_type, text)
    assert "{" not in text.splitlines()[0]  # the usage line: IMAGES..., not {images}...
    assert "…" not in text  # rich's cut mark


@pytest.mark.parametrize("command", ["segment", "classify"])
def test_usage_names_the_images(command: str) -> None:
    assert f"Usage: samadapter {command} [OPTIONS] IMAGES...\n" in _help([command])


def test_choices_are_shown() -> None:
    text = " ".join(_help(["segment"], columns=200).split())
    assert "--preset [auto|fast|accurate|demo|tiny-random]" in text
    assert "--device [auto|cpu|cuda|mps]" in text
    assert "--classifier [mask-adapter|mask-pooling]" in text
    for names in (
        choices.sam_names(),
        choices.adapter_names(),
        choices.clip_names(),
        choices.vocab_names(),
    ):
        assert len(names) >= 2
        for name in names:
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), name
    assert {"vit_b", "vit_h", "sam2.1_hiera_large"} <= set(choices.sam_names())
    assert {"fcclip_convnext_large", "demo", "none"} <= set(choices.adapter_names())
    assert {"ade150", "coco-stuff"} <= set(choices.vocab_names())


def _complete(words: str) -> list[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "_SAMADAPTER_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    code = "import sys\nfrom samadapter.cli.main import main\nsys.argv = ['samadapter']\nmain()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return proc.stdout.split()


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("samadapter segment x.jpg --preset ", ["auto", "fast", "accurate", "demo", "tiny-random"]),
        ("samadapter segment x.jpg --sam vit", ["vit_b", "vit_l", "vit_h"]),
        (
            "samadapter segment x.jpg --sam sam2",
            [
                "sam2.1_hiera_tiny",
                "sam2.1_hiera_small",
                "sam2.1_hiera_base_plus",
                "sam2.1_hiera_large",
            ],
        ),
        (
            "samadapter classify x.jpg --adapter ",
            [
                "fcclip_convnext_large",
                "demo",
                "maftp_convnext_large",
                "maftp_convnext_base",
                "none",
                "tiny-random",
            ],
        ),
        ("samadapter benchmark --clip convnext_b", ["convnext_base_w_320"]),
        ("samadapter segment x.jpg --vocab coco", ["coco-stuff", "coco-panoptic"]),
        ("samadapter segment x.jpg --device c", ["cpu", "cuda"]),
    ],
)
def test_shell_completion_offers_the_names(words: str, expected: list[str]) -> None:
    assert _complete(words) == expected

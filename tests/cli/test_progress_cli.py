"""Progress and messages: on stderr, one plain unwrapped line per image when not a terminal."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from samadapter.cli.main import app

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "chelsea.jpg"
TINY = ["--preset", "tiny-random", "--device", "cpu"]


def test_a_piped_run_logs_one_line_per_image_on_stderr_and_nothing_on_stdout(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / "a.jpg")
    (folder / "b.jpg").write_bytes(b"not an image")
    shutil.copy(SAMPLE, folder / "c.jpg")
    out = tmp_path / ("a_rather_long_output_folder_name_" * 4) / "results"
    assert len(str(out)) > 120
    result = CliRunner().invoke(
        app,
        ["segment", str(folder), "-c", "cat", *TINY, "--max-size", "128", "-o", str(out)],
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 1, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    ready = next(i for i, line in enumerate(lines) if line.startswith("models ready"))
    summary = next(i for i, line in enumerate(lines) if line.startswith("2 done, 0 skipped"))
    between = lines[ready + 1 : summary]
    assert len(between) == 3, between
    done = [
        re.fullmatch(r"\[([123])/3\] ([ac]\.jpg): \d+ masks in \d+\.\d s", line) for line in between
    ]
    found = [m.groups() for m in done if m]  # [i/3]: the i-th image to finish
    assert sorted(name for _, name in found) == ["a.jpg", "c.jpg"], between
    assert len({index for index, _ in found}) == 2
    assert [line for line in between if line.startswith("error: ")] == [
        line for line in between if "b.jpg" in line
    ]
    assert f"outputs in {out}/" in result.stderr  # the long path is never split over lines


def test_quiet_prints_errors_only(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "segment",
            str(SAMPLE),
            "-c",
            "cat",
            *TINY,
            "--max-size",
            "128",
            "-o",
            str(tmp_path),
            "--quiet",
        ],
    )
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""


def test_a_resumed_image_is_logged_as_skipped(tmp_path: Path) -> None:
    args = ["segment", str(SAMPLE), "-c", "cat", *TINY, "--max-size", "128", "-o", str(tmp_path)]
    assert CliRunner().invoke(app, args).exit_code == 0
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and result.stdout == ""
    assert re.search(
        r"^\[1/1\] chelsea\.jpg: skipped, finished earlier \(\d+ masks\)$", result.stderr, re.M
    ), result.stderr


class _FakeRunner:
    """Reports two finished images and one failure, as BatchRunner.run does."""

    def run(self, items, on_stage, on_image):  # type: ignore[no-untyped-def]
        from samadapter.batch import BatchSummary, ImageRecord

        records = [
            ImageRecord("a.jpg", "a.jpg", "done", masks=3, seconds={"sam": 1.25}),
            ImageRecord("b.jpg", "b.jpg", "failed", error="broken"),
            ImageRecord("c.jpg", "c.jpg", "skipped", masks=2),
        ]
        for record in records:
            on_stage(f"SAM {record.file}")
            on_image(record, None)
        return BatchSummary(records, Path("out"))


def test_a_terminal_gets_the_bar_and_a_log_gets_lines(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import io

    from rich.console import Console

    from samadapter.cli import common, progress, segment

    for terminal in (True, False):
        buffer = io.StringIO()
        console = Console(
            file=buffer, force_terminal=terminal, soft_wrap=True, width=60, color_system=None
        )
        monkeypatch.setattr(progress, "console", console)
        monkeypatch.setattr(common, "err_console", console)
        segment.run_with_progress(_FakeRunner(), ["a", "b", "c"], quiet=False)  # type: ignore[arg-type]
        text = buffer.getvalue()
        assert "error: b.jpg: broken - skipped" in text
        assert ("img/s" in text) is terminal  # the bar's rate column
        lines = (
            "[1/3] a.jpg: 3 masks in 1.2 s",
            "[3/3] c.jpg: skipped, finished earlier (2 masks)",
        )
        for line in lines:
            assert (line in text) is not terminal, (terminal, text)


def test_the_summary_explains_skipped_images_only_when_there_are_some(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import io

    from rich.console import Console

    from samadapter.batch import BatchSummary, ImageRecord
    from samadapter.cli import progress

    for statuses, expected in (
        (("done", "failed"), "1 done, 0 skipped, 1 failed\n"),
        (
            ("done", "skipped"),
            "1 done, 1 skipped (finished with the same settings; --overwrite to redo), 0 failed\n",
        ),
    ):
        buffer = io.StringIO()
        monkeypatch.setattr(progress, "console", Console(file=buffer, width=200, soft_wrap=True))
        records = [ImageRecord(f"{s}.jpg", s, s, 0, {}) for s in statuses]  # type: ignore[arg-type]
        progress.finish(BatchSummary(records, Path("out")), quiet=False)
        assert buffer.getvalue().startswith(expected)

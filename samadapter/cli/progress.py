"""Progress and summary of a batch command (``segment``, ``classify``, ``relabel``).

On a terminal a progress bar, elsewhere one plain line per image; then the run's summary and its
exit code. Everything goes to stderr (:data:`~samadapter.cli.common.console`).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from samadapter.cli.common import console, print_error

if TYPE_CHECKING:  # the heavy modules (torch) load inside the commands: --help stays instant
    from samadapter.batch import BatchRunner, BatchSummary, ImageRecord
    from samadapter.batch.ray_runner import RayBatch
    from samadapter.structures import SegmentationResult


def run_with_progress(
    runner: BatchRunner | RayBatch, items: list[Any], quiet: bool
) -> BatchSummary:
    """Run a batch, reporting each image when its outputs are written.

    On a terminal: a progress bar (images done/total, images/s, ETA, stage). Elsewhere (a log
    file, a pipe): one plain line per image instead, ``[i/n] NAME: M masks in S s``. A single
    image also gets its table of classes. All of it goes to stderr; failures are error lines.
    """
    from samadapter.io.summary import summary_table

    single = len(items) == 1
    live = console.is_terminal
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]{task.fields[stage]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet or not live,
        transient=True,
    ) as bar:
        task = bar.add_task("images", total=len(items), stage="", rate="")
        done = reported = 0

        def on_stage(text: str) -> None:
            bar.update(task, stage=escape(text[:60]))  # file names are not markup

        def on_image(record: ImageRecord, result: SegmentationResult | None) -> None:
            nonlocal done, reported
            reported += 1
            if record.status == "done":
                done += 1
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(task, advance=1, rate=f"{rate:.2f} img/s" if done else "")
            if record.status == "failed":
                print_error(f"{record.file}: {record.error} - skipped")
                return
            if quiet:
                return
            line = image_line(record, reported, len(items))
            if not live:
                console.print(line, markup=False, highlight=False)
            if single and result is not None:
                bar.console.print(summary_table(result, title=line if live else "classes"))

        return runner.run(items, on_stage=on_stage, on_image=on_image)


def image_line(record: ImageRecord, index: int, total: int) -> str:
    """``[i/n] NAME: M masks in S s`` (or ``... skipped, finished earlier``) for one image."""
    if record.status == "skipped":
        return f"[{index}/{total}] {record.file}: skipped, finished earlier ({record.masks} masks)"
    seconds = sum(record.seconds.values())
    return f"[{index}/{total}] {record.file}: {record.masks} masks in {seconds:.1f} s"


def finish(summary: BatchSummary, quiet: bool) -> int:
    """Print the run's summary; the exit code (0 all good, 1 some failed, 130 interrupted by
    Ctrl-C, 143 by SIGTERM)."""
    from samadapter.io.layout import FAILURES_FILE, MERGED_FILE, PER_IMAGE_DIR, RUN_FILE

    out = summary.out_dir
    if summary.interrupted:
        print_error(
            f"interrupted: finished outputs are complete in {out}; run the same command "
            "again to continue"
        )
        return summary.exit_code
    if not quiet:
        skipped = summary.count("skipped")
        if len(summary.records) > 1 or skipped:
            why = " (finished with the same settings; --overwrite to redo)" if skipped else ""
            console.print(
                f"{summary.count('done')} done, {skipped} skipped{why}, "
                f"{summary.count('failed')} failed"
            )
            masks: Counter[str] = Counter()
            images: Counter[str] = Counter()
            for record in summary.records:
                masks.update(record.classes)
                images.update(record.classes.keys())
            if masks:
                table = Table("class", "masks", "images", title="masks per class")
                for name, n in masks.most_common():
                    table.add_row(Text(name), str(n), str(images[name]))
                console.print(table)
        console.print(
            f"outputs in {escape(str(out))}/ (per image, under {PER_IMAGE_DIR}/: .json "
            f".overlay.png .semantic.png and a .masks folder; {MERGED_FILE}, "
            f"{RUN_FILE}, {FAILURES_FILE})"
        )
    return summary.exit_code

"""Per-class summary of one result, as rows and as a ``rich`` table for the terminal."""

from __future__ import annotations

import numpy as np
from rich.table import Table
from rich.text import Text

from samadapter.structures import SegmentationResult


def summary_rows(result: SegmentationResult) -> list[tuple[str, int, float, float]]:
    """One row per class that has masks.

    The pixel share counts each pixel once, for the class :meth:`SegmentationResult.semantic_map`
    gives it, so shares of overlapping masks do not add up to more than 100 %.

    Returns:
        ``(class name, number of masks, pixel share of the image in %, best score)`` tuples,
        largest share first (ties: more masks first, then by name).
    """
    n_pixels = max(1, result.image_size[0] * result.image_size[1])
    class_ids = result.class_ids.astype(np.int64)
    n_names = len(result.class_names)
    counts = np.bincount(class_ids, minlength=n_names) if len(class_ids) else np.zeros(n_names)
    pixels = result.class_pixels()
    rows = []
    for c in np.flatnonzero(counts):
        scores = result.scores[class_ids == c]
        finite = scores[np.isfinite(scores)]
        best = float(finite.max()) if finite.size else float("nan")
        rows.append(
            (result.class_names[int(c)], int(counts[c]), 100.0 * float(pixels[c]) / n_pixels, best)
        )
    rows.sort(key=lambda r: (-r[2], -r[1], r[0]))
    return rows


def summary_table(result: SegmentationResult, title: str) -> Table:
    """A ``rich`` table of :func:`summary_rows`.

    Args:
        result: the named masks.
        title: shown above the table, e.g. the image's file name.

    Returns:
        Table with columns class, masks, pixels %, best score, and a caption with the totals.
    """
    rows = summary_rows(result)
    table = Table(title=Text(title), title_justify="left")  # Text: no markup in names
    table.add_column("class", style="bold")
    table.add_column("masks", justify="right")
    table.add_column("pixels %", justify="right")
    table.add_column("best score", justify="right")
    for name, count, share, best in rows:
        table.add_row(
            Text(name), str(count), f"{share:.1f}", f"{best:.2f}" if np.isfinite(best) else "-"
        )
    covered = sum(r[2] for r in rows)
    table.caption = f"{len(result)} masks, {len(rows)} classes, {covered:.1f}% of pixels labelled"
    return table

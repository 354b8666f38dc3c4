"""The predictions store: what a benchmark writes into ``OUTPUT`` and reads back to resume.

::

    predictions/<masks>/<method>/run.json       what made them (checked when resuming)
    predictions/<masks>/<method>/<name>.png     16-bit PNG: class index + 1, 0 = unlabelled
    timings.csv                                 seconds per image and stage

Also the types the reports read: :class:`RunInfo` (one prediction set) and
:class:`BenchmarkResult` (what was scored). Files read back are untrusted: a bad one is a
:class:`~samadapter.errors.DatasetError` or a refused resume, never a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from samadapter.config import OUTPUT_NEUTRAL, fingerprint
from samadapter.errors import ConfigError, DatasetError, OutputError
from samadapter.eval.metrics import ConfusionMatrix, SegMetrics
from samadapter.io.atomic import (
    atomic_write,
    dumps_json,
    read_json_object,
    write_bytes_atomic,
    write_json_atomic,
)
from samadapter.io.layout import RUN_FILE
from samadapter.vocab import Vocabulary

__all__ = [
    "PREDICTION_ENCODING",
    "PREDICTION_FORMAT",
    "STAGE_ORDER",
    "BenchmarkResult",
    "RunInfo",
    "discover_runs",
    "read_prediction",
    "read_timings",
    "write_prediction",
    "write_timings",
]

PREDICTION_FORMAT = "samadapter-benchmark-predictions/1"
"""``format`` of a predictions folder's ``run.json``."""

PREDICTION_ENCODING = "16-bit grayscale PNG, pixel = class index + 1 (vocabulary order), 0 = none"
"""How prediction PNGs store a label map (8-bit PNGs with the same values are read too)."""

TIMINGS_FILE = "timings.csv"


@dataclass(frozen=True)
class RunInfo:
    """One set of predictions being scored.

    Attributes:
        key: unique name in the outputs: ``<masks>/<method>`` (or a folder name).
        method: the method's name.
        masks: ``sam``, ``gt`` or ``?`` (predictions from elsewhere).
        directory: the folder of prediction PNGs.
    """

    key: str
    method: str
    masks: str
    directory: Path

    @property
    def label(self) -> str:
        """``mask-adapter, SAM masks`` and the like, for reports."""
        masks = {"sam": "SAM masks", "gt": "ground-truth masks"}.get(self.masks)
        return f"{self.method}, {masks}" if masks else self.method


@dataclass
class BenchmarkResult:
    """What a benchmark (or a scoring of saved predictions) measured.

    Attributes:
        dataset: one line naming the data.
        vocab: the ``K`` classes.
        runs: the prediction sets scored, in report order.
        confusion: ``[K + 1, K]`` confusion matrix of each run, by key.
        names: the images scored, in order.
        computed: images whose predictions were computed in this call.
        skipped: images whose predictions were read from disk.
        timings: seconds by stage of every image timed (this and earlier calls), by image name.
        limit: ``--limit`` (``None``: all images).
        seed: the subset's seed.
        settings: what the predictions were made with (models, SAM and CLIP settings).
        output: the output folder.
    """

    dataset: str
    vocab: Vocabulary
    runs: list[RunInfo]
    confusion: dict[str, ConfusionMatrix]
    names: list[str]
    computed: int = 0
    skipped: int = 0
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    limit: int | None = None
    seed: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    output: Path | None = None

    def metrics(self) -> dict[str, SegMetrics]:
        """Metrics of each run, by key."""
        return {key: cm.metrics() for key, cm in self.confusion.items()}


def write_prediction(path: str | os.PathLike[str], pred: np.ndarray) -> Path:
    """Save a label map as a 16-bit PNG of class index + 1 (0 = unlabelled), atomically.

    Args:
        path: destination ``.png``.
        pred: ``[H, W]`` int class index ``0..K-1`` or ``-1``.

    Returns:
        ``path``.
    """
    if pred.size and int(pred.max()) >= 0xFFFF:
        raise ConfigError(f"{int(pred.max()) + 1} classes do not fit a 16-bit PNG")
    img = Image.fromarray((pred.astype(np.int64) + 1).astype(np.uint16))
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def read_prediction(path: str | os.PathLike[str], num_classes: int) -> np.ndarray:
    """Read a prediction PNG (see :func:`write_prediction`; 8-bit and paletted work too).

    Args:
        path: the ``.png``.
        num_classes: ``K``; values above ``K`` are an error.

    Returns:
        ``[H, W]`` int32 class index ``0..K-1`` or ``-1`` (unlabelled).

    Raises:
        DatasetError: unreadable file or values above ``K``.
    """
    p = Path(path)
    try:
        with Image.open(p) as img:
            arr = np.array(img)
    except FileNotFoundError:
        raise DatasetError(f"prediction not found: {p}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise DatasetError(
            f"cannot read prediction {p}: {e}", hint="delete it; a rerun recomputes it"
        ) from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise DatasetError(
            f"prediction {p} is not a single-channel label PNG", hint=PREDICTION_ENCODING
        )
    if arr.size and (int(arr.max()) > num_classes or int(arr.min()) < 0):
        bad = int(arr.max()) if int(arr.max()) > num_classes else int(arr.min())
        raise DatasetError(
            f"prediction {p} holds value {bad}, but there are only {num_classes} classes",
            hint=PREDICTION_ENCODING,
        )
    return arr.astype(np.int32) - 1


# --------------------------------------------------------------------------------------------------
# Timings
# --------------------------------------------------------------------------------------------------

STAGE_ORDER = (
    "read",
    "sam_encoder",
    "sam_decoder",
    "gt_masks",
    "text",
    "clip_dense",
    "classify",
    "semantic",
    "write",
    "score",
    "total",
)


def _stage_key(stage: str) -> tuple[int, str]:
    base = stage.split(":", 1)[0]
    return (STAGE_ORDER.index(base) if base in STAGE_ORDER else len(STAGE_ORDER), stage)


def read_timings(path: Path) -> dict[str, dict[str, float]]:
    """Rows of a ``timings.csv`` by image name (an unreadable or missing file gives none)."""
    rows: dict[str, dict[str, float]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return rows
    for row in csv.DictReader(io.StringIO(text)):
        name = row.pop("name", None)
        if not name:
            continue
        values: dict[str, float] = {}
        for k, v in row.items():
            if k and v not in (None, ""):
                try:
                    values[k] = float(v)
                except ValueError:
                    continue
        rows[name] = values
    return rows


def write_timings(path: Path, rows: Mapping[str, Mapping[str, float]]) -> Path:
    """Write ``timings.csv`` (``name`` then one column per stage, seconds) atomically."""
    stages = sorted({s for r in rows.values() for s in r}, key=_stage_key)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", *stages])
    for name in sorted(rows):
        r = rows[name]
        writer.writerow([name, *(f"{r[s]:.6f}" if s in r else "" for s in stages)])
    return write_bytes_atomic(path, buf.getvalue().encode("utf-8"))


# --------------------------------------------------------------------------------------------------
# Prediction folders
# --------------------------------------------------------------------------------------------------


def _run_record(
    method: str, masks: str, vocab: Vocabulary, settings: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "format": PREDICTION_FORMAT,
        "encoding": PREDICTION_ENCODING,
        "method": method,
        "masks": masks,
        "num_classes": len(vocab),
        "vocabulary": vocab.name,
        "vocab_fingerprint": vocab.fingerprint(),
        "settings": dict(settings),
    }


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted((set(old) | set(new)) - OUTPUT_NEUTRAL):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return out


def _prepare_run_dir(directory: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Create ``directory`` with its ``run.json``, or check that the one there matches."""
    run_file = directory / RUN_FILE
    new = {k: v for k, v in json.loads(dumps_json(record)).items() if k != "encoding"}
    if run_file.exists():
        old = read_json_object(run_file)
        if old is not None:
            old.pop("encoding", None)
            if fingerprint(old) == fingerprint(new):  # the rule every resumable command uses
                return
            diffs = _differences(old, new) or ["settings differ"]
        else:
            diffs = [f"{run_file} is unreadable"]
        if not overwrite:
            raise OutputError(
                f"{directory} holds predictions made differently ({diffs[0]}"
                f"{'; ...' if len(diffs) > 1 else ''})",
                hint="choose another --output, or pass --overwrite to redo them",
            )
        # Predictions of other settings must not survive next to the new ones.
        for old_png in directory.rglob("*.png"):
            old_png.unlink()
    write_json_atomic(run_file, record)


def _read_run_file(directory: Path) -> dict[str, Any] | None:
    data = read_json_object(directory / RUN_FILE)
    return data if data is not None and data.get("format") == PREDICTION_FORMAT else None


def discover_runs(predictions: str | os.PathLike[str]) -> list[tuple[RunInfo, dict[str, Any]]]:
    """The prediction sets in a folder.

    ``predictions`` may be one run's folder (it holds ``run.json``), a folder above several
    (``OUTPUT`` or ``OUTPUT/predictions``: every ``run.json`` up to three levels down), or a plain
    folder of label PNGs made elsewhere (:data:`PREDICTION_ENCODING`).

    Returns:
        ``(run, run.json content or {})`` pairs, sorted by key.

    Raises:
        DatasetError: the folder does not exist.
    """
    root = Path(predictions)
    if not root.is_dir():
        raise DatasetError(f"predictions folder not found: {root}", hint="check --predictions")
    record = _read_run_file(root)
    if record is not None:
        return [(_run_info(root, record), record)]
    found: list[tuple[RunInfo, dict[str, Any]]] = []
    for run_file in (
        sorted(root.glob("*/" + RUN_FILE))
        + sorted(root.glob("*/*/" + RUN_FILE))
        + sorted(root.glob("*/*/*/" + RUN_FILE))
    ):
        record = _read_run_file(run_file.parent)
        if record is not None:
            found.append((_run_info(run_file.parent, record), record))
    if found:
        keys = [r.key for r, _ in found]
        if len(set(keys)) != len(keys):
            raise DatasetError(
                f"{root} holds several prediction sets named alike ({keys})",
                hint="point --predictions at one of them",
            )
        return sorted(found, key=lambda x: x[0].key)
    return [(RunInfo(root.name or "predictions", root.name or "predictions", "?", root), {})]


def _run_info(directory: Path, record: Mapping[str, Any]) -> RunInfo:
    method, masks = str(record.get("method", directory.name)), str(record.get("masks", "?"))
    return RunInfo(f"{masks}/{method}", method, masks, directory)


def _timing_files(runs: Iterable[RunInfo]) -> list[Path]:
    """``timings.csv`` of the output folder that holds ``predictions/<masks>/<method>``."""
    out = []
    for run in runs:
        if run.masks != "?":
            out.append(run.directory.parent.parent.parent / TIMINGS_FILE)
    return out

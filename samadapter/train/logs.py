"""Training logs: every logged step to JSONL and CSV, optionally to TensorBoard.

Files in the output folder:

* ``log.jsonl``: one JSON object a line, ``{"kind": "train" | "val", "step": ..., ...}``;
* ``train_log.csv``: the training rows with fixed columns (:data:`CSV_COLUMNS`);
* ``tensorboard/``: event files, when TensorBoard is installed and not switched off.

On resume, rows of steps after the resumed step (written after the last checkpoint by the
interrupted run) are dropped, so the files describe one consistent run.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from samadapter.errors import ConfigError
from samadapter.io.atomic import to_jsonable, write_bytes_atomic

JSONL = "log.jsonl"
CSV = "train_log.csv"
CSV_COLUMNS = (
    "step",
    "lr",
    "loss",
    "ce",
    "consistency",
    "grad_norm",
    "masks",
    "pairs",
    "seconds_per_step",
    "elapsed",
)


def _tensorboard_writer(log_dir: Path, wanted: bool | None) -> Any:
    if wanted is False:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if wanted:
            raise ConfigError(
                "--tensorboard needs the tensorboard package",
                hint="pip install tensorboard, or drop --tensorboard",
            ) from None
        return None
    return SummaryWriter(log_dir=str(log_dir))


def _truncate(path: Path, keep: Any) -> None:
    """Rewrite a text file keeping the lines ``keep(line)`` accepts."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    write_bytes_atomic(path, "".join(line for line in lines if keep(line)).encode("utf-8"))


class TrainLog:
    """Writes training and validation records.

    Args:
        out_dir: the run's output folder.
        resume_step: when resuming, the step training continues from (later rows are dropped);
            ``None`` starts new files.
        tensorboard: ``True`` requires TensorBoard, ``None`` uses it when installed, ``False``
            never.
    """

    def __init__(
        self, out_dir: Path, resume_step: int | None = None, tensorboard: bool | None = None
    ) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = out_dir / JSONL
        self.csv_path = out_dir / CSV
        if resume_step is None:
            write_bytes_atomic(self.jsonl_path, b"")
        else:
            _truncate(self.jsonl_path, lambda line: json.loads(line).get("step", 0) <= resume_step)
            _truncate(
                self.csv_path,
                lambda line: line.startswith("step,") or int(line.split(",", 1)[0]) <= resume_step,
            )
        if resume_step is None or not self.csv_path.exists():
            write_bytes_atomic(self.csv_path, (",".join(CSV_COLUMNS) + "\n").encode("utf-8"))
        self.tb = _tensorboard_writer(out_dir / "tensorboard", tensorboard)

    def _jsonl(self, record: dict[str, Any]) -> None:
        with open(self.jsonl_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(to_jsonable(record), allow_nan=False) + "\n")

    def train(self, step: int, values: dict[str, float]) -> None:
        """Record one logged training step (keys as in :data:`CSV_COLUMNS`)."""
        self._jsonl({"kind": "train", "step": step, **values})
        row = [str(step)] + [_fmt(values.get(c)) for c in CSV_COLUMNS[1:]]
        with open(self.csv_path, "a", encoding="utf-8", newline="") as fh:
            csv.writer(fh).writerow(row)
        self._tensorboard("train", step, values)

    def val(self, step: int, values: dict[str, Any]) -> None:
        """Record one validation."""
        self._jsonl({"kind": "val", "step": step, **values})
        self._tensorboard("val", step, values)

    def _tensorboard(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if self.tb is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self.tb is not None:
            self.tb.close()


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return str(value)


__all__ = ["CSV", "CSV_COLUMNS", "JSONL", "TrainLog"]

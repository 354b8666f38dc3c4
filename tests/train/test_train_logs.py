"""Training logs: JSONL + CSV always, TensorBoard when installed."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest

from samadapter.errors import ConfigError
from samadapter.train.logs import CSV_COLUMNS, TrainLog


class FakeWriter:
    """Records what a SummaryWriter would write."""

    instances: ClassVar[list[FakeWriter]] = []

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.scalars: list[tuple[str, float, int]] = []
        self.closed = False
        FakeWriter.instances.append(self)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def close(self) -> None:
        self.closed = True


def test_jsonl_csv_and_tensorboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    log = TrainLog(tmp_path, tensorboard=None)
    log.train(1, {"lr": 1e-4, "loss": 2.5, "ce": 2.5, "consistency": float("nan")})
    log.val(1, {"val_mask_acc": 0.5, "val_masks": 10})
    log.close()
    writer = FakeWriter.instances[-1]
    assert writer.closed and writer.log_dir == str(tmp_path / "tensorboard")
    assert ("train/loss", 2.5, 1) in writer.scalars and (
        "val/val_mask_acc",
        0.5,
        1,
    ) in writer.scalars
    assert not any(tag == "train/consistency" for tag, _, _ in writer.scalars)  # NaN skipped
    rows = (tmp_path / "train_log.csv").read_text().splitlines()
    assert rows[0] == ",".join(CSV_COLUMNS)
    assert rows[1].split(",")[:5] == ["1", "0.0001", "2.5", "2.5", ""]
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[0]["consistency"] is None and records[1]["kind"] == "val"


def test_tensorboard_switches(tmp_path: Path) -> None:
    assert TrainLog(tmp_path, tensorboard=False).tb is None
    if importlib.util.find_spec("tensorboard") is None:
        assert TrainLog(tmp_path, tensorboard=None).tb is None  # auto: quietly off
        with pytest.raises(ConfigError, match="tensorboard"):
            TrainLog(tmp_path, tensorboard=True)


def test_resume_drops_rows_after_the_checkpoint(tmp_path: Path) -> None:
    log = TrainLog(tmp_path, tensorboard=False)
    for step in range(1, 6):
        log.train(step, {"loss": float(step)})
    log.val(4, {"val_mask_acc": 0.1})
    again = TrainLog(tmp_path, resume_step=3, tensorboard=False)
    again.train(4, {"loss": 40.0})
    steps = [r.split(",")[0] for r in (tmp_path / "train_log.csv").read_text().splitlines()]
    assert steps == ["step", "1", "2", "3", "4"]
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records] == [
        ("train", 1),
        ("train", 2),
        ("train", 3),
        ("train", 4),
    ]
    assert records[-1]["loss"] == 40.0

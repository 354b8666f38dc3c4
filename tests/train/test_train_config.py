"""Training settings: what a resumed run may change, and training states of earlier versions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from samadapter.data.synthetic import SyntheticShapes
from samadapter.errors import ConfigError
from samadapter.train.checkpoints import STATE_FILE
from samadapter.train.config import TrainConfig
from samadapter.train.features import TrainingFeatures
from samadapter.train.loop import Trainer

# ``config`` of a training_state.pth as written before the settings were reorganised (the
# dataclass fields in order, ce_weight / val_every unset), for a run of 4 steps.
OLD_STATE_CONFIG = {
    "stage": "warmup",
    "steps": 4,
    "batch_size": 2,
    "lr": 0.001,
    "weight_decay": 0.05,
    "grad_clip": 1.0,
    "schedule": "poly",
    "warmup_steps": 2,
    "warmup_factor": 0.001,
    "poly_power": 0.9,
    "max_gt_masks": 32,
    "max_masks": 32,
    "max_pairs": 8,
    "iou_thresh": 0.7,
    "ce_weight": None,
    "consistency_weight": 5.0,
    "seed": 0,
    "log_every": 1,
    "checkpoint_every": 0,
    "keep_checkpoints": 3,
    "val_every": None,
    "val_mask_batch": 32,
    "amp": True,
}


def test_resume_may_change_steps_and_cadence_only() -> None:
    base = TrainConfig(**OLD_STATE_CONFIG)
    free = {"steps": 9, "log_every": 5, "checkpoint_every": 3, "keep_checkpoints": 1}
    free |= {"val_every": 2, "val_mask_batch": 4, "amp": False}
    assert base.resume_differences(dataclasses.replace(base, **free)) == []
    other = dataclasses.replace(base, lr=0.002, seed=1, ce_weight=1.0)
    assert other.resume_differences(base) == [
        "lr: saved 0.001, now 0.002",
        "ce_weight: saved None, now 1.0",
        "seed: saved 0, now 1",
    ]


def test_a_training_state_of_the_earlier_format_resumes(tiny, tmp_path: Path) -> None:
    def trainer(**changes: object) -> Trainer:
        backbone, adapter = tiny()
        data = TrainingFeatures(SyntheticShapes(4, size=(64, 80)), backbone, clip_size=64)
        config = dataclasses.replace(TrainConfig(**OLD_STATE_CONFIG), **changes)
        return Trainer(backbone, adapter, data, config, tmp_path / "run")

    trainer().fit(until=2, progress=False)
    path = tmp_path / "run" / STATE_FILE
    state = torch.load(path, weights_only=True)
    state["config"] = dict(OLD_STATE_CONFIG)
    torch.save(state, path)
    longer = trainer(steps=6, log_every=2)
    assert longer.resume() == 2
    assert longer.fit(progress=False).step == 6
    with pytest.raises(ConfigError, match=r"lr: saved 0\.001, now 0\.0005"):
        trainer(steps=8, lr=5e-4).resume()
    # the state file is untrusted: a setting of the wrong type is one clear error
    state = torch.load(path, weights_only=True)
    state["config"] = {**OLD_STATE_CONFIG, "lr": "fast"}
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r"'config' 'lr' must be float, got 'fast'"):
        trainer(steps=8).resume()

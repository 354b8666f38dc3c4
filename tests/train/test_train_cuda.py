"""Training on a CUDA GPU with bfloat16 autocast (skipped without one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samadapter.data.synthetic import SyntheticShapes
from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.mask_adapter import MaskAdapter
from samadapter.models import build_classifier_models, build_tiny_classifier
from samadapter.train.features import TrainingFeatures
from samadapter.train.loop import TrainConfig, Trainer
from samadapter.train.synthetic import calibrated_classes

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def fresh() -> tuple[ClipBackbone, MaskAdapter]:
    """New tiny models (the shared CPU ones must not move to the GPU)."""
    backbone, adapter = build_tiny_classifier()
    assert adapter is not None
    return backbone.cuda(), adapter


def test_cuda_autocast_training_learns_and_checkpoints(tmp_path: Path) -> None:
    backbone, adapter = fresh()
    classes = calibrated_classes(
        backbone, ["red", "green", "blue", "yellow"], clip_size=128, candidates=64
    )
    # features computed on the GPU under autocast, then cached (float16) on disk
    train = TrainingFeatures(
        SyntheticShapes(40, seed=0, classes=classes),
        backbone,
        clip_size=128,
        device="cuda",
        cache_dir=tmp_path / "c",
        in_memory=True,
    )
    held_out = TrainingFeatures(
        SyntheticShapes(48, seed=1, classes=classes),
        backbone,
        clip_size=128,
        device="cuda",
        cache_dir=tmp_path / "v",
        in_memory=True,
    )
    train.prepare()
    held_out.prepare()
    config = TrainConfig(
        steps=200,
        batch_size=4,
        lr=1e-3,
        warmup_steps=20,
        log_every=25,
        checkpoint_every=100,
        val_every=0,
        amp=True,
    )
    trainer = Trainer(
        backbone, adapter, train, config, tmp_path / "run", val_data=held_out, device="cuda"
    )
    before = trainer.validate()
    summary = trainer.fit(progress=False)
    after = summary.validations[-1]
    assert next(trainer.adapter.parameters()).dtype == torch.float32  # AMP keeps fp32 weights
    losses = [h["ce"] for h in summary.history]
    assert np.isfinite(losses).all() and losses[-1] < 0.65 * losses[0]
    assert before["val_mask_acc"] < 0.4 and after["val_mask_acc"] >= 0.6
    # the checkpoint written on the GPU loads on the CPU, strictly
    _, loaded = build_classifier_models("tiny-random", tmp_path / "run" / "model_final.pth", None)
    assert loaded is not None
    for key, value in trainer.adapter.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value.cpu(), rtol=0, atol=0)
    print(
        f"cuda: held-out mask accuracy {before['val_mask_acc']:.3f} -> "
        f"{after['val_mask_acc']:.3f}, mIoU {after.get('val_mIoU', float('nan')):.1f}, "
        f"CE {losses[0]:.3f} -> {losses[-1]:.3f}"
    )


def test_cuda_resume_is_exact(tmp_path: Path) -> None:
    def trainer(out: Path) -> Trainer:
        backbone, adapter = fresh()
        data = TrainingFeatures(
            SyntheticShapes(6, size=(64, 80)),
            backbone,
            clip_size=64,
            device="cuda",
            cache_dir=tmp_path / "c",
        )
        cfg = TrainConfig(steps=6, batch_size=2, lr=1e-3, warmup_steps=2, checkpoint_every=0)
        return Trainer(backbone, adapter, data, cfg, out, device="cuda")

    a = trainer(tmp_path / "a")
    a.fit(progress=False)
    b = trainer(tmp_path / "b")
    b.fit(until=3, progress=False)
    c = trainer(tmp_path / "b")
    c.resume()
    c.fit(progress=False)
    for key, value in a.adapter.state_dict().items():
        torch.testing.assert_close(c.adapter.state_dict()[key], value, rtol=0, atol=1e-5)

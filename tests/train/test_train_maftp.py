"""Training from a MAFT+ + Mask-Adapter checkpoint: the cdt stays frozen, the loss scores each
image's masks against its own cdt-refined text, and the files written load as MAFT+ ones."""

from __future__ import annotations

from pathlib import Path

import maftp_layout  # tests/maftp_layout.py (tests/ is on sys.path via its conftest)
import numpy as np
import torch

from samadapter.checkpoint import load_checkpoint_file, split_adapter_state_dict
from samadapter.data.synthetic import SyntheticShapes
from samadapter.models import build_classifier_models
from samadapter.pipeline import PipelineSettings, Segmenter
from samadapter.train.features import TrainingFeatures
from samadapter.train.loop import TrainConfig, Trainer
from samadapter.train.setup import build_training_models

CLIP = 64


def test_training_starts_from_a_maftp_checkpoint(tmp_path: Path) -> None:
    file = maftp_layout.save_maftp_checkpoint(tmp_path / "maftp.pth", "tiny-random", 32, seed=5)
    models = build_training_models(adapter_checkpoint=file)
    assert models.adapter.is_maftp and models.clip_name == "tiny-random"
    scratch = build_training_models(adapter_checkpoint=file, from_scratch=True, seed=3).adapter
    assert scratch.cdt is not None and models.adapter.cdt is not None
    torch.testing.assert_close(scratch.cdt.state_dict(), models.adapter.cdt.state_dict())
    assert not torch.equal(
        scratch.mask_adapter.fuse.weight, models.adapter.mask_adapter.fuse.weight
    )

    data = TrainingFeatures(
        SyntheticShapes(3, size=(64, 80), seed=0), models.backbone, clip_size=CLIP
    )
    cdt_before = {k: v.clone() for k, v in models.adapter.cdt.state_dict().items()}
    final_before = models.adapter.mask_adapter.final.weight.detach().clone()
    out = tmp_path / "run"
    config = TrainConfig(
        steps=2, batch_size=2, lr=1e-2, warmup_steps=1, log_every=1, checkpoint_every=0
    )
    trainer = Trainer(models.backbone, models.adapter, data, config, out)
    summary = trainer.fit(progress=False)
    assert summary is not None
    adapter = trainer.adapter
    assert adapter.cdt is not None
    for key, value in adapter.cdt.state_dict().items():
        assert torch.equal(value.cpu(), cdt_before[key]), key  # frozen
    assert not torch.equal(adapter.mask_adapter.final.weight.detach().cpu(), final_before)

    # The loss's logits are the pipeline's scores: same per-image cdt text, same void.
    item = data[0]
    masks = item.gt.masks
    with torch.no_grad():
        logits = trainer.logits(trainer.embed(item, masks), item)
    k = len(data.vocab)
    train_probs = logits.softmax(-1)[:, :k].numpy()
    seg = Segmenter(trainer.backbone, adapter.eval(), None, PipelineSettings(clip_size=CLIP))
    probs = seg.class_probabilities(data.dataset[0].image, masks, seg.text_classifier(data.vocab))
    np.testing.assert_allclose(train_probs, probs, atol=1e-5)

    # The written files are MAFT+ files again (cdt included, both layouts).
    for name in ("model_final.pth", "model_final_demo.pth"):
        split = split_adapter_state_dict(load_checkpoint_file(out / name))
        assert split.cdt is not None and len(split.cdt) == 8, name
    _, loaded = build_classifier_models("tiny-random", out / "model_final.pth", None)
    assert loaded is not None and loaded.is_maftp
    seg2 = Segmenter(trainer.backbone, loaded, None, PipelineSettings(clip_size=CLIP))
    np.testing.assert_allclose(
        seg2.class_probabilities(data.dataset[0].image, masks, seg2.text_classifier(data.vocab)),
        probs,
        atol=1e-6,
    )


def test_train_cli_starts_from_a_maftp_file(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from samadapter.cli.train import train

    app = typer.Typer()
    app.command()(train)
    file = maftp_layout.save_maftp_checkpoint(tmp_path / "maftp.pth", "tiny-random", 32, seed=5)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "--dataset",
            "synthetic",
            "--clip-size",
            "64",
            "--synthetic-images",
            "3",
            "--batch-size",
            "2",
            "--warmup-steps",
            "1",
            "--threads",
            "1",
            "--steps",
            "1",
            "--adapter-checkpoint",
            str(file),
            "--output",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    split = split_adapter_state_dict(load_checkpoint_file(out / "model_final.pth"))
    assert split.cdt is not None
    original = split_adapter_state_dict(load_checkpoint_file(file))
    assert original.cdt is not None
    for key, value in original.cdt.items():
        assert torch.equal(split.cdt[key], value), key
    # A registry name works too; offline, its file is named with its URL.
    result = CliRunner().invoke(
        app,
        [
            "--dataset",
            "synthetic",
            "--adapter",
            "maftp_convnext_base",
            "--offline",
            "--weights-dir",
            str(tmp_path / "w"),
            "--output",
            str(tmp_path / "run2"),
        ],
    )
    assert result.exit_code == 2
    assert "maftp_convnext_base_maskadapter.pth from https://huggingface.co/owl10/" in (
        result.output.replace("\n", "")
    )

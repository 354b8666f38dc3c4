"""Where the training models come from: tiny, an adapter file, a separate CLIP file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from samadapter.checkpoint import to_demo_state_dict, to_detectron2_state_dict
from samadapter.errors import ConfigError
from samadapter.train.setup import build_training_models, infer_clip_arch


def _files(tiny, tmp_path: Path) -> tuple[Path, Path, Path]:
    backbone, adapter = tiny()
    with torch.no_grad():
        adapter.void_embedding.weight.fill_(0.5)
    head = adapter.mask_adapter.state_dict()
    void = adapter.void_embedding.weight.detach()
    d2 = tmp_path / "d2.pth"
    torch.save({"model": to_detectron2_state_dict(head, void, backbone.model.state_dict())}, d2)
    demo = tmp_path / "demo.pth"
    torch.save(to_demo_state_dict(head, void), demo)
    clip = tmp_path / "clip.bin"
    torch.save(backbone.model.state_dict(), clip)
    return d2, demo, clip


def test_tiny_models_and_fresh_adapters() -> None:
    models = build_training_models(clip="tiny-random")
    assert models.clip_name == "tiny-random" and models.clip_in_checkpoints
    assert models.adapter.mask_adapter.fuse.weight.shape[0] == 32
    a = build_training_models(clip="tiny-random", from_scratch=True, seed=1).adapter
    b = build_training_models(clip="tiny-random", from_scratch=True, seed=1).adapter
    c = build_training_models(clip="tiny-random", from_scratch=True, seed=2).adapter
    torch.testing.assert_close(a.state_dict(), b.state_dict())
    assert not torch.equal(a.mask_adapter.fuse.weight, c.mask_adapter.fuse.weight)


def test_from_adapter_files(tiny, tmp_path: Path) -> None:
    d2, demo, clip = _files(tiny, tmp_path)
    assert infer_clip_arch(d2) == infer_clip_arch(demo) == "tiny-random"
    from_d2 = build_training_models(adapter_checkpoint=d2)
    assert from_d2.clip_name == "tiny-random" and from_d2.clip_in_checkpoints
    assert from_d2.adapter.void_embedding.weight.mean().item() == 0.5
    from_demo = build_training_models(adapter_checkpoint=demo, clip_checkpoint=clip)
    assert not from_demo.clip_in_checkpoints  # CLIP came from its own file
    assert "its own file" in from_demo.source
    scratch = build_training_models(adapter_checkpoint=d2, from_scratch=True)
    assert scratch.adapter.void_embedding.weight.mean().item() != 0.5


def test_errors() -> None:
    with pytest.raises(ConfigError, match="unknown CLIP"):
        build_training_models(clip="vit_b_16")
    with pytest.raises(ConfigError, match="not a Mask-Adapter"):
        build_training_models(adapter="sam_vit_b")

"""The model registry: complete entries, architectures that build, test models like the others."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from readers import real_reader  # tests/readers.py (tests/ is on sys.path)

from samadapter import registry
from samadapter.errors import CheckpointError, ConfigError
from samadapter.modeling.clip_backbone import ClipBackbone, build_clip_model
from samadapter.modeling.proposer import build_sam
from samadapter.models import build_sam_model, load_classifier
from samadapter.weights import REGISTRY


def test_every_entry_is_complete() -> None:
    seen = set()
    for m in registry.MODELS:
        assert (m.kind, m.name) not in seen, m.name
        seen.add((m.kind, m.name))
        assert m.random == (m.name == registry.TINY)
        if m.file is not None:
            assert m.file.kind == m.kind and m.file.url and m.file.url.startswith("https://")
            assert m.file.size_bytes or m.kind == "adapter"
            assert REGISTRY[m.file.name] is m.file  # one file table, the registry's
        if m.kind == "sam":
            assert m.sam is not None and (m.file is None or m.file.md5_prefix)
        if m.kind == "sam2":
            assert m.sam2_config.startswith("configs/sam2.1/") and m.sam2_config.endswith(".yaml")
        if m.kind == "clip":
            assert m.dense_dim > 0 and m.clip_arch().embed_dim > 0
        if m.kind == "adapter":
            assert registry.get("clip", m.clip).kind == "clip"
    assert len(REGISTRY) == sum(m.file is not None for m in registry.MODELS)


def test_names_users_type() -> None:
    assert registry.names("sam") == [
        "vit_b",
        "vit_l",
        "vit_h",
        "sam2.1_hiera_tiny",
        "sam2.1_hiera_small",
        "sam2.1_hiera_base_plus",
        "sam2.1_hiera_large",
    ]
    assert registry.names("clip") == ["convnext_large_d_320", "convnext_base_w_320"]
    assert registry.names("adapter") == [
        "fcclip_convnext_large",
        "demo",
        "maftp_convnext_large",
        "maftp_convnext_base",
    ]
    assert registry.get("sam", "vit_b").file.name == "sam_vit_b"  # type: ignore[union-attr]
    assert registry.get("sam", registry.TINY).kind == "sam"  # --sam tiny-random: SAM's
    assert registry.get("sam2", registry.TINY).random


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown CLIP model 'vit_b_16'.*convnext_base_w_320"):
        registry.get("clip", "vit_b_16")
    with pytest.raises(ConfigError, match=r"unknown SAM model 'vit_x'.*sam2\.1_hiera_large"):
        registry.get("sam", "vit_x")
    with pytest.raises(ConfigError, match="'convnext_base_w_320' is a clip model, not a Mask"):
        registry.get("adapter", "convnext_base_w_320")


def test_clip_widths_come_from_open_clip_and_match_the_built_models() -> None:
    for m in registry.models("clip"):
        model = build_clip_model(m.name, device="meta")
        assert model.text_projection.shape[-1] == m.clip_arch().embed_dim, m.name
        assert model.visual.trunk.num_features == m.dense_dim, m.name
    large, base = (registry.get("clip", name).clip_arch() for name in registry.names("clip"))
    assert (large.embed_dim, base) == (768, registry.ClipArch("convnext_base_w_320", 640, 1024))
    tiny = registry.get("clip", registry.TINY)
    assert ClipBackbone.from_arch(registry.TINY).arch == tiny.clip_arch()  # what the model uses


def test_every_sam_entry_builds() -> None:
    with torch.device("meta"):
        for m in registry.MODELS:
            arch = m.sam
            if arch is None:
                continue
            sam = build_sam(m.name)
            assert sam.image_encoder.patch_embed.proj.weight.shape[0] == arch.embed_dim
            assert len(sam.image_encoder.blocks) == arch.depth


def test_every_sam2_entry_names_a_config_of_the_sam2_package() -> None:
    root = Path(str(real_reader("sam2").__file__)).parent  # CI installs sam2: never a skip there
    for m in registry.models("sam2"):
        assert (root / m.sam2_config).is_file(), m.sam2_config


def test_test_models_are_seeded_entries(tmp_path: Path) -> None:
    a = build_sam_model(registry.TINY, None)
    b = build_sam_model(registry.TINY, None)
    torch.testing.assert_close(a.state_dict(), b.state_dict())
    with pytest.raises(CheckpointError, match="no checkpoint given for SAM vit_b"):
        build_sam_model("vit_b", None)
    # A test CLIP named on its own (no adapter) is its seeded random model, reading no file.
    clip = load_classifier(None, registry.TINY, weights_dir=tmp_path, offline=True)
    tiny = load_classifier(registry.TINY, None, weights_dir=tmp_path, offline=True)
    assert clip.adapter is None and clip.clip_file is None and clip.adapter_file is None
    torch.testing.assert_close(clip.backbone.state_dict(), tiny.backbone.state_dict())
    assert tiny.adapter is not None and tiny.adapter.mask_adapter.fuse.out_channels == 32


def test_registry_and_choices_import_without_torch() -> None:
    code = (
        "import sys, samadapter.registry as r, samadapter.cli.choices as c; "
        "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules; "
        "print(c.sam_names()[0], r.get('clip', 'convnext_base_w_320').clip_arch().embed_dim); "
        "assert 'torch' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["vit_b", "640"]

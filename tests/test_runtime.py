"""Precision resolution and the bf16 path through the tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samadapter import runtime
from samadapter.errors import ConfigError
from samadapter.modeling.proposer import SamProposer
from samadapter.models import load_segmenter


def test_resolve_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    # bf16 moves masks and scores slightly: on a CPU only a preset that asks for it gets it.
    assert runtime.resolve_precision("auto", "cpu") == "fp32"
    assert runtime.resolve_precision("auto", "cpu", cpu_bf16=True) == "bf16"
    assert runtime.resolve_precision("fp32", "cpu", cpu_bf16=True) == "fp32"
    assert runtime.resolve_precision("auto", "mps", cpu_bf16=True) == "fp32"
    assert runtime.resolve_precision("bf16", "cpu") == "bf16"
    assert runtime.resolve_precision("auto", "cuda") == "bf16"
    assert runtime.resolve_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    assert runtime.resolve_precision("auto", "cpu") == "fp32"
    assert runtime.resolve_precision("auto", "cpu", cpu_bf16=True) == "fp32"
    assert runtime.resolve_precision("bf16", "cpu") == "bf16"
    assert runtime.resolve_precision("auto", "mps") == "fp32"
    with pytest.raises(ConfigError, match="bf16 is not supported on mps"):
        runtime.resolve_precision("bf16", "mps")
    with pytest.raises(ConfigError, match="unknown --precision 'fp8'"):
        runtime.resolve_precision("fp8", "cpu")
    assert runtime.precision_dtype("bf16") is torch.bfloat16
    assert runtime.precision_dtype("fp32") is torch.float32


def test_only_the_fast_preset_trades_fidelity_for_bf16_on_a_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from samadapter.presets import PRESETS

    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    chosen = {
        name: runtime.resolve_precision("auto", "cpu", preset.cpu_bf16)
        for name, preset in PRESETS.items()
    }
    assert chosen == {"fast": "bf16", "accurate": "fp32", "demo": "fp32", "tiny-random": "fp32"}


def test_cpu_probe_failure_means_no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> bool:
        raise RuntimeError("no cpuinfo")

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", boom, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", boom, raising=False)
    assert runtime.cpu_has_bf16() is False


def test_tiny_preset_auto_is_fp32_and_bf16_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    fp32 = load_segmenter("tiny-random", device="cpu", progress=False)
    assert fp32.settings.precision == "fp32"
    bf16 = load_segmenter("tiny-random", device="cpu", progress=False, precision="bf16")
    assert bf16.settings.precision == "bf16"
    sam = bf16.proposer.load() if hasattr(bf16.proposer, "load") else bf16.proposer
    assert isinstance(sam, SamProposer)
    assert sam.options.dtype is torch.bfloat16
    image = np.zeros((40, 56, 3), dtype=np.uint8)
    image[8:30, 10:40] = (200, 40, 40)
    props = fp32.propose(image)
    assert len(props) >= 1
    emb32 = fp32.mask_embeddings(image, props.masks)
    emb16 = bf16.mask_embeddings(image, props.masks)
    assert emb16.dtype == np.float32 and emb16.shape == emb32.shape
    cos = (emb32 * emb16).sum(1) / (np.linalg.norm(emb32, axis=1) * np.linalg.norm(emb16, axis=1))
    assert cos.min() > 0.99 and not np.array_equal(emb32, emb16)  # bf16 did run, and is close

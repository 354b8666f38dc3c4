"""The OpenVINO runtime for the image encoders, on the tiny models (skipped without openvino)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samadapter import runtime
from samadapter.errors import ConfigError
from samadapter.modeling.proposer import build_sam
from samadapter.models import load_segmenter
from samadapter.runtime import OpenVinoEncoder, resolve_runtime


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


def test_resolve_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAMADAPTER_RUNTIME")
    monkeypatch.setattr(runtime, "openvino_available", lambda: True)
    assert resolve_runtime("auto", "cpu") == "openvino"
    assert resolve_runtime("auto", "cuda") == "torch"
    assert resolve_runtime("torch", "cpu") == "torch"
    with pytest.raises(ConfigError, match="runs on the CPU"):
        resolve_runtime("openvino", "cuda")
    monkeypatch.setattr(runtime, "openvino_available", lambda: False)
    assert resolve_runtime("auto", "cpu") == "torch"
    with pytest.raises(ConfigError, match="needs the openvino package") as e:
        resolve_runtime("openvino", "cpu")
    assert "samadapter[cpu]" in str(e.value)
    with pytest.raises(ConfigError, match="unknown --runtime 'tensorrt'"):
        resolve_runtime("tensorrt", "cpu")
    monkeypatch.setenv("SAMADAPTER_RUNTIME", "torch")
    monkeypatch.setattr(runtime, "openvino_available", lambda: True)
    assert resolve_runtime("auto", "cpu") == "torch"


def test_tiny_preset_auto_runtime_is_torch() -> None:
    seg = load_segmenter("tiny-random", device="cpu", progress=False)
    assert seg.info["runtime"] == "torch" and seg.backbone.dense_runner is None


def test_sam_encoder_matches_torch_and_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("openvino")
    torch.manual_seed(0)
    encoder = build_sam("tiny-random").image_encoder
    ov = OpenVinoEncoder(
        encoder,
        "sam-tiny",
        (1, 3, 128, 128),
        dynamic=False,
        precision="fp32",
        cache_dir=tmp_path,
        progress=False,
    )
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        ref = encoder(x)
    out = ov(x)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert rel(ref, out) <= 1e-4
    folders = list(tmp_path.iterdir())
    assert len(folders) == 1 and folders[0].name.endswith("-1x3x128x128")
    assert (folders[0] / "model.xml").is_file()

    def no_convert(*_: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(OpenVinoEncoder, "_convert", no_convert)
    again = OpenVinoEncoder(
        encoder,
        "sam-tiny",
        (1, 3, 128, 128),
        dynamic=False,
        precision="fp32",
        cache_dir=tmp_path,
        progress=False,
    )
    assert torch.equal(again(x), out)
    with torch.no_grad():  # other weights: another cache entry
        encoder.neck[0].weight.mul_(2)
    assert (
        OpenVinoEncoder(
            encoder,
            "sam-tiny",
            (1, 3, 128, 128),
            dynamic=False,
            precision="fp32",
            cache_dir=tmp_path,
        ).folder()
        != folders[0]
    )


def test_segmenter_with_openvino_matches_torch() -> None:
    pytest.importorskip("openvino")
    ov = load_segmenter("tiny-random", device="cpu", progress=False, runtime="openvino")
    pt = load_segmenter("tiny-random", device="cpu", progress=False)
    assert ov.info["runtime"] == "openvino" and ov.backbone.dense_runner is not None
    image = np.zeros((40, 70, 3), dtype=np.uint8)
    image[5:30, 10:50] = (180, 90, 20)
    for size in ((40, 70), (70, 40)):  # two input shapes through one dynamic CLIP model
        img = (
            np.ascontiguousarray(image[: size[0], : size[1]])
            if size == (40, 70)
            else np.ascontiguousarray(image.transpose(1, 0, 2))
        )
        assert rel(pt.image_features(img).raw, ov.image_features(img).raw) <= 1e-4
    a, b = pt.propose(image), ov.propose(image)
    assert len(a) == len(b) and len(a) >= 1
    assert np.array_equal(a.masks, b.masks)

"""SAM 2 proposer: registry data, a clear error without ``sam2``, masks from a tiny random Hiera."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from samadapter import registry
from samadapter.errors import ConfigError, SamAdapterError
from samadapter.modeling.proposer import (
    AmgSettings,
    Sam2MissingError,
    Sam2Proposer,
    build_sam2,
)
from samadapter.weights import get_spec


def test_sam2_models_are_the_official_sam2_1_files() -> None:
    sam2_models = {m.name: m for m in registry.models("sam2") if not m.random}
    assert list(sam2_models) == [
        "sam2.1_hiera_tiny",
        "sam2.1_hiera_small",
        "sam2.1_hiera_base_plus",
        "sam2.1_hiera_large",
    ]
    assert sam2_models["sam2.1_hiera_large"].sam2_config == "configs/sam2.1/sam2.1_hiera_l.yaml"
    assert sam2_models["sam2.1_hiera_base_plus"].sam2_config.endswith("sam2.1_hiera_b+.yaml")
    large = get_spec("sam2.1_hiera_large")
    assert large.kind == "sam2" and large.filename == "sam2.1_hiera_large.pt"
    assert large.url == (
        "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt"
    )
    for name, model in sam2_models.items():
        spec = get_spec(name)
        assert spec.filename == f"{name}.pt" and spec.url is not None
        assert spec.url.endswith("/" + spec.filename)
        assert spec is model.file  # the file of that model


def test_importing_the_proposer_does_not_import_sam2() -> None:
    code = (
        "import sys, samadapter.modeling.proposer as p; "
        "assert 'sam2' not in sys.modules, 'sam2 imported eagerly'; print(p.SAM2_INSTALL_HINT)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pip install samadapter[sam2] (or pip install sam2)"


def test_missing_sam2_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "sam2" or m.startswith("sam2.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sam2", None)  # import sam2 -> ImportError
    with pytest.raises(Sam2MissingError) as err:
        build_sam2("sam2.1_hiera_tiny")
    message = str(err.value)
    assert "sam2" in message and "pip install samadapter[sam2]" in message
    assert isinstance(err.value, ConfigError) and isinstance(err.value, SamAdapterError)
    assert isinstance(err.value, ImportError)
    with pytest.raises(Sam2MissingError, match=r"samadapter\[sam2\]"):
        Sam2Proposer(object(), AmgSettings())  # type: ignore[arg-type]


def test_unknown_sam2_model() -> None:
    with pytest.raises(ConfigError, match=r"sam2\.1_hiera_large"):
        build_sam2("sam2_hiera_huge")


def test_tiny_random_sam2_proposes_masks() -> None:
    pytest.importorskip(
        "sam2", reason="needs the optional sam2 package (pip install samadapter[sam2])"
    )
    import torch

    torch.manual_seed(0)
    model = build_sam2("tiny-random")
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    proposer = Sam2Proposer(
        model,
        AmgSettings(
            points_per_side=4,
            points_per_batch=16,
            pred_iou_thresh=0.0,
            stability_score_thresh=0.0,
            min_mask_region_area=4,
        ),
    )
    image = (np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)
    props = proposer(image)
    n = len(props)
    assert n >= 1
    assert props.masks.shape == (n, 48, 80) and props.masks.dtype == bool
    assert props.masks.reshape(n, -1).any(axis=1).all()
    assert props.predicted_iou.shape == (n,) and props.stability_score.shape == (n,)
    assert props.point_coords.shape == (n, 2) and props.crop_box.shape == (n, 4)
    assert np.all(props.crop_box == [0, 0, 80, 48])
    areas = props.masks.reshape(n, -1).sum(1)
    assert np.all(np.diff(areas) <= 0)  # largest first
    assert set(props.timings) == {"sam_encoder", "sam_decoder"}
    assert props.timings["sam_encoder"] > 0


def test_official_sam2_key_layout() -> None:
    pytest.importorskip(
        "sam2", reason="needs the optional sam2 package (pip install samadapter[sam2])"
    )
    keys = set(build_sam2("tiny-random").state_dict())
    assert "image_encoder.trunk.patch_embed.proj.weight" in keys
    assert "sam_mask_decoder.iou_prediction_head.layers.2.weight" in keys
    assert "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix" in keys

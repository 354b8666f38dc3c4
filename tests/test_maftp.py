"""MAFT+ + Mask-Adapter checkpoints: strict loading of the official layout, the MAFT+ inference
path end to end (quirk features into the adapter, cdt-refined text), every command, relabel."""

from __future__ import annotations

import json
import math
from pathlib import Path

import maftp_layout  # tests/maftp_layout.py (tests/ is on sys.path via its conftest)
import numpy as np
import pytest
import synth_data
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from samadapter import registry
from samadapter.checkpoint import split_adapter_state_dict
from samadapter.cli.main import app
from samadapter.errors import CheckpointError, WeightsError
from samadapter.modeling.embeddings import canvas_masks
from samadapter.modeling.mask_adapter import pool_with_maps
from samadapter.models import build_classifier_models, load_segmenter
from samadapter.pipeline import PipelineSettings, Segmenter
from samadapter.vocab import parse_classes


@pytest.fixture(scope="module")
def maftp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("maftp") / "maftp_tiny_maskadapter.pth"
    return maftp_layout.save_maftp_checkpoint(path, "tiny-random", hidden=32, seed=7)


def test_official_layout_loads_strictly_with_every_tensor(maftp_file: Path) -> None:
    backbone, adapter = build_classifier_models(None, maftp_file, clip_checkpoint=None)
    assert backbone.arch.name == "tiny-random"  # the CLIP width (32) picks the model
    assert adapter is not None and adapter.is_maftp and adapter.cdt is not None
    assert adapter.cdt.norm_update is registry.get("clip", "tiny-random").cdt_norm_update
    sd = torch.load(maftp_file, weights_only=True)["model"]
    mine = {
        **{f"backbone.clip_model.{k}": v for k, v in backbone.model.state_dict().items()},
        **adapter.state_dict(),
    }
    used = {k for k in sd if not k.startswith("sem_seg_head.")}
    assert used <= set(mine)
    for key in used:
        assert torch.equal(mine[key], sd[key]), key
    assert set(adapter.state_dict()) == {
        k for k in sd if k.startswith(("mask_adapter.", "cdt.", "void_embedding."))
    }


def test_clip_width_picks_convnext_b_or_l() -> None:
    for arch, width in (("convnext_large_d_320", 768), ("convnext_base_w_320", 640)):
        table = {**maftp_layout.adapter_table(width), **maftp_layout.cdt_table(width)}
        sd = {k: torch.zeros(s) for k, s in table.items()}
        split = split_adapter_state_dict(sd)
        assert split.cdt is not None and len(split.cdt) == 8
        from samadapter.models import clip_arch_of

        assert clip_arch_of(split) == arch


def test_a_broken_cdt_is_reported_clearly(tmp_path: Path) -> None:
    sd = maftp_layout.maftp_state_dict("tiny-random", hidden=32)
    del sd["cdt.cross_atten.MLP.bias"]
    sd["cdt.cross_atten.norm.weight"] = torch.ones(31)
    sd["cdt.extra.weight"] = torch.ones(1)
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        build_classifier_models(None, tmp_path / "bad.pth", clip_checkpoint=None)
    msg = str(info.value)
    assert "MAFT+ Mask-Adapter for tiny-random" in msg
    assert "1 missing keys: cdt.cross_atten.MLP.bias" in msg
    assert "1 unexpected keys: cdt.extra.weight" in msg
    assert "cdt.cross_atten.norm.weight: checkpoint [31] vs model [32]" in msg


def _reference_probs(
    seg: Segmenter, image: np.ndarray, masks: np.ndarray, vocab_text: str
) -> np.ndarray:
    """MAFT+'s inference written out step by step from the official code's lines."""
    backbone, adapter = seg.backbone, seg.adapter
    assert adapter is not None and adapter.cdt is not None
    vocab = parse_classes(vocab_text)
    with torch.no_grad():
        pixels, resized = backbone.preprocess(image, seg.settings.clip_size)
        clip_feature = backbone.dense_features(pixels)  # clip_vis_dense
        b, c, h, w = clip_feature.shape
        v = backbone.model.visual
        x = clip_feature.reshape(b * h * w, c).unsqueeze(-1).unsqueeze(-1)
        img_feat = v.head(v.trunk.head(x))
        img_feat = img_feat.reshape(b, h, w, img_feat.shape[-1]).permute(0, 3, 1, 2)
        text = seg.text_classifier(vocab).embeddings
        text = torch.cat([text, F.normalize(adapter.void_embedding.weight, dim=-1)])
        text = adapter.cdt(img_feat, text)[0]  # [T + 1, C]
        m = canvas_masks(masks, resized, tuple(pixels.shape[-2:]))
        maps = adapter.mask_adapter(img_feat, m)  # the adapter takes the quirk features
        pooled = pool_with_maps(maps, clip_feature)  # ... but pools the raw ones
        emb = backbone.project_pooled(pooled).mean(dim=2)[0]
        scale = min(math.exp(float(backbone.logit_scale)), 100.0)
        logits = scale * F.normalize(emb, dim=-1) @ text.T  # text NOT normalised
        index = vocab.name_to_class_index()
        k = len(vocab)
        cls = torch.stack(
            [
                logits[:, [i for i, j in enumerate(index) if j == kk]].max(1).values
                for kk in range(k)
            ],
            dim=1,
        )
        probs = torch.cat([cls, logits[:, -1:]], dim=1).softmax(-1)[:, :k]
    return probs.numpy()


def test_pipeline_follows_the_official_maftp_inference(maftp_file: Path, scene) -> None:
    image, masks = scene
    backbone, adapter = build_classifier_models(None, maftp_file, clip_checkpoint=None)
    seg = Segmenter(backbone, adapter, None, PipelineSettings(clip_size=64))
    vocab = "red thing|crimson thing,green thing,dark"
    got = seg.class_probabilities(image, masks, seg.text_classifier(parse_classes(vocab)))
    want = _reference_probs(seg, image, masks, vocab)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Not the FC-CLIP path: same weights without the cdt / quirk give other numbers.
    assert adapter is not None
    adapter.cdt, cdt = None, adapter.cdt
    try:
        plain = seg.class_probabilities(image, masks, seg.text_classifier(parse_classes(vocab)))
    finally:
        adapter.cdt = cdt
    assert np.abs(plain - got).max() > 1e-3


def test_api_classify_and_call_run_end_to_end(maftp_file: Path, scene) -> None:
    image, masks = scene
    seg = load_segmenter(
        "tiny-random",
        sam="tiny-random",
        adapter_checkpoint=maftp_file,
        device="cpu",
        settings={"keep_unknown": True},
        text_cache=False,
    )
    assert seg.uses_cdt and seg.info["adapter"]["file"] == maftp_file.name
    named = seg.classify(image, masks, classes="a,b,c")
    assert len(named.masks) == 3
    np.testing.assert_allclose(
        named.class_scores, _reference_probs(seg, image, masks, "a,b,c"), atol=1e-5
    )
    result = seg(image, classes="a,b")
    assert result.class_scores.shape[1] == 2 and np.isfinite(result.class_scores).all()
    pooled = seg.class_probabilities(
        image, masks, seg.text_classifier(parse_classes("a,b")), classifier="mask-pooling"
    )
    assert pooled.shape == (3, 2)
    np.testing.assert_allclose(pooled.sum(axis=1), 1.0, atol=1e-5)  # no void without adapter


def test_missing_maftp_file_names_file_and_url(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as info:
        load_segmenter(
            "fast",
            adapter="maftp_convnext_large",
            device="cpu",
            weights_dir=tmp_path,
            offline=True,
            progress=False,
            with_proposer=False,
        )
    msg = str(info.value)
    assert (
        "maftp_convnext_large_maskadapter.pth from https://huggingface.co/owl10/Mask-Adapter/"
        "resolve/main/maftp_convnext_large_maskadapter.pth" in msg
    )
    assert str(tmp_path / "maftp_convnext_large_maskadapter.pth") in msg


def test_segment_cli_offline_names_the_maftp_file(tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    result = CliRunner().invoke(
        app,
        [
            "segment",
            str(image),
            "-c",
            "cat",
            "--adapter",
            "maftp_convnext_large",
            "--offline",
            "--weights-dir",
            str(tmp_path / "w"),
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "maftp_convnext_large_maskadapter.pth from https://huggingface.co/owl10/" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.fixture
def photos(tmp_path: Path, scene) -> Path:
    image, _ = scene
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(image).save(folder / "a.png")
    Image.fromarray(np.ascontiguousarray(image[::-1, ::-1])).save(folder / "b.png")
    return folder


def test_relabel_equals_a_fresh_segment(maftp_file: Path, photos: Path, tmp_path: Path) -> None:
    cli = CliRunner()
    common = [
        "--preset",
        "tiny-random",
        "--adapter-checkpoint",
        str(maftp_file),
        "--device",
        "cpu",
        "--keep-unknown",
        "-q",
    ]
    first = cli.invoke(
        app,
        [
            "segment",
            str(photos),
            "-c",
            "cat,cup",
            "--cache-features",
            "-o",
            str(tmp_path / "a"),
            *common,
        ],
    )
    assert first.exit_code == 0, first.stderr
    with np.load(tmp_path / "a" / "features" / "a.png.npz") as data:
        assert data["cdt_context"].shape == (1, 32, 2, 2) and data["cdt_context"].dtype == "f4"
    new = "plate,spoon|teaspoon,saucer"
    relabel = cli.invoke(app, ["relabel", str(tmp_path / "a"), "-c", new, "-q"])
    assert relabel.exit_code == 0, relabel.stderr
    fresh = cli.invoke(app, ["segment", str(photos), "-c", new, "-o", str(tmp_path / "b"), *common])
    assert fresh.exit_code == 0, fresh.stderr
    for rel in ("a.png.json", "b.png.json"):
        got = json.loads((tmp_path / "a" / "per-image" / rel).read_text())
        want = json.loads((tmp_path / "b" / "per-image" / rel).read_text())
        assert got["annotations"], rel
        assert [a["segmentation"] for a in got["annotations"]] == [
            a["segmentation"] for a in want["annotations"]
        ]
        assert [a["category_id"] for a in got["annotations"]] == [
            a["category_id"] for a in want["annotations"]
        ]
        # The cdt context is cached in float32, so the text side is the first run's (a context
        # remade from the float16 features is not: see the next test).
        np.testing.assert_allclose(
            [a["score"] for a in got["annotations"]],
            [a["score"] for a in want["annotations"]],
            atol=1e-6,
        )


def test_cached_context_round_trips_and_scores_identically(
    maftp_file: Path, scene, tmp_path: Path
) -> None:
    from samadapter.io.feature_store import load_cdt_context, load_features, save_features

    image, masks = scene
    seg = load_segmenter(
        "tiny-random",
        sam="tiny-random",
        adapter_checkpoint=maftp_file,
        device="cpu",
        settings={"keep_unknown": True},
        text_cache=False,
    )
    feats = seg.image_features(image)
    proposals = seg.propose(image)
    save_features(tmp_path / "with.npz", feats, proposals)
    assert feats.cdt_context is None and load_cdt_context(tmp_path / "with.npz") is None
    seg.cdt_context(feats)
    save_features(tmp_path / "with.npz", feats, proposals)
    context = load_cdt_context(tmp_path / "with.npz")
    assert context is not None and torch.equal(context, feats.cdt_context)
    again = load_features(tmp_path / "with.npz")[0]
    assert again.cdt_context is not None and torch.equal(again.cdt_context, context)
    emb = seg.mask_embeddings(feats, masks)
    a = seg.classify(image, masks, "a,b")
    b = seg.classify(image, masks, "a,b", embeddings=emb, cdt_context=context)
    np.testing.assert_array_equal(a.class_scores, b.class_scores)
    # Without the stored context, remaking it from the float16 features is not exact.
    half = load_features(tmp_path / "with.npz")[0]
    half.cdt_context = None
    c = seg.classify(half, masks, "a,b", embeddings=emb)
    assert not np.array_equal(c.class_scores, a.class_scores)


def test_classify_and_benchmark_cli_take_a_maftp_file(
    maftp_file: Path, photos: Path, tmp_path: Path, scene
) -> None:
    _, masks = scene
    mask_dir = tmp_path / "masks"
    mask_dir.mkdir()
    label = np.zeros(masks.shape[1:], np.uint8)
    for i, m in enumerate(masks):
        label[m] = i + 1
    Image.fromarray(label).save(mask_dir / "a.png")
    result = CliRunner().invoke(
        app,
        [
            "classify",
            str(photos / "a.png"),
            "--masks",
            str(mask_dir / "a.png"),
            "-c",
            "a,b",
            "--preset",
            "tiny-random",
            "--adapter-checkpoint",
            str(maftp_file),
            "--device",
            "cpu",
            "--keep-unknown",
            "-q",
            "-o",
            str(tmp_path / "c"),
        ],
    )
    assert result.exit_code == 0, result.stderr
    ann = json.loads((tmp_path / "c" / "per-image" / "a.png.json").read_text())["annotations"]
    assert len(ann) == 3
    data = tmp_path / "data"
    synth_data.write_folder(data)
    result = CliRunner().invoke(
        app,
        [
            "benchmark",
            "--dataset",
            "folder",
            "--images",
            str(data / "images"),
            "--labels",
            str(data / "labels"),
            "--classes-file",
            str(data / "classes.txt"),
            "--label-offset",
            "1",
            "--preset",
            "tiny-random",
            "--adapter-checkpoint",
            str(maftp_file),
            "--device",
            "cpu",
            "--compare",
            "--masks",
            "gt",
            "--output",
            str(tmp_path / "bench"),
        ],
    )
    assert result.exit_code == 0, result.stderr
    runs = json.loads((tmp_path / "bench" / "metrics.json").read_text())["runs"]
    assert set(runs) == {"gt/mask-adapter", "gt/mask-pooling"}
    assert all(0.0 <= r["mIoU"] <= 100.0 for r in runs.values())


def test_accurate_preset_uses_maftp_large(tmp_path: Path) -> None:
    from samadapter.presets import PRESETS

    assert PRESETS["accurate"].adapter == "maftp_convnext_large"
    assert PRESETS["fast"].adapter == "fcclip_convnext_large"
    with pytest.raises(WeightsError) as info:
        load_segmenter(
            "accurate",
            device="cpu",
            weights_dir=tmp_path,
            offline=True,
            progress=False,
            with_proposer=False,
        )
    assert "maftp_convnext_large_maskadapter.pth" in str(info.value)
    assert "open_clip" not in str(info.value)  # the MAFT+ file carries its own CLIP

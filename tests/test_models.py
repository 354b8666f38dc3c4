"""Loading weights into models: official layouts, strict checks, offline errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samadapter.checkpoint import to_demo_state_dict, to_detectron2_state_dict
from samadapter.errors import CheckpointError, ConfigError, WeightsError
from samadapter.modeling.mask_adapter import MaskAdapter
from samadapter.modeling.proposer import SamProposer, build_sam
from samadapter.models import (
    LazyProposer,
    build_classifier_models,
    build_sam_model,
    build_tiny_classifier,
    load_segmenter,
)
from samadapter.pipeline import PipelineSettings, Segmenter
from samadapter.vocab import parse_classes


def _trained_like() -> tuple[torch.nn.Module, MaskAdapter]:
    """Tiny models with weights unlike the seeded defaults (so loading is observable)."""
    backbone, adapter = build_tiny_classifier()
    assert adapter is not None
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in list(backbone.parameters()) + list(adapter.parameters()):
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return backbone, adapter


def _adapter_parts(adapter: MaskAdapter) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    head = {k: v.clone() for k, v in adapter.mask_adapter.state_dict().items()}
    return head, adapter.void_embedding.weight.detach().clone()


def _probs(backbone, adapter, scene) -> np.ndarray:
    image, masks = scene
    seg = Segmenter(backbone, adapter, None, PipelineSettings(clip_size=64))
    return seg.class_probabilities(image, masks, seg.text_classifier(parse_classes("a,b,c")))


def test_detectron2_layout_loads_clip_and_adapter(tmp_path: Path, scene) -> None:
    backbone, adapter = _trained_like()
    head, void = _adapter_parts(adapter)
    sd = to_detectron2_state_dict(head, void, backbone.model.state_dict())
    sd["sem_seg_head.predictor.weight"] = torch.zeros(3)  # FC-CLIP's own modules are ignored
    torch.save({"model": sd}, tmp_path / "fcclip.pth")
    loaded_backbone, loaded_adapter = build_classifier_models(
        "tiny-random", tmp_path / "fcclip.pth", clip_checkpoint=None
    )
    assert loaded_adapter is not None
    np.testing.assert_allclose(
        _probs(loaded_backbone, loaded_adapter, scene), _probs(backbone, adapter, scene), atol=1e-6
    )


def test_demo_layout_takes_clip_from_its_own_file(tmp_path: Path, scene) -> None:
    backbone, adapter = _trained_like()
    head, void = _adapter_parts(adapter)
    torch.save(to_demo_state_dict(head, void), tmp_path / "demo.pth")
    torch.save(backbone.model.state_dict(), tmp_path / "clip.bin")
    calls: list[int] = []

    def clip_file(arch: str) -> Path:
        assert arch == "tiny-random"
        calls.append(1)
        return tmp_path / "clip.bin"

    b, a = build_classifier_models(None, tmp_path / "demo.pth", clip_file)  # width says tiny
    assert calls == [1]
    np.testing.assert_allclose(_probs(b, a, scene), _probs(backbone, adapter, scene), atol=1e-6)


def test_wrong_adapter_checkpoint_lists_the_problems(tmp_path: Path) -> None:
    backbone, adapter = _trained_like()
    head, void = _adapter_parts(adapter)
    del head["cnext2.gamma"]
    head["final.weight"] = torch.zeros(8, 32, 1, 1)
    head["cnext4.gamma"] = torch.zeros(32)
    sd = to_detectron2_state_dict(head, void, backbone.model.state_dict())
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        build_classifier_models("tiny-random", tmp_path / "bad.pth", None)
    message = str(info.value)
    assert "mask_adapter.cnext2.gamma" in message
    assert "mask_adapter.cnext4.gamma" in message
    assert "mask_adapter.final.weight" in message and "[8, 32, 1, 1]" in message
    assert "\n" not in message


def test_clip_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    backbone, adapter = _trained_like()
    head, void = _adapter_parts(adapter)
    clip = backbone.model.state_dict()
    clip["text_projection"] = torch.zeros(7, 7)
    torch.save({"model": to_detectron2_state_dict(head, void, clip)}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="text_projection"):
        build_classifier_models("tiny-random", tmp_path / "x.pth", None)


def test_sam_checkpoint_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    torch.save(build_sam("tiny-random").state_dict(), tmp_path / "sam_vit_b_01ec64.pth")
    with pytest.raises(CheckpointError, match="SAM vit_b"):
        build_sam_model("vit_b", tmp_path / "sam_vit_b_01ec64.pth")


def test_truncated_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    _, adapter = _trained_like()
    head, void = _adapter_parts(adapter)
    torch.save({"model": to_detectron2_state_dict(head, void)}, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth"):
        build_classifier_models("tiny-random", tmp_path / "cut.pth", None)


def test_offline_error_names_every_missing_file(tmp_path: Path) -> None:
    # eager_proposer (what `segment` uses): SAM's file is looked for with the others.
    with pytest.raises(WeightsError) as info:
        load_segmenter(
            "fast",
            device="cpu",
            weights_dir=tmp_path,
            offline=True,
            progress=False,
            eager_proposer=True,
        )
    message = str(info.value)
    assert "2 weight files are missing" in message
    assert str(tmp_path / "sam_vit_b_01ec64.pth") in message
    assert str(tmp_path / "fcclip_convnext_large_maskadapter.pth") in message
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in message
    # By default SAM loads on first use, so only the classifier's file is asked for here.
    with pytest.raises(WeightsError) as info:
        load_segmenter("fast", device="cpu", weights_dir=tmp_path, offline=True, progress=False)
    assert "1 weight file is missing" in str(info.value)
    assert "sam_vit_b" not in str(info.value)


def _only_adapter_files(tmp_path: Path) -> tuple[Path, Path]:
    """A weights folder holding only the FC-CLIP-layout and demo-layout adapter files (tiny
    models under the registry's file names), plus a separate open_clip file for the demo one."""
    backbone, adapter = _trained_like()
    head, void = _adapter_parts(adapter)
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(
        {"model": to_detectron2_state_dict(head, void, backbone.model.state_dict())},
        weights / "fcclip_convnext_large_maskadapter.pth",
    )
    torch.save(to_demo_state_dict(head, void), weights / "model_0279999_with_sem_new.pth")
    torch.save(backbone.model.state_dict(), tmp_path / "clip.bin")
    return weights, tmp_path / "clip.bin"


def test_classify_needs_only_the_adapter_file(tmp_path: Path, scene) -> None:
    image, masks = scene
    weights, _ = _only_adapter_files(tmp_path)
    seg = load_segmenter(
        "fast",
        clip="tiny-random",
        weights_dir=weights,
        offline=True,
        device="cpu",
        progress=False,
        settings={"clip_size": 64, "keep_ratio": 0.0},
    )
    result = seg.classify(image, masks, "a,b,c")  # the README's API example, offline
    assert len(result) == 3
    assert isinstance(seg.proposer, LazyProposer) and not seg.proposer.loaded
    assert seg.proposer.settings.points_per_side == 12  # known before SAM is built
    with pytest.raises(WeightsError, match=r"sam_vit_b_01ec64\.pth"):
        seg.propose(image)  # SAM is looked for only now


def test_no_sam_file_is_needed_without_a_proposer(tmp_path: Path, scene) -> None:
    image, masks = scene
    weights, clip_file = _only_adapter_files(tmp_path)
    # The demo preset pairs SAM 2.1 (whose file name does not start with "sam_").
    seg = load_segmenter(
        "demo",
        clip="tiny-random",
        clip_checkpoint=clip_file,
        weights_dir=weights,
        offline=True,
        device="cpu",
        progress=False,
        with_proposer=False,
        settings={"clip_size": 64},
    )
    assert seg.proposer is None and "sam" not in seg.info
    # the demo preset applies the demo's keep rule and no absolute threshold
    assert seg.settings.keep_ratio == 0.8 and seg.settings.score_thresh == 0.0
    assert len(seg.classify(image, masks, "a,b,c")) >= 1


def test_lazy_tiny_sam_is_the_eager_one(scene) -> None:
    image, _ = scene
    lazy = load_segmenter("tiny-random", device="cpu", progress=False)
    eager = load_segmenter("tiny-random", device="cpu", progress=False, eager_proposer=True)
    assert isinstance(lazy.proposer, LazyProposer) and isinstance(eager.proposer, LazyProposer)
    assert eager.proposer.loaded and not lazy.proposer.loaded
    a, b = lazy.propose(image), eager.propose(image)
    assert lazy.proposer.loaded
    np.testing.assert_array_equal(a.masks, b.masks)


def test_adapter_none_needs_open_clip_weights(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as info:
        load_segmenter(
            "fast", adapter="none", device="cpu", weights_dir=tmp_path, offline=True, progress=False
        )
    assert "open_clip_convnext_large_d_320" in str(info.value)
    assert "fcclip" not in str(info.value)


def test_unknown_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="preset"):
        load_segmenter("turbo", device="cpu")
    with pytest.raises(ConfigError, match="SAM model 'vit_x'"):
        load_segmenter("fast", sam="vit_x", device="cpu")
    with pytest.raises(ConfigError, match="not a Mask-Adapter"):
        load_segmenter("fast", adapter="sam_vit_b", device="cpu")


def test_tiny_random_preset_needs_no_files() -> None:
    seg = load_segmenter("tiny-random", device="cpu")
    assert seg.proposer is not None and seg.adapter is not None
    assert seg.proposer.settings.points_per_side == 4


def test_a_trained_checkpoint_loads_without_naming_its_clip(tmp_path: Path, scene) -> None:
    backbone, adapter = _trained_like()
    head, void = _adapter_parts(adapter)
    torch.save(
        {"model": to_detectron2_state_dict(head, void, backbone.model.state_dict())},
        tmp_path / "mine.pth",
    )
    seg = load_segmenter(
        "fast",
        sam="tiny-random",
        adapter_checkpoint=tmp_path / "mine.pth",
        device="cpu",
        offline=True,
        settings={"clip_size": 64},
    )
    assert seg.backbone.arch.name == "tiny-random"  # from the embedding width (32)
    np.testing.assert_allclose(
        _probs(seg.backbone, seg.adapter, scene), _probs(backbone, adapter, scene), atol=1e-6
    )


@pytest.mark.parametrize(
    "key",
    [
        "mask_adapter.fuse.weight",
        "void_embedding.weight",
        "mask_adapter.mask_downscaling.6.weight",
        "mask_adapter.cnext2.gamma",
        "mask_adapter.final.weight",
    ],
)
def test_one_damaged_tensor_is_the_only_one_named(tmp_path: Path, key: str) -> None:
    """The widths are voted over many tensors: one bad tensor does not make 33 good ones look
    wrong (nor pick another CLIP), so the message names just the bad one."""
    backbone, adapter = _trained_like()
    head, void = _adapter_parts(adapter)
    sd = to_detectron2_state_dict(head, void, backbone.model.state_dict())
    bad = list(sd[key].shape)
    bad[0 if key != "void_embedding.weight" else 1] = 640
    sd[key] = torch.zeros(bad)
    torch.save({"model": sd}, tmp_path / "one_bad.pth")
    with pytest.raises(CheckpointError) as info:
        build_classifier_models(None, tmp_path / "one_bad.pth", None)  # CLIP inferred too
    message = str(info.value)
    assert f"1 shape mismatches: {key}: checkpoint {bad} vs model" in message
    assert "Mask-Adapter for tiny-random" in message and message.count("checkpoint [") == 1


def test_a_folder_or_foreign_file_as_checkpoint_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"is a folder, not a file \(give the .pth"):
        build_classifier_models("tiny-random", tmp_path, None)
    rng = np.random.default_rng(0)
    for name, content in [
        ("x.pth", rng.bytes(3000)),
        ("y.pth", b"hello world\n"),
        ("sam_vit_b_01ec64.pth", rng.bytes(5000)),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as info:
            build_classifier_models("tiny-random", tmp_path / name, None)
        message = str(info.value)
        assert message.startswith(
            f"cannot read checkpoint {tmp_path / name}: not a PyTorch checkpoint, or corrupt"
        )
        assert "weights_only" not in message and "\n" not in message
    assert message.endswith("(delete it and run `samadapter weights download sam_vit_b`)")


def test_tiny_sam_is_never_compiled() -> None:
    """Compiling the tiny test decoder costs seconds per run and saves nothing (the CPU default
    compiles real SAM decoders from the second image on)."""
    seg = load_segmenter("tiny-random", device="cpu", progress=False)
    proposer = seg.proposer.load() if hasattr(seg.proposer, "load") else seg.proposer
    assert isinstance(proposer, SamProposer)
    assert proposer.options.compile is False

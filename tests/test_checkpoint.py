"""Tests of the official Mask-Adapter checkpoint layouts: loading, splitting, checking, writing."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from samadapter.checkpoint import (
    ADAPTER_PREFIX,
    CLIP_PREFIX,
    VOID_KEY,
    SplitCheckpoint,
    check_state_dict,
    load_checkpoint_file,
    save_checkpoint_atomic,
    split_adapter_state_dict,
    to_demo_state_dict,
    to_detectron2_state_dict,
)
from samadapter.errors import CheckpointError, OutputError


def _adapter() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shapes = {
        "mask_downscaling.0.weight": (4, 1, 3, 3),
        "mask_downscaling.1.weight": (4,),
        "mask_downscaling.6.bias": (8,),
        "fuse.weight": (8, 8, 1, 1),
        "cnext1.dwconv.weight": (8, 1, 7, 7),
        "cnext1.gamma": (8,),
        "cnext3.pwconv2.bias": (8,),
        "norm.weight": (8,),
        "final.weight": (16, 8, 1, 1),
    }
    return {k: torch.randn(s, generator=gen) for k, s in shapes.items()}


def _clip() -> dict[str, torch.Tensor]:
    return {
        "visual.trunk.stem.0.weight": torch.full((8, 3, 4, 4), 0.5),
        "visual.head.proj.weight": torch.full((8, 8), 0.25),
        "logit_scale": torch.tensor(4.6052),
    }


class _Payload:
    """An arbitrary object: ``weights_only`` loading must refuse to rebuild it."""

    loaded = 0

    def __init__(self) -> None:
        self.data = [1, 2, 3]

    def __setstate__(self, state: object) -> None:
        type(self).loaded += 1


VOID = torch.arange(8, dtype=torch.float32).reshape(1, 8)


def _detectron2_sd() -> dict[str, torch.Tensor]:
    sd = {ADAPTER_PREFIX + k: v for k, v in _adapter().items()}
    sd.update({CLIP_PREFIX + k: v for k, v in _clip().items()})
    sd[VOID_KEY] = VOID
    sd["sem_seg_head.predictor.class_embed.weight"] = torch.zeros(4, 4)
    sd["sem_seg_head.pixel_decoder.adapter_1.weight"] = torch.zeros(2)
    sd["criterion.empty_weight"] = torch.ones(3)
    return sd


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ------------------------------------------------------------------ load


def test_load_detectron2_wrapper(tmp_path: Path) -> None:
    path = tmp_path / "fcclip.pth"
    torch.save({"model": _detectron2_sd(), "iteration": 5}, path)
    sd = load_checkpoint_file(path)
    _assert_same(sd, _detectron2_sd())


def test_load_state_dict_wrapper_and_plain(tmp_path: Path) -> None:
    sd = OrderedDict(_adapter())
    torch.save({"state_dict": sd}, tmp_path / "a.pth")
    torch.save(sd, tmp_path / "b.pth")
    _assert_same(load_checkpoint_file(tmp_path / "a.pth"), _adapter())
    _assert_same(load_checkpoint_file(tmp_path / "b.pth"), _adapter())


def test_load_drops_non_tensor_entries(tmp_path: Path) -> None:
    torch.save({"fuse.weight": torch.ones(2), "__author__": "someone", "step": 3}, tmp_path / "c")
    assert list(load_checkpoint_file(tmp_path / "c")) == ["fuse.weight"]


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*absent\.pth"):
        load_checkpoint_file(tmp_path / "absent.pth")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint_file(tmp_path)


def test_load_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("this is not a checkpoint\nsecond line\n")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(path)
    message = str(info.value)
    assert message.startswith(f"cannot read checkpoint {path}: ")
    assert "\n" not in message


def test_load_truncated_file(tmp_path: Path) -> None:
    full = tmp_path / "full.pth"
    torch.save({"model": _detectron2_sd()}, full)
    data = full.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(cut)
    assert str(cut) in str(info.value)
    assert "\n" not in str(info.value)
    assert "truncated" in str(info.value)


def test_load_rejects_unsafe_pickle(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": torch.ones(1)}, "obj": _Payload()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(path)
    assert str(info.value).startswith(
        f"cannot read checkpoint {path}: it holds pickled Python objects ("
    )
    assert "_Payload" in str(info.value) and "state_dict()" in str(info.value)
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)
    assert _Payload.loaded == 0


def test_load_no_tensors_and_not_a_dict(tmp_path: Path) -> None:
    torch.save({"model": {"a": 1}}, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match="holds no tensors"):
        load_checkpoint_file(tmp_path / "a.pth")
    torch.save([torch.ones(1)], tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        load_checkpoint_file(tmp_path / "b.pth")


# ------------------------------------------------------------------ split


def test_split_detectron2(tmp_path: Path) -> None:
    path = tmp_path / "fcclip.pth"
    torch.save({"model": _detectron2_sd()}, path)
    split = split_adapter_state_dict(load_checkpoint_file(path))
    assert split.layout == "detectron2"
    _assert_same(split.adapter, _adapter())
    assert "fuse.weight" in split.adapter and "cnext1.dwconv.weight" in split.adapter
    assert split.clip is not None
    _assert_same(split.clip, _clip())
    assert split.void is not None and torch.equal(split.void, VOID)
    assert split.ignored == [
        "criterion.empty_weight",
        "sem_seg_head.pixel_decoder.adapter_1.weight",
        "sem_seg_head.predictor.class_embed.weight",
    ]
    assert split.ignored_prefixes() == {"criterion": 1, "sem_seg_head": 2}


def test_split_demo(tmp_path: Path) -> None:
    sd = dict(_adapter())
    sd[VOID_KEY] = VOID
    sd["extra.thing"] = torch.zeros(1)
    path = tmp_path / "model_0279999_with_sem_new.pth"
    torch.save(sd, path)
    split = split_adapter_state_dict(load_checkpoint_file(path))
    assert split.layout == "demo"
    _assert_same(split.adapter, _adapter())
    assert split.clip is None
    assert split.void is not None and torch.equal(split.void, VOID)
    assert split.ignored == ["extra.thing"]


def test_split_without_void() -> None:
    split = split_adapter_state_dict({ADAPTER_PREFIX + "fuse.weight": torch.ones(1)})
    assert split.void is None and split.clip is None and split.ignored == []


def test_split_not_an_adapter() -> None:
    sd = {"sem_seg_head.x": torch.ones(1), "backbone.clip_model.y": torch.ones(1)}
    with pytest.raises(CheckpointError) as info:
        split_adapter_state_dict(sd)
    assert "not a Mask-Adapter checkpoint" in str(info.value)
    assert "found prefixes backbone, sem_seg_head" in str(info.value)


# ------------------------------------------------------------------ round trips


def test_round_trip_detectron2(tmp_path: Path) -> None:
    sd = to_detectron2_state_dict(_adapter(), VOID, _clip())
    assert ADAPTER_PREFIX + "fuse.weight" in sd and CLIP_PREFIX + "logit_scale" in sd
    path = save_checkpoint_atomic({"model": sd}, tmp_path / "sub" / "out.pth")
    split = split_adapter_state_dict(load_checkpoint_file(path))
    assert split.layout == "detectron2"
    _assert_same(split.adapter, _adapter())
    assert split.clip is not None
    _assert_same(split.clip, _clip())
    assert split.void is not None and torch.equal(split.void, VOID)
    assert split.ignored == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.pth"]


def test_round_trip_demo(tmp_path: Path) -> None:
    sd = to_demo_state_dict(_adapter(), VOID)
    assert "fuse.weight" in sd and VOID_KEY in sd
    path = save_checkpoint_atomic(sd, tmp_path / "demo.pth")
    split = split_adapter_state_dict(load_checkpoint_file(path))
    assert split == SplitCheckpoint(
        adapter=split.adapter, void=split.void, clip=None, ignored=[], layout="demo"
    )
    _assert_same(split.adapter, _adapter())
    assert split.void is not None and torch.equal(split.void, VOID)


def test_split_then_rebuild_equals_original() -> None:
    original = _detectron2_sd()
    split = split_adapter_state_dict(original)
    rebuilt = to_detectron2_state_dict(split.adapter, split.void, split.clip)
    kept = {k: v for k, v in original.items() if k not in split.ignored}
    _assert_same(rebuilt, kept)


def test_to_demo_rejects_unknown_modules() -> None:
    with pytest.raises(CheckpointError, match=r"1 keys outside the adapter modules: head\.weight"):
        to_demo_state_dict({"head.weight": torch.ones(1)}, None)


def test_save_atomic_keeps_old_file_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "out.pth"
    dest.write_bytes(b"old")

    class Unpicklable:
        def __reduce__(self) -> tuple[object, ...]:
            raise RuntimeError("cannot pickle this")

    with pytest.raises((OutputError, RuntimeError)):
        save_checkpoint_atomic({"x": Unpicklable()}, dest)
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pth"]


def test_save_atomic_unwritable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write checkpoint"):
        save_checkpoint_atomic({"a": torch.ones(1)}, blocker / "out.pth")


# ------------------------------------------------------------------ check_state_dict


def test_check_state_dict_ok() -> None:
    given = _adapter()
    check_state_dict({k: v.shape for k, v in given.items()}, given, "the head", "x.pth")
    check_state_dict({k: tuple(v.shape) for k, v in given.items()}, given, "the head", None)


def test_check_state_dict_reports_everything() -> None:
    given = _adapter()
    expected: dict[str, torch.Size | tuple[int, ...]] = {k: v.shape for k, v in given.items()}
    del given["norm.weight"]
    given["cnext9.gamma"] = torch.ones(2)
    expected["fuse.weight"] = (16, 8, 1, 1)
    with pytest.raises(CheckpointError) as info:
        check_state_dict(expected, given, "the Mask-Adapter head", "ckpt.pth")
    message = str(info.value)
    assert message.startswith("checkpoint ckpt.pth does not match the Mask-Adapter head: ")
    assert "1 missing keys: norm.weight" in message
    assert "1 unexpected keys: cnext9.gamma" in message
    assert "1 shape mismatches: fuse.weight: checkpoint [8, 8, 1, 1] vs model [16, 8, 1, 1]" in (
        message
    )
    assert message.endswith("(is this the right checkpoint for the Mask-Adapter head?)")
    assert "\n" not in message


def test_check_state_dict_truncates_long_lists() -> None:
    expected = {f"layer{i:02d}.weight": (1,) for i in range(25)}
    with pytest.raises(CheckpointError) as info:
        check_state_dict(expected, {}, "CLIP", Path("c.pth"))
    message = str(info.value)
    assert "25 missing keys: layer00.weight" in message
    assert "layer09.weight (+15 more)" in message
    assert "layer10.weight" not in message

"""The training loop: schedule, cache, steps of both stages, checkpoints, resume, loading."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from samadapter.data.synthetic import SyntheticShapes
from samadapter.errors import ConfigError
from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.mask_adapter import MaskAdapter
from samadapter.models import build_classifier_models, build_tiny_classifier, load_segmenter
from samadapter.pipeline import PipelineSettings, Segmenter
from samadapter.train.checkpoints import STATE_FILE
from samadapter.train.features import TrainingFeatures
from samadapter.train.loop import TrainConfig, Trainer

SIZE = (64, 80)
CLIP = 64


def make_data(
    tiny: Callable[[], tuple[ClipBackbone, MaskAdapter]],
    tmp_path: Path,
    n: int = 6,
    seed: int = 0,
    proposer: Callable[[np.ndarray], np.ndarray] | None = None,
    key: str = "colour",
    cache: bool = True,
) -> tuple[ClipBackbone, MaskAdapter, TrainingFeatures]:
    """Tiny models and a small cached synthetic dataset."""
    backbone, adapter = tiny()
    ds = SyntheticShapes(n, size=SIZE, seed=seed)
    data = TrainingFeatures(
        ds,
        backbone,
        clip_size=CLIP,
        cache_dir=tmp_path / "cache" if cache else None,
        proposer=proposer,
        proposer_key=key,
    )
    return backbone, adapter, data


def config(**kw) -> TrainConfig:
    base = {
        "steps": 6,
        "batch_size": 2,
        "lr": 1e-3,
        "warmup_steps": 2,
        "log_every": 1,
        "checkpoint_every": 0,
    }
    base.update(kw)
    return TrainConfig(**base)


def test_schedule_warmup_then_decay() -> None:
    c = TrainConfig(steps=100, warmup_steps=10, warmup_factor=0.001, schedule="poly")
    assert c.lr_factor(0) == pytest.approx(0.001)
    assert c.lr_factor(5) == pytest.approx((0.001 * 0.5 + 0.5) * 0.95**0.9)
    assert c.lr_factor(10) == pytest.approx(0.9**0.9)
    assert c.lr_factor(100) == 0.0
    cos = TrainConfig(steps=100, warmup_steps=0, schedule="cosine")
    assert cos.lr_factor(50) == pytest.approx(0.5)
    assert TrainConfig(steps=100, warmup_steps=0, schedule="constant").lr_factor(99) == 1.0
    assert TrainConfig(stage="warmup").effective_ce_weight == 1.0
    assert TrainConfig(stage="mixed").effective_ce_weight == 2.0
    assert TrainConfig(stage="mixed", ce_weight=3.0).effective_ce_weight == 3.0


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="stage"):
        TrainConfig(stage="finetune")
    with pytest.raises(ConfigError, match="schedule"):
        TrainConfig(schedule="step")
    with pytest.raises(ConfigError, match="batch-size"):
        TrainConfig(batch_size=0)


def test_cache_is_computed_once_and_reused(tiny, tmp_path: Path, proposer) -> None:
    _, _, data = make_data(tiny, tmp_path, n=3, proposer=proposer)
    first = data.prepare()
    assert (first.computed, first.cached) == (3, 0)
    item = data[1]
    assert item.features.raw.dtype == torch.float32
    assert item.proposals is not None and len(item.proposals) >= 1
    # a fresh source over the same folder reads everything back, bit for bit
    _, _, again = make_data(tiny, tmp_path, n=3, proposer=proposer)
    report = again.prepare()
    assert (report.computed, report.cached) == (0, 3)
    back = again[1]
    torch.testing.assert_close(back.features.raw, item.features.raw, rtol=0, atol=0)
    np.testing.assert_array_equal(back.gt.masks, item.gt.masks)
    np.testing.assert_array_equal(back.gt.classes, item.gt.classes)
    np.testing.assert_array_equal(back.proposals, item.proposals)
    # other SAM settings: proposals are recomputed, CLIP features kept
    _, _, other = make_data(tiny, tmp_path, n=3, proposer=proposer, key="other")
    assert other.prepare().computed == 3
    # a damaged file is recomputed, not fatal
    other.feature_path(0).write_bytes(b"broken")
    torch.testing.assert_close(other[0].features.raw, data[0].features.raw, rtol=0, atol=0)


def test_live_features_match_cached(tiny, tmp_path: Path) -> None:
    _, _, cached = make_data(tiny, tmp_path, n=2)
    _, _, live = make_data(tiny, tmp_path, n=2, cache=False)
    torch.testing.assert_close(
        cached[0].features.raw, live[0].features.raw, rtol=1e-3, atol=1e-3
    )  # float16 storage
    np.testing.assert_array_equal(cached[0].gt.masks, live[0].gt.masks)


def test_warmup_step_uses_ground_truth_masks(tiny, tmp_path: Path) -> None:
    backbone, adapter, data = make_data(tiny, tmp_path, n=4)
    trainer = Trainer(backbone, adapter, data, config(max_gt_masks=2))
    before = {k: v.clone() for k, v in adapter.state_dict().items()}
    stats = trainer.train_step()
    assert trainer.step == 1
    n_gt = [min(2, len(data[i].gt)) for i in trainer.batch_indices(0)]
    assert stats["masks"] == sum(n_gt) and stats["pairs"] == 0
    assert np.isfinite(stats["loss"]) and stats["consistency"] == 0.0
    assert stats["lr"] == pytest.approx(1e-3 * config().lr_factor(0))
    changed = [k for k, v in adapter.state_dict().items() if not torch.equal(v, before[k])]
    assert "void_embedding.weight" in changed and "mask_adapter.final.weight" in changed
    assert all(not p.requires_grad for p in backbone.parameters())


def test_mixed_step_pairs_sam_masks_with_ground_truth(tiny, tmp_path: Path, proposer) -> None:
    backbone, adapter, data = make_data(tiny, tmp_path, n=4, proposer=proposer)
    trainer = Trainer(backbone, adapter, data, config(stage="mixed"))
    index = next(i for i in range(len(data)) if (data[i].proposal_iou() > 0.7).any())
    sel = trainer.select_masks(data[index], torch.Generator().manual_seed(0))
    iou = data[index].proposal_iou()
    assert len(sel.pred_rows) == min(8, int((iou.max(dim=1).values > 0.7).sum()))
    assert len(sel.pred_rows) >= 1
    assert len(sel.targets) <= 32
    np.testing.assert_array_equal(sel.targets[sel.pred_rows], sel.targets[sel.matched_rows])
    stats = trainer.train_step()
    assert stats["pairs"] >= 1 and -1e-6 <= stats["consistency"] <= 2.0
    assert stats["loss"] == pytest.approx(2.0 * stats["ce"] + 5.0 * stats["consistency"], rel=1e-5)
    with pytest.raises(ConfigError, match="proposals"):
        Trainer(*make_data(tiny, tmp_path, n=2), config(stage="mixed"))


def test_resume_equals_uninterrupted_training(tiny, tmp_path: Path, proposer) -> None:
    n = 3
    cfg = config(stage="mixed", steps=2 * n, checkpoint_every=0)
    a = Trainer(*make_data(tiny, tmp_path, proposer=proposer), cfg, tmp_path / "a")
    a.fit(progress=False)

    b = Trainer(*make_data(tiny, tmp_path, proposer=proposer), cfg, tmp_path / "b")
    b.fit(until=n, progress=False)
    assert (tmp_path / "b" / STATE_FILE).is_file() and b.step == n
    torch.manual_seed(1234)  # the resumed run must not depend on the global RNG as left here
    c = Trainer(*make_data(tiny, tmp_path, proposer=proposer), cfg, tmp_path / "b")
    assert c.resume() == n
    c.fit(progress=False)
    assert c.step == 2 * n
    for key, value in a.adapter.state_dict().items():
        torch.testing.assert_close(c.adapter.state_dict()[key], value, rtol=0, atol=1e-6)
    assert c.optimizer.param_groups[0]["lr"] == a.optimizer.param_groups[0]["lr"]
    rows = (tmp_path / "b" / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", *map(str, range(1, 2 * n + 1))]


def test_resume_refuses_other_settings(tiny, tmp_path: Path) -> None:
    t = Trainer(*make_data(tiny, tmp_path), config(steps=4), tmp_path / "run")
    t.fit(until=2, progress=False)
    other = Trainer(*make_data(tiny, tmp_path), config(steps=4, lr=5e-4), tmp_path / "run")
    with pytest.raises(ConfigError, match="lr"):
        other.resume()
    longer = Trainer(*make_data(tiny, tmp_path), config(steps=8), tmp_path / "run")
    assert longer.resume() == 2  # more steps are fine: the schedule stretches
    assert longer.optimizer.param_groups[0]["lr"] == pytest.approx(
        1e-3 * config(steps=8).lr_factor(2)
    )


def test_checkpoints_logs_and_pruning(tiny, tmp_path: Path) -> None:
    backbone, adapter, data = make_data(tiny, tmp_path, n=4)
    _, _, val = make_data(tiny, tmp_path, n=2, seed=5)
    out = tmp_path / "run"
    t = Trainer(
        backbone,
        adapter,
        data,
        config(steps=5, checkpoint_every=1, keep_checkpoints=2, val_every=2),
        out,
        val_data=val,
    )
    summary = t.fit(progress=False)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "classes.txt",
            "config.json",
            "last_checkpoint",
            "log.jsonl",
            "model_0000003.pth",
            "model_0000003_demo.pth",
            "model_0000004.pth",
            "model_0000004_demo.pth",
            "model_final.pth",
            "model_final_demo.pth",
            STATE_FILE,
            "train_log.csv",
        ]
    )
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5]
    vals = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in vals] == [2, 4, 5]
    assert {"val_mask_acc", "val_mIoU", "val_masks", "chance"} <= set(vals[0])
    assert len(summary.history) == 5 and len(summary.validations) == 3
    assert (out / "classes.txt").read_text().splitlines()[0] == "red"
    saved = torch.load(out / "model_final.pth", weights_only=True)
    assert saved["iteration"] == 5 and "backbone.clip_model.logit_scale" in saved["model"]


def test_interrupt_saves_a_resumable_checkpoint(tiny, tmp_path: Path, monkeypatch) -> None:
    t = Trainer(*make_data(tiny, tmp_path), config(steps=6), tmp_path / "run")
    real = t.train_step

    def step_then_stop() -> dict[str, float]:
        if t.step == 2:
            raise KeyboardInterrupt
        return real()

    monkeypatch.setattr(t, "train_step", step_then_stop)
    with pytest.raises(KeyboardInterrupt):
        t.fit(progress=False)
    state = torch.load(tmp_path / "run" / STATE_FILE, weights_only=True)
    assert state["step"] == 2


def test_trained_checkpoint_loads_strictly_in_segment_and_benchmark(tiny, tmp_path: Path) -> None:
    backbone, adapter, data = make_data(tiny, tmp_path, n=4)
    out = tmp_path / "run"
    trainer = Trainer(backbone, adapter, data, config(steps=3, lr=1e-2), out)
    trainer.fit(progress=False)
    trained = {k: v.detach().clone() for k, v in trainer.adapter.state_dict().items()}
    assert not torch.equal(
        trained["void_embedding.weight"], torch.zeros_like(trained["void_embedding.weight"])
    )

    # detectron2 layout with the frozen CLIP: loads stand-alone (segment --adapter-checkpoint)
    b2, a2 = build_classifier_models("tiny-random", out / "model_final.pth", clip_checkpoint=None)
    assert a2 is not None and a2.mask_adapter.fuse.weight.shape[0] == 32
    for key, value in trained.items():
        torch.testing.assert_close(a2.state_dict()[key], value, rtol=0, atol=0)
    sample = data.dataset[0]
    masks = data[0].gt.masks
    vocab = data.vocab

    def probs(bb, ad) -> np.ndarray:
        seg = Segmenter(bb, ad, None, PipelineSettings(clip_size=CLIP))
        return seg.class_probabilities(sample.image, masks, seg.text_classifier(vocab))

    np.testing.assert_allclose(probs(b2, a2), probs(trainer.backbone, trainer.adapter), atol=1e-6)
    # demo layout: adapter only, CLIP from its own file
    clip_file = tmp_path / "clip.bin"
    torch.save(build_tiny_classifier()[0].model.state_dict(), clip_file)
    _, a3 = build_classifier_models("tiny-random", out / "model_final_demo.pth", clip_file)
    assert a3 is not None
    torch.testing.assert_close(a3.void_embedding.weight, trained["void_embedding.weight"])
    # what `segment` and `benchmark` call
    seg = load_segmenter(
        "tiny-random",
        adapter_checkpoint=out / "model_final.pth",
        clip="tiny-random",
        device="cpu",
        progress=False,
        settings={"clip_size": CLIP},
    )
    np.testing.assert_allclose(
        seg.class_probabilities(sample.image, masks, seg.text_classifier(vocab)),
        probs(trainer.backbone, trainer.adapter),
        atol=1e-6,
    )


# ----------------------------------------------------------------------------- failing loudly


class _AllIgnore(SyntheticShapes):
    """The synthetic images with every label pixel set to ignore."""

    def __getitem__(self, index: int):  # type: ignore[no-untyped-def]
        import dataclasses

        from samadapter.data.base import IGNORE

        sample = super().__getitem__(index)
        return dataclasses.replace(sample, label=np.full_like(sample.label, IGNORE))


def test_all_ignore_labels_stop_early_and_write_no_model(tiny, tmp_path: Path) -> None:
    from samadapter.errors import DatasetError

    backbone, adapter = tiny()
    data = TrainingFeatures(_AllIgnore(4, size=SIZE, seed=0), backbone, clip_size=CLIP)
    before = {k: v.clone() for k, v in adapter.state_dict().items()}
    t = Trainer(backbone, adapter, data, config(steps=100, batch_size=2), tmp_path / "run")
    with pytest.raises(
        DatasetError,
        match=r"none of the 2 training steps had a labelled region "
        r"to learn from: the labels of the 4 training images",
    ):
        t.fit(progress=False)
    assert t.step == 2  # stopped once every image was seen, not after 100 steps
    assert not list((tmp_path / "run").glob("model_*")), "no model file may be written"
    assert all(torch.equal(v, before[k]) for k, v in adapter.state_dict().items())


def test_short_run_without_labels_fails_at_the_end(tiny, tmp_path: Path) -> None:
    from samadapter.errors import DatasetError

    backbone, adapter = tiny()
    data = TrainingFeatures(_AllIgnore(6, size=SIZE, seed=0), backbone, clip_size=CLIP)
    t = Trainer(backbone, adapter, data, config(steps=1, batch_size=2), tmp_path / "run")
    with pytest.raises(DatasetError, match="none of the 1 training steps"):
        t.fit(progress=False)
    assert not (tmp_path / "run" / "model_final.pth").exists()


def test_non_finite_loss_stops_before_the_weights_change(tiny, tmp_path: Path, monkeypatch) -> None:
    from samadapter.errors import TrainingError

    t = Trainer(
        *make_data(tiny, tmp_path, n=4), config(steps=6, checkpoint_every=1), tmp_path / "run"
    )
    real = t.logits

    def poisoned(embeddings: torch.Tensor) -> torch.Tensor:
        out = real(embeddings)
        return out * float("nan") if t.step == 2 else out

    monkeypatch.setattr(t, "logits", poisoned)
    with pytest.raises(
        TrainingError,
        match=r"training stopped at step 3: the loss is nan "
        r"\(ce nan, .* on images ",
    ) as info:
        t.fit(progress=False)
    assert "lower --lr" in str(info.value)
    assert t.step == 2 and all(torch.isfinite(p).all() for p in t.adapter.parameters())
    out = tmp_path / "run"
    assert not (out / "model_final.pth").exists()
    assert torch.load(out / STATE_FILE, weights_only=True)["step"] == 2  # the last good one


def test_checkpoint_with_non_finite_weights_is_refused(tiny, tmp_path: Path) -> None:
    from samadapter.errors import TrainingError

    t = Trainer(*make_data(tiny, tmp_path, n=2), config(steps=2), tmp_path / "run")
    with torch.no_grad():
        t.adapter.void_embedding.weight[0, 0] = float("inf")
    (tmp_path / "run").mkdir()
    with pytest.raises(TrainingError, match=r"void_embedding\.weight"):
        t.save_checkpoint(final=True)
    assert list((tmp_path / "run").iterdir()) == []


def test_corrupt_training_state_is_one_line(tmp_path: Path) -> None:
    from samadapter.errors import CheckpointError
    from samadapter.train.checkpoints import load_training_state

    (tmp_path / STATE_FILE).write_bytes(b"<html>not a checkpoint</html>")
    with pytest.raises(CheckpointError) as info:
        load_training_state(tmp_path)
    assert str(info.value) == (
        f"cannot read training state {tmp_path / STATE_FILE}: not a PyTorch checkpoint, or "
        "corrupt (truncated, or another kind of file) (resume from an intact copy, or start "
        "again with a new --output)"
    )

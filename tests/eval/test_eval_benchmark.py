"""The benchmark runner: oracle with ground-truth masks, the tiny pipeline end to end, resume and
scoring saved predictions."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from samadapter.data.ade20k import load_ade20k
from samadapter.data.base import Sample
from samadapter.data.folder import FolderDataset
from samadapter.errors import ConfigError, DatasetError, OutputError
from samadapter.eval.benchmark import (
    Method,
    gt_segments,
    oracle_classifier,
    run_benchmark,
    score_predictions,
    select_indices,
)
from samadapter.eval.predictions import read_prediction, write_prediction
from samadapter.pipeline import Segmenter

REPORT_FILES = ("metrics.json", "per_class.csv", "report.md", "per_class_iou.png")


def oracle(ds: FolderDataset) -> Method:
    return Method("oracle", oracle_classifier(len(ds.vocab)))


def refuse(masks: np.ndarray, sample: Sample) -> np.ndarray:
    raise AssertionError(f"{sample.name} should have been skipped")


def test_gt_segments_one_mask_per_connected_region() -> None:
    label = np.full((6, 8), -1, dtype=np.int32)
    label[0:2, 0:2] = 0
    label[4:6, 5:8] = 0  # a second region of class 0
    label[0:3, 4:8] = 1
    masks, classes = gt_segments(label)
    assert masks.shape == (3, 6, 8) and masks.dtype == bool
    assert classes.tolist() == [0, 0, 1]
    assert masks.sum(axis=0).max() == 1  # disjoint
    np.testing.assert_array_equal(masks.any(axis=0), label >= 0)  # cover every labelled pixel
    for m, c in zip(masks, classes, strict=True):
        assert (label[m] == c).all()
    empty, none = gt_segments(np.full((3, 3), -1, np.int32))
    assert empty.shape == (0, 3, 3) and none.shape == (0,)


def test_select_indices_fixed_seeded_subset() -> None:
    a = select_indices(100, 10, seed=0)
    assert a == select_indices(100, 10, seed=0)
    assert a == sorted(a) and len(set(a)) == 10 and max(a) < 100
    assert a != select_indices(100, 10, seed=1)
    assert select_indices(5, None) == select_indices(5, 50) == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError):
        select_indices(5, 0)


def test_prediction_png_roundtrip_16_bit(tmp_path: Path) -> None:
    pred = np.array([[-1, 0, 846], [5, 300, -1]], dtype=np.int32)
    write_prediction(tmp_path / "a" / "b.png", pred)
    assert Image.open(tmp_path / "a" / "b.png").mode.startswith("I;16")
    np.testing.assert_array_equal(read_prediction(tmp_path / "a" / "b.png", 847), pred)
    Image.fromarray(np.array([[0, 1, 2]], np.uint8)).save(tmp_path / "eight.png")  # from elsewhere
    np.testing.assert_array_equal(read_prediction(tmp_path / "eight.png", 2), [[-1, 0, 1]])
    with pytest.raises(DatasetError, match="only 1 classes"):
        read_prediction(tmp_path / "eight.png", 1)


def test_gt_masks_with_oracle_score_100(tmp_path: Path, folder_ds: FolderDataset) -> None:
    result = run_benchmark(folder_ds, tmp_path / "out", methods=[oracle(folder_ds)], masks="gt")
    m = result.metrics()["gt/oracle"]
    assert (m.miou, m.fwiou, m.macc, m.pacc, m.unlabelled_share) == (100, 100, 100, 100, 0)
    assert result.computed == 3 and result.skipped == 0
    for name in REPORT_FILES:
        assert (tmp_path / "out" / name).is_file()
    for name in folder_ds.names():
        assert (tmp_path / "out" / "predictions" / "gt" / "oracle" / f"{name}.png").is_file()


def test_ade150_oracle_report_shows_paper_numbers_labelled(
    tmp_path: Path, synth: ModuleType
) -> None:
    synth.write_ade150(tmp_path / "ade")
    ds = load_ade20k(tmp_path / "ade", "ade20k-150")
    out = tmp_path / "out"
    result = run_benchmark(ds, out, methods=[oracle(ds)], masks="gt")
    assert result.metrics()["gt/oracle"].miou == 100
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "36.6" in report and "38.2" in report
    assert "not SAM" in report and "paper" in report.lower()
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert summary["runs"]["gt/oracle"]["mIoU"] == 100
    assert summary["classes_in_ground_truth"] == 7  # 0 2 149, 5 0 12, 3 7 149
    assert {r["mIoU"] for r in summary["reference"]} == {36.6, 38.2, 35.6}  # FC-CLIP, MAFTP-L, -B
    rows = list(csv.DictReader((out / "per_class.csv").open(encoding="utf-8")))
    assert len(rows) == 150 and rows[0]["name"] == "wall" and rows[0]["id"] == "1"
    assert rows[149]["gt/oracle:iou"] == "100.0000"
    assert rows[1]["gt/oracle:iou"] == ""  # absent from the ground truth: left out


def test_tiny_pipeline_compare_end_to_end(
    tmp_path: Path, folder_ds: FolderDataset, tiny_segmenter: Segmenter
) -> None:
    out = tmp_path / "out"
    seen = []
    result = run_benchmark(
        folder_ds,
        out,
        segmenter=tiny_segmenter,
        methods=["mask-adapter", "mask-pooling"],
        masks="sam",
        on_image=seen.append,
    )
    assert [r.key for r in result.runs] == ["sam/mask-adapter", "sam/mask-pooling"]
    assert [p.done for p in seen] == [1, 2, 3] and set(seen[-1].miou) == {
        r.key for r in result.runs
    }
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(summary["runs"]) == {"sam/mask-adapter", "sam/mask-pooling"}
    assert "sam" in summary["adapter_gain"]
    for run in summary["runs"].values():
        assert 0 <= run["mIoU"] <= 100 and 0 <= run["unlabelled"] <= 100
    stages = summary["timings"]["mean_seconds"]
    for stage in (
        "read",
        "sam_encoder",
        "sam_decoder",
        "text",
        "clip_dense",
        "classify",
        "classify:mask-adapter",
        "classify:mask-pooling",
        "semantic",
        "write",
        "score",
        "total",
    ):
        assert stage in stages, stage
    assert summary["settings"]["pipeline"]["sam"]["points_per_side"] == 4
    timings = list(csv.DictReader((out / "timings.csv").open(encoding="utf-8")))
    assert sorted(r["name"] for r in timings) == folder_ds.names()
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "Mask-Adapter gain over plain mask pooling on the same SAM masks" in report
    assert "worst classes" in report and "per_class_iou.png" in report
    assert "paper reports no number" in report
    chart = Image.open(out / "per_class_iou.png")
    assert chart.mode == "RGB" and chart.size[0] > 500
    # predictions are the einsum semantic maps at the original size
    for name, label in zip(folder_ds.names(), (folder_ds.label(i) for i in range(3)), strict=True):
        pred = read_prediction(out / "predictions" / "sam" / "mask-adapter" / f"{name}.png", 4)
        assert pred.shape == label.shape

    # --predictions: the saved PNGs score exactly like the live run
    rescored = score_predictions(folder_ds, out, tmp_path / "rescored")
    assert [r.key for r in rescored.runs] == [r.key for r in result.runs]
    for key, cm in result.confusion.items():
        np.testing.assert_array_equal(rescored.confusion[key].matrix, cm.matrix)
    live = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["runs"]
    again = json.loads((tmp_path / "rescored" / "metrics.json").read_text(encoding="utf-8"))
    for key in live:
        for k in ("mIoU", "fwIoU", "mAcc", "pAcc", "unlabelled"):
            assert again["runs"][key][k] == live[key][k]
    assert again["timings"]["images"] == 3  # the run's timings.csv is found and reported
    one = score_predictions(
        folder_ds, out / "predictions" / "sam" / "mask-pooling", tmp_path / "one"
    )
    np.testing.assert_array_equal(
        one.confusion["sam/mask-pooling"].matrix, result.confusion["sam/mask-pooling"].matrix
    )


def test_resume_skips_finished_images(tmp_path: Path, folder_ds: FolderDataset) -> None:
    out = tmp_path / "out"
    first = run_benchmark(folder_ds, out, methods=[oracle(folder_ds)], masks="gt")
    again = run_benchmark(folder_ds, out, methods=[Method("oracle", refuse)], masks="gt")
    assert again.skipped == 3 and again.computed == 0
    np.testing.assert_array_equal(
        again.confusion["gt/oracle"].matrix, first.confusion["gt/oracle"].matrix
    )
    # one prediction lost: only that image is redone
    (out / "predictions" / "gt" / "oracle" / f"{folder_ds.names()[1]}.png").unlink()
    calls = []

    def counting(masks: np.ndarray, sample: Sample) -> np.ndarray:
        calls.append(sample.name)
        return oracle_classifier(4)(masks, sample)

    third = run_benchmark(folder_ds, out, methods=[Method("oracle", counting)], masks="gt")
    assert calls == [folder_ds.names()[1]] and third.computed == 1 and third.skipped == 2
    assert third.metrics()["gt/oracle"].miou == 100


def test_limit_scores_the_same_seeded_subset(tmp_path: Path, folder_ds: FolderDataset) -> None:
    out = tmp_path / "out"
    result = run_benchmark(folder_ds, out, methods=[oracle(folder_ds)], masks="gt", limit=2, seed=3)
    chosen = [folder_ds.names()[i] for i in select_indices(3, 2, 3)]
    assert result.names == chosen
    pngs = sorted(
        p.relative_to(out / "predictions" / "gt" / "oracle").with_suffix("").as_posix()
        for p in (out / "predictions" / "gt" / "oracle").rglob("*.png")
    )
    assert pngs == sorted(chosen)
    with pytest.raises(DatasetError, match="1 of 3 images have no prediction"):
        score_predictions(folder_ds, out, tmp_path / "r")
    rescored = score_predictions(folder_ds, out, tmp_path / "r", limit=2, seed=3)
    assert rescored.names == chosen


def test_other_settings_in_the_same_output_are_refused(
    tmp_path: Path, folder_ds: FolderDataset
) -> None:
    out = tmp_path / "out"
    run_benchmark(folder_ds, out, methods=[oracle(folder_ds)], masks="gt", settings={"model": "a"})
    with pytest.raises(OutputError, match=r"made differently \(settings.model: 'a' there, 'b'"):
        run_benchmark(
            folder_ds, out, methods=[oracle(folder_ds)], masks="gt", settings={"model": "b"}
        )
    result = run_benchmark(
        folder_ds,
        out,
        methods=[oracle(folder_ds)],
        masks="gt",
        settings={"model": "b"},
        overwrite=True,
    )
    assert result.computed == 3
    record = json.loads((out / "predictions" / "gt" / "oracle" / "run.json").read_text())
    assert record["settings"] == {"model": "b"} and record["num_classes"] == 4


def test_output_neutral_settings_reuse_the_predictions(
    tmp_path: Path, folder_ds: FolderDataset
) -> None:
    """Resume decides by the run configuration's fingerprint: a setting declared as changing no
    output (``points_per_batch``, ``device``) reuses the predictions; one that does is refused."""
    out = tmp_path / "out"
    first = {"amg": {"points_per_side": 4, "points_per_batch": 64}, "device": "cpu"}
    run_benchmark(folder_ds, out, methods=[oracle(folder_ds)], masks="gt", settings=first)
    neutral = {"amg": {"points_per_side": 4, "points_per_batch": 8}, "device": "cuda"}
    again = run_benchmark(folder_ds, out, methods=[oracle(folder_ds)], masks="gt", settings=neutral)
    assert again.computed == 0 and again.skipped == 3
    other = {"amg": {"points_per_side": 8, "points_per_batch": 8}, "device": "cpu"}
    with pytest.raises(OutputError, match=r"settings.amg.points_per_side: 4 there, 8 now"):
        run_benchmark(folder_ds, out, methods=[oracle(folder_ds)], masks="gt", settings=other)


def test_predictions_for_another_vocabulary_are_refused(
    tmp_path: Path, synth: ModuleType, folder_ds: FolderDataset
) -> None:
    out = tmp_path / "out"
    run_benchmark(folder_ds, out, methods=[oracle(folder_ds)], masks="gt")
    synth.write_ade150(tmp_path / "ade")
    with pytest.raises(DatasetError, match="another vocabulary"):
        score_predictions(load_ade20k(tmp_path / "ade"), out, tmp_path / "r")


def test_plain_folder_of_pngs_is_scored(tmp_path: Path, folder_ds: FolderDataset) -> None:
    preds = tmp_path / "mine"
    for i, name in enumerate(folder_ds.names()):
        write_prediction(
            preds / f"{name}.png", np.where(folder_ds.label(i) < 0, 0, folder_ds.label(i))
        )
    result = score_predictions(folder_ds, preds, tmp_path / "r")
    assert [r.key for r in result.runs] == ["mine"]
    assert result.metrics()["mine"].miou == 100


def test_bad_arguments(tmp_path: Path, folder_ds: FolderDataset, tiny_segmenter: Segmenter) -> None:
    with pytest.raises(ConfigError, match="needs a Segmenter"):
        run_benchmark(folder_ds, tmp_path, methods=["mask-pooling"], masks="gt")
    with pytest.raises(ConfigError, match="unknown mask source"):
        run_benchmark(folder_ds, tmp_path, methods=[oracle(folder_ds)], masks="boxes")
    with pytest.raises(ConfigError, match="unknown classifier"):
        run_benchmark(folder_ds, tmp_path, segmenter=tiny_segmenter, methods=["clip"])
    with pytest.raises(ConfigError, match="unique"):
        run_benchmark(
            folder_ds, tmp_path, methods=[oracle(folder_ds), oracle(folder_ds)], masks="gt"
        )
    wrong = Method("wrong", lambda masks, sample: np.zeros((len(masks), 3), np.float32))
    with pytest.raises(ConfigError, match=r"returned shape \(\d+, 3\)"):
        run_benchmark(folder_ds, tmp_path / "w", methods=[wrong], masks="gt")


def test_two_mask_sources_in_one_run(
    tmp_path: Path, folder_ds: FolderDataset, tiny_segmenter: Segmenter
) -> None:
    """The full grid and the two-pass grid on the same images: one run per source, each scored,
    the CLIP features computed once per image."""
    from samadapter.eval.benchmark import _source_segmenter
    from samadapter.modeling.proposer import SamProposer

    out = tmp_path / "out"
    calls = []
    features = tiny_segmenter.image_features

    def counted(image: np.ndarray, timings: dict[str, float] | None = None) -> object:
        calls.append(image.shape)
        return features(image, timings)

    tiny_segmenter.image_features = counted  # type: ignore[method-assign]
    result = run_benchmark(
        folder_ds,
        out,
        segmenter=tiny_segmenter,
        methods=["mask-pooling"],
        masks=["sam", "sam-two-pass"],
    )
    assert [r.key for r in result.runs] == ["sam/mask-pooling", "sam-two-pass/mask-pooling"]
    assert len(calls) == 3  # three images, features shared by both sources
    for run in result.runs:
        assert all((run.directory / f"{name}.png").is_file() for name in folder_ds.names())
        record = json.loads((run.directory / "run.json").read_text(encoding="utf-8"))
        assert record["masks"] == run.masks
    stages = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["timings"]
    assert {"sam_decoder", "sam-two-pass:sam_decoder"} <= set(stages["mean_seconds"])
    assert "sam-two-pass:clip_dense" not in stages["mean_seconds"]
    two = _source_segmenter(tiny_segmenter, "sam-two-pass")
    assert two is not None and isinstance(two.proposer, SamProposer)
    assert two.proposer.options.two_pass and two.backbone is tiny_segmenter.backbone
    assert _source_segmenter(tiny_segmenter, "sam") is tiny_segmenter
    # a rerun reads both sources' predictions back
    again = run_benchmark(
        folder_ds,
        out,
        segmenter=tiny_segmenter,
        methods=["mask-pooling"],
        masks=["sam", "sam-two-pass"],
    )
    assert again.skipped == 3 and len(calls) == 3
    for key, cm in result.confusion.items():
        np.testing.assert_array_equal(again.confusion[key].matrix, cm.matrix)


def test_two_pass_source_needs_samadapters_generator(
    tmp_path: Path, folder_ds: FolderDataset, tiny_segmenter: Segmenter
) -> None:
    import dataclasses

    from samadapter.modeling.proposer import Proposals

    def sam2_like(image: np.ndarray) -> Proposals:
        return Proposals.from_masks(np.ones((1, *image.shape[:2]), dtype=bool))

    other = dataclasses.replace(tiny_segmenter, proposer=sam2_like)
    with pytest.raises(ConfigError, match="sam-two-pass needs SAM"):
        run_benchmark(folder_ds, tmp_path / "o", segmenter=other, masks=["sam", "sam-two-pass"])
    with pytest.raises(ConfigError, match="given once each"):
        run_benchmark(folder_ds, tmp_path / "o", segmenter=other, masks=["sam", "sam"])

"""Batch runs: inputs, resume, failures, interruption, merged COCO, relabel, text cache."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from samadapter.batch import BatchOptions, BatchRunner, collect_inputs
from samadapter.cli.main import app
from samadapter.config import fingerprint
from samadapter.errors import ImageError, OutputError
from samadapter.io.text_cache import TextEmbeddingCache
from samadapter.models import load_segmenter
from samadapter.vocab import TEMPLATES, parse_classes

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
VOCAB = parse_classes("cat,cup,table")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """in/a.jpg, in/sub/b.jpg, in/sub/deeper/c.png."""
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(SAMPLES / "chelsea.jpg", root / "a.jpg")
    shutil.copy(SAMPLES / "coffee.jpg", root / "sub" / "b.jpg")
    from PIL import Image

    Image.open(SAMPLES / "chelsea.jpg").resize((90, 60)).save(root / "sub" / "deeper" / "c.png")
    return root


def runner(out: Path, vocab=VOCAB, **kw) -> BatchRunner:  # type: ignore[no-untyped-def]
    seg = load_segmenter("tiny-random", device="cpu", settings={"keep_unknown": True})
    return BatchRunner(seg, vocab, BatchOptions(out_dir=out, **kw))


def test_collect_inputs_mirrors_the_tree(tree: Path) -> None:
    flat = collect_inputs([tree])
    assert [str(i.rel) for i in flat] == ["a.jpg"]
    deep = collect_inputs([tree], recursive=True)
    assert [str(i.rel) for i in deep] == ["a.jpg", "sub/b.jpg", "sub/deeper/c.png"]
    assert [i.file_name for i in deep] == ["a.jpg", "sub/b.jpg", "sub/deeper/c.png"]
    assert {i.root for i in deep} == {tree.resolve()}
    globbed = collect_inputs([str(tree / "**" / "*.jpg")])
    assert sorted(str(i.rel) for i in globbed) == ["a.jpg", "sub/b.jpg"]
    twice = collect_inputs([tree / "a.jpg", tree / "a.jpg"])  # one file, taken once
    assert [str(i.rel) for i in twice] == ["a.jpg"]
    with pytest.raises(ImageError, match="no images match"):
        collect_inputs([str(tree / "*.gif")])
    (tree / "empty").mkdir()
    with pytest.raises(ImageError, match="--recursive"):
        collect_inputs([tree / "empty"])


def test_resume_skips_finished_and_redoes_changed_settings(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    items = collect_inputs([tree], recursive=True)
    first = runner(out).run(items)
    assert [r.status for r in first.records] == ["done"] * 3
    stamp = (out / "per-image" / "sub" / "b.jpg.json").stat().st_mtime_ns
    again = runner(out).run(items)
    assert [r.status for r in again.records] == ["skipped"] * 3
    assert (out / "per-image" / "sub" / "b.jpg.json").stat().st_mtime_ns == stamp
    changed = runner(out, vocab=parse_classes("cat,cup,plate")).run(items)
    assert [r.status for r in changed.records] == ["done"] * 3
    names = [
        c["name"]
        for c in json.loads((out / "per-image" / "sub" / "b.jpg.json").read_text())["categories"]
    ]
    assert names[:3] == ["cat", "cup", "plate"]
    forced = runner(out, vocab=parse_classes("cat,cup,plate"), overwrite=True).run(items)
    assert [r.status for r in forced.records] == ["done"] * 3


def test_fingerprint_ignores_speed_settings_only() -> None:
    base = {"models": {"pipeline": {"mask_batch": 0, "score_thresh": 0.5}, "device": "cpu"}}
    same = {"models": {"pipeline": {"mask_batch": 64, "score_thresh": 0.5}, "device": "cuda"}}
    other = {"models": {"pipeline": {"mask_batch": 0, "score_thresh": 0.6}, "device": "cpu"}}
    assert fingerprint(base) == fingerprint(same)
    assert fingerprint(base) != fingerprint(other)


def test_a_corrupt_image_is_reported_and_the_rest_finish(tree: Path, tmp_path: Path) -> None:
    (tree / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tree / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    summary = runner(out).run(collect_inputs([tree]))
    status = {r.file: r.status for r in summary.records}
    assert status == {"a.jpg": "done", "broken.jpg": "failed", "empty.png": "failed"}
    assert not summary.ok
    failures = json.loads((out / "failures.json").read_text())
    assert {f["file"] for f in failures} == {"broken.jpg", "empty.png"}
    assert all("broken.jpg" in f["error"] or "empty.png" in f["error"] for f in failures)
    assert (out / "per-image" / "a.jpg.json").exists()
    assert not list((out / "per-image").glob("broken*"))


def test_interrupted_run_leaves_no_partial_output_and_resumes(
    tree: Path, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "out"
    items = collect_inputs([tree], recursive=True)
    r = runner(out)
    calls = {"n": 0}
    real = r.segmenter.classify

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(r.segmenter, "classify", flaky)
    summary = r.run(items)
    assert summary.interrupted
    assert (out / "per-image" / "a.jpg.json").exists()
    assert not (out / "per-image" / "sub" / "b.jpg.json").exists()
    assert not (out / "per-image" / "sub" / "b.jpg.overlay.png").exists()
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    assert json.loads((out / "run.json").read_text())["interrupted"] is True
    resumed = runner(out).run(items)
    assert [x.status for x in resumed.records] == ["skipped", "done", "done"]


def test_a_write_failing_half_way_is_redone_next_time(
    tree: Path, tmp_path: Path, monkeypatch
) -> None:
    import samadapter.io.writers as writers

    out = tmp_path / "out"
    items = collect_inputs([tree / "a.jpg"])

    def broken_json(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OutputError("disk full while writing a.json")

    monkeypatch.setattr(writers, "write_json_atomic", broken_json)
    summary = runner(out).run(items)
    assert [x.status for x in summary.records] == ["failed"]
    assert "disk full" in str(summary.records[0].error)
    assert (out / "per-image" / "a.jpg.overlay.png").exists()
    assert not (out / "per-image" / "a.jpg.json").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]
    monkeypatch.undo()
    assert [x.status for x in runner(out).run(items).records] == ["done"]
    assert (out / "per-image" / "a.jpg.json").exists()


def test_merged_coco_loads_with_every_image(tree: Path, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    out = tmp_path / "out"
    summary = runner(out).run(collect_inputs([tree], recursive=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco = COCO(str(out / "annotations.json"))
    assert [coco.imgs[i]["file_name"] for i in sorted(coco.imgs)] == [
        "a.jpg",
        "sub/b.jpg",
        "sub/deeper/c.png",
    ]
    assert (coco.imgs[3]["width"], coco.imgs[3]["height"]) == (90, 60)
    assert len(coco.anns) == sum(r.masks for r in summary.records)
    assert len(coco.anns) == sum(
        len(json.loads(p.read_text())["annotations"])
        for p in [
            out / "per-image" / "a.jpg.json",
            out / "per-image" / "sub" / "b.jpg.json",
            out / "per-image" / "sub" / "deeper" / "c.png.json",
        ]
    )
    assert sorted(coco.anns) == list(range(1, len(coco.anns) + 1))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())][:3] == ["cat", "cup", "table"]
    run = json.loads((out / "run.json").read_text())
    assert run["counts"] == {"done": 3, "skipped": 0, "failed": 0, "interrupted": 0}
    assert {"sam_encoder", "clip_dense", "classify", "write"} <= set(run["images"][0]["seconds"])


def test_relabel_equals_a_fresh_segment_with_the_new_classes(tree: Path, tmp_path: Path) -> None:
    cli = CliRunner()
    common = ["--preset", "tiny-random", "--device", "cpu", "--keep-unknown", "-q"]
    first = cli.invoke(
        app,
        [
            "segment",
            str(tree),
            "-r",
            "-c",
            "cat,cup",
            "--cache-features",
            "-o",
            str(tmp_path / "a"),
            *common,
        ],
    )
    assert first.exit_code == 0, first.stderr
    new = "plate,spoon|teaspoon,saucer"
    relabel = cli.invoke(app, ["relabel", str(tmp_path / "a"), "-c", new, "-q"])
    assert relabel.exit_code == 0, relabel.stderr
    fresh = cli.invoke(
        app, ["segment", str(tree), "-r", "-c", new, "-o", str(tmp_path / "b"), *common]
    )
    assert fresh.exit_code == 0, fresh.stderr
    for rel in ("a.jpg.json", "sub/b.jpg.json", "sub/deeper/c.png.json"):
        got = json.loads((tmp_path / "a" / "per-image" / rel).read_text())
        want = json.loads((tmp_path / "b" / "per-image" / rel).read_text())
        assert got["categories"] == want["categories"]
        assert [a["segmentation"] for a in got["annotations"]] == [
            a["segmentation"] for a in want["annotations"]
        ]
        assert [a["category_id"] for a in got["annotations"]] == [
            a["category_id"] for a in want["annotations"]
        ]
        np.testing.assert_allclose(
            [a["score"] for a in got["annotations"]],
            [a["score"] for a in want["annotations"]],
            atol=2e-3,
        )
        # Same settings fingerprint: a segment run with the new classes would skip them.
        assert got["info"]["samadapter_fingerprint"] == want["info"]["samadapter_fingerprint"]
    # --keep-ratio 0 on relabel: every cached mask is named, and the JSON says so.
    every = cli.invoke(app, ["relabel", str(tmp_path / "a"), "-c", new, "--keep-ratio", "0", "-q"])
    assert every.exit_code == 0, every.stderr
    got = json.loads((tmp_path / "a" / "per-image" / "a.jpg.json").read_text())
    assert got["info"]["method"]["keep_rule"].startswith("every mask kept")
    assert len(got["annotations"]) >= len(
        json.loads((tmp_path / "b" / "per-image" / "a.jpg.json").read_text())["annotations"]
    )


def test_relabel_needs_a_run_with_features(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["relabel", str(tmp_path), "-c", "cat"])
    assert result.exit_code == 2
    assert "run.json" in result.stderr


def test_text_cache_hit_is_identical_and_changes_miss(tmp_path: Path, monkeypatch) -> None:
    seg = load_segmenter("tiny-random", device="cpu", text_cache=False)
    store = TextEmbeddingCache(tmp_path / "text", "tiny:seed0")
    seg.text_store = store
    cold = seg.text_classifier(VOCAB).embeddings
    assert len(list((tmp_path / "text").glob("*.npy"))) == 1
    again = load_segmenter("tiny-random", device="cpu", text_cache=False)
    again.text_store = store

    def no_encoding(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(again.backbone, "encode_text", no_encoding)
    assert torch.equal(again.text_classifier(VOCAB).embeddings, cold)
    names = VOCAB.flat_names()
    assert store.get(TEMPLATES, names) is not None
    assert store.get(TEMPLATES[:-1], names) is None
    assert store.get(TEMPLATES, [*names[:-1], "chair"]) is None
    assert TextEmbeddingCache(tmp_path / "text", "other:model").get(TEMPLATES, names) is None


def test_relabel_reuses_cached_mask_embeddings(tree: Path, tmp_path: Path, monkeypatch) -> None:
    from samadapter.batch import RelabelRunner
    from samadapter.io.feature_store import load_embeddings

    out = tmp_path / "out"
    items = collect_inputs([tree / "a.jpg"])
    runner(out, cache_features=True).run(items)
    cached = load_embeddings(out / "features" / "a.jpg.npz")
    assert set(cached) == {"mask-adapter"} and cached["mask-adapter"].shape[1] == 32
    seg = load_segmenter(
        "tiny-random", device="cpu", with_proposer=False, settings={"keep_unknown": True}
    )

    def no_model(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("relabel should not run CLIP or the adapter")

    monkeypatch.setattr(seg, "mask_embeddings", no_model)
    monkeypatch.setattr(seg, "image_features", no_model)
    summary = RelabelRunner(
        seg, parse_classes("dog,mug"), BatchOptions(out_dir=out, cache_features=True)
    ).run(items)
    assert [r.status for r in summary.records] == ["done"]
    names = [
        c["name"] for c in json.loads((out / "per-image" / "a.jpg.json").read_text())["categories"]
    ]
    assert names[:2] == ["dog", "mug"]

"""Batch runs on a real local Ray (2 CPUs) with the tiny random models: same bytes as a local
run, resume, failure records, fault injection, Ctrl-C, the shared-folder check."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from readers import real_reader  # tests/readers.py (tests/ is on sys.path)

ray = real_reader("ray")  # CI installs the ray extra: missing there is an error, not a skip

from samadapter.batch import (  # noqa: E402
    BatchOptions,
    BatchRunner,
    ImageRecord,
    InputImage,
    collect_inputs,
)
from samadapter.batch.ray_runner import RayBatch, RayOptions, _check_nodes, pool_size  # noqa: E402
from samadapter.errors import ConfigError, OutputError  # noqa: E402
from samadapter.models import load_segmenter  # noqa: E402
from samadapter.structures import SegmentationResult  # noqa: E402
from samadapter.vocab import parse_classes  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
VOCAB = parse_classes("cat,cup,table")

# Workers rebuild this module's runners and builders from their pickled code (it is not
# importable there).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray for the module (start-up takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """in/a.jpg, in/sub/b.jpg, in/sub/c.png (smaller), in/sub/d.jpg and a corrupt in/bad.jpg."""
    from PIL import Image

    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    shutil.copy(SAMPLES / "chelsea.jpg", root / "a.jpg")
    shutil.copy(SAMPLES / "coffee.jpg", root / "sub" / "b.jpg")
    Image.open(SAMPLES / "chelsea.jpg").resize((90, 60)).save(root / "sub" / "c.png")
    Image.open(SAMPLES / "coffee.jpg").resize((80, 64)).save(root / "sub" / "d.jpg")
    (root / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return root


def _options(out: Path) -> BatchOptions:
    return BatchOptions(out_dir=out)


class _Builder:
    """Makes the run's runner (pickled to the workers): tiny models, ``cls`` runner."""

    def __init__(self, out: Path, cls: type[BatchRunner] = BatchRunner, **extra: object) -> None:
        self.out, self.cls, self.extra = out, cls, extra

    def __call__(self) -> BatchRunner:
        seg = load_segmenter("tiny-random", device="cpu", progress=False)
        runner = self.cls(seg, VOCAB, _options(self.out))
        runner.__dict__.update(self.extra)
        return runner


def _local(items: list[InputImage], out: Path) -> None:
    """The local run, on one torch thread as the actors (sums over other thread counts can
    differ in the last bits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seg = load_segmenter("tiny-random", device="cpu", progress=False)
        BatchRunner(seg, VOCAB, _options(out)).run(items)
    finally:
        torch.set_num_threads(threads)


def _files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in ("run.json", ".samadapter.lock")
    }


def _run_record(out: Path) -> dict[str, object]:
    """run.json without the timings (the one thing allowed to differ)."""
    data = json.loads((out / "run.json").read_text())
    for image in data["images"]:
        image["seconds"] = sorted(image["seconds"])
    return data


def test_a_ray_run_writes_the_bytes_of_a_local_run(photos: Path, tmp_path: Path) -> None:
    items = collect_inputs([photos], recursive=True)
    _local(items, tmp_path / "local")
    seen: list[ImageRecord] = []
    summary = RayBatch(_Builder(tmp_path / "ray"), RayOptions(actors=2)).run(
        items, on_image=lambda record, _: seen.append(record)
    )
    assert summary.exit_code == 1  # the corrupt image
    assert sorted(r.file for r in seen) == [
        "a.jpg",
        "bad.jpg",
        "sub/b.jpg",
        "sub/c.png",
        "sub/d.jpg",
    ]
    local, remote = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert sorted(remote) == sorted(local)
    assert len(local) > 15
    assert [name for name in local if local[name] != remote[name]] == []
    assert _run_record(tmp_path / "ray") == _run_record(tmp_path / "local")
    failures = json.loads((tmp_path / "ray" / "failures.json").read_text())
    assert [f["file"] for f in failures] == ["bad.jpg"]
    assert "not an image" in failures[0]["error"]
    assert not list((tmp_path / "ray").glob(".run.json.*"))  # the marker file is gone


class _Slow(BatchRunner):
    """Takes 2 s more an image (so a run can be stopped half-way)."""

    def _process(self, item, image, stage):  # type: ignore[no-untyped-def]
        time.sleep(2.0)
        return super()._process(item, image, stage)


def test_ctrl_c_stops_the_run_and_the_next_does_only_the_rest(photos: Path, tmp_path: Path) -> None:
    (photos / "bad.jpg").unlink()
    items = collect_inputs([photos], recursive=True)
    out = tmp_path / "ray"

    def stop_after_the_first(record: ImageRecord, _: SegmentationResult | None) -> None:
        raise KeyboardInterrupt

    first = RayBatch(_Builder(out, _Slow), RayOptions(actors=1)).run(
        items, on_image=stop_after_the_first
    )
    assert first.interrupted and first.exit_code == 130
    statuses = [r.status for r in first.records]
    assert statuses.count("done") >= 1 and "interrupted" in statuses
    done = {r.file for r in first.records if r.status == "done"}
    record = json.loads((out / "run.json").read_text())
    assert record["interrupted"] is True
    stamps = {f: (out / "per-image" / f"{f}.json").stat().st_mtime_ns for f in done}

    time.sleep(2)  # nothing is written once the run has returned
    assert {f: (out / "per-image" / f"{f}.json").stat().st_mtime_ns for f in done} == stamps
    finished = {p.name for p in (out / "per-image").rglob("*.json")}
    assert len(finished) < len(items)  # stopped half-way

    second = RayBatch(_Builder(out), RayOptions(actors=2)).run(items)
    assert second.exit_code == 0
    skipped = {r.file for r in second.records if r.status == "skipped"}
    assert skipped >= done and len(skipped) == len(finished)
    assert {r.file for r in second.records if r.status == "done"} == {
        i.file_name for i in items
    } - skipped
    assert {f: (out / "per-image" / f"{f}.json").stat().st_mtime_ns for f in done} == stamps
    _local(items, tmp_path / "local")
    assert _files(out) == _files(tmp_path / "local")


class _Faulty(BatchRunner):
    """Raises on ``sub/b.jpg``; kills its worker process on ``sub/c.png`` the first time and
    on ``sub/d.jpg`` every time."""

    crash_flag: Path

    def _process(self, item, image, stage):  # type: ignore[no-untyped-def]
        if item.file_name == "sub/b.jpg":
            raise RuntimeError("injected fault")
        if item.file_name == "sub/c.png" and not self.crash_flag.exists():
            self.crash_flag.write_text("crashed once")
            os._exit(1)  # the worker dies: Ray restarts the actor and retries the image
        if item.file_name == "sub/d.jpg":
            with self.crash_flag.with_name("deaths").open("a") as deaths:
                deaths.write("x")
            os._exit(1)  # every time: after its retries it is a failure record
        return super()._process(item, image, stage)


def test_a_failing_image_and_a_dying_worker_do_not_stop_the_job(
    photos: Path, tmp_path: Path
) -> None:
    items = collect_inputs([photos], recursive=True)
    flag = tmp_path / "crashed"
    summary = RayBatch(_Builder(tmp_path / "ray", _Faulty, crash_flag=flag), RayOptions()).run(
        items
    )
    status = {r.file: (r.status, r.error) for r in summary.records}
    assert flag.exists()  # the worker did die once
    assert status["sub/b.jpg"] == ("failed", "unexpected RuntimeError: injected fault")
    assert status["sub/c.png"] == ("done", None)  # redone after the crash
    assert status["a.jpg"] == ("done", None)
    assert status["bad.jpg"][0] == "failed"
    assert status["sub/d.jpg"][0] == "failed"
    assert "Ray worker died while processing it" in str(status["sub/d.jpg"][1])
    assert 2 <= len((tmp_path / "deaths").read_text()) <= 3  # tried again, then given up
    failures = json.loads((tmp_path / "ray" / "failures.json").read_text())
    assert sorted(f["file"] for f in failures) == ["bad.jpg", "sub/b.jpg", "sub/d.jpg"]
    merged = json.loads((tmp_path / "ray" / "annotations.json").read_text())
    assert [i["file_name"] for i in merged["images"]] == ["a.jpg", "sub/c.png"]


def test_an_output_folder_a_node_cannot_see_is_one_clear_error(tmp_path: Path) -> None:
    marker = tmp_path / ".run.json.0123abcd.tmp"
    marker.write_text("the driver's token")
    _check_nodes(ray, (str(marker), "the driver's token"), always=True)  # visible: no error
    with pytest.raises(OutputError, match="cannot be reached from the Ray worker") as caught:
        _check_nodes(
            ray, (str(tmp_path / "elsewhere" / marker.name), "the driver's token"), always=True
        )
    assert "\n" not in str(caught.value)
    assert "every node" in str(caught.value)


def test_pool_sizes_leave_cpu_to_the_reads() -> None:
    two = pool_size(RayOptions(), {"CPU": 2.0})
    assert (two.actors, two.cpus, two.gpus, two.threads) == (1, 1.5, 0.0, 1)
    both = pool_size(RayOptions(actors=2), {"CPU": 2.0})
    assert (both.actors, both.cpus) == (2, 0.75)
    big = pool_size(RayOptions(), {"CPU": 32.0})
    assert (big.actors, big.cpus, big.threads) == (7, 4.0, 4)
    gpus = pool_size(RayOptions(), {"CPU": 16.0, "GPU": 4.0})
    assert (gpus.actors, gpus.cpus, gpus.gpus) == (4, 1.0, 1.0)
    with pytest.raises(ConfigError, match="at least 1"):
        RayOptions(actors=0)


def test_without_ray_the_run_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"samadapter\[ray\]"):
        RayBatch(_Builder(Path("unused"))).run([])


def test_records_come_back_small(photos: Path, tmp_path: Path) -> None:
    """What an actor returns per image is its record: no masks, no features."""
    from samadapter.batch.ray_runner import _ImageWorker

    worker = _ImageWorker.__new__(_ImageWorker)
    worker.runner = _Builder(tmp_path / "out")()
    worker.warnings = []
    worker.marker = tmp_path / "marker"
    worker.marker.write_text("token")
    item = collect_inputs([photos / "a.jpg"])[0]
    image, _ = worker.runner.read_image(item)
    row = {
        "index": np.array([0]),
        "path": np.array([os.fsencode(item.path)], dtype=object),
        "root": np.array([os.fsencode(item.root)], dtype=object),
        "rel": np.array([os.fsencode(item.rel)], dtype=object),
        "identity": np.array([json.dumps(item.identity())]),
        "pixels": np.array([image.tobytes()], dtype=object),
        "height": np.array([image.shape[0]]),
        "width": np.array([image.shape[1]]),
        "notes": np.array(["[]"]),
        "error": np.array([""]),
        "read": np.array([0.01]),
    }
    (tmp_path / "out").mkdir()
    back = worker(row)
    assert back["index"] == [0]
    payload = json.loads(back["record"][0])
    assert payload["record"]["status"] == "done"
    assert len(back["record"][0]) < 2000
    written = json.loads((tmp_path / "out" / "per-image" / "a.jpg.json").read_text())
    assert written["info"]["samadapter_input"] == item.identity()

"""Batch runs on Ray: throughput with 1 and 2 actors vs the local batch, and driver memory.

Not a test: it prints figures and PASS/FAIL against the targets of the Ray issue.

    python benchmarks/ray_scaling.py --arch real --images 4     # real architectures, random
    python benchmarks/ray_scaling.py --arch tiny --images 24    # quick
    python benchmarks/ray_scaling.py --memory-only --queued 1000 10000

Throughput: the same images go through a local Ray (``--ray-cpus`` CPUs, default 2) with one
actor of 1 CPU, then two actors sharing the CPUs (``--actors``), then, once Ray is shut down, the
local batch on one torch thread; all in this one process, so the ratios compare like with like.
Per-image time is the steady state, between the first and the last image's report (model
loading and Ray's start-up are printed apart). ``--arch real`` builds SAM ViT-B, CLIP
ConvNeXt-L and the Mask-Adapter with random weights (seeded, so every actor holds the same
models and the outputs can be compared byte for byte) and pads SAM's proposals to
``--min-masks`` blobs as ``pipeline_speed.py`` does.

Driver memory: for each ``--queued`` count, a fresh process queues that many images (hard
links to one small PNG) on a local Ray whose actors do no model work, and reports its peak RSS;
the growth per queued image is compared with what the image list itself takes.

Targets:
- Ray's per-image overhead at one actor <= 10 % of the local batch's per-image time;
- outputs identical to the local batch's;
- driver peak memory growth <= 4 KiB per queued image (no image data or results held).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import padded  # benchmarks/padded.py (this folder is on sys.path)
import ray
import torch

from samadapter.batch import BatchOptions, BatchRunner, ImageRecord, collect_inputs
from samadapter.batch.ray_runner import RayBatch, RayOptions
from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.mask_adapter import MaskAdapter
from samadapter.modeling.proposer import AmgSettings, Proposals, SamProposer, build_sam
from samadapter.models import load_segmenter
from samadapter.pipeline import PipelineSettings, Segmenter
from samadapter.vocab import load_builtin, parse_classes

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
ray.cloudpickle.register_pickle_by_value(padded)  # workers cannot import benchmarks/


class SeededPadding(padded.PaddedProposer):
    """Padding blobs drawn from a seed of the image itself, so the same image gets the same
    masks whichever actor, and in whichever order, it is processed."""

    def __call__(self, image: np.ndarray) -> Proposals:
        self.rng = np.random.default_rng(zlib.crc32(image[::7, ::7].tobytes()))
        return super().__call__(image)


class Builder:
    """Makes the benchmark's runner (locally, and pickled to every Ray actor)."""

    def __init__(self, args: argparse.Namespace, out: Path, vocab: Any) -> None:
        self.arch, self.points = args.arch, args.points_per_side
        self.clip_size, self.min_masks = args.clip_size, args.min_masks
        self.out, self.vocab = out, vocab

    def __call__(self) -> BatchRunner:
        return BatchRunner(self.segmenter(), self.vocab, BatchOptions(out_dir=self.out))

    def segmenter(self) -> Segmenter:
        settings = {"clip_size": self.clip_size, "score_thresh": 0.0, "keep_unknown": True}
        if self.arch == "tiny":
            return load_segmenter(
                "tiny-random",
                device="cpu",
                settings=settings,
                amg={"points_per_side": self.points},
                progress=False,
            )
        torch.manual_seed(0)
        sam = build_sam("vit_b")
        backbone = ClipBackbone.from_arch("convnext_large_d_320")
        adapter = MaskAdapter().eval()
        proposer = SeededPadding(
            SamProposer(sam, AmgSettings(points_per_side=self.points)), self.min_masks
        )
        return Segmenter(
            backbone,
            adapter,
            proposer,  # type: ignore[arg-type]
            PipelineSettings(**settings),  # type: ignore[arg-type]
            device=torch.device("cpu"),
            info={"arch": "real-random", "points_per_side": self.points},
        )


def make_inputs(folder: Path, n: int) -> list[Path]:
    """``n`` images cycled from the bundled samples (distinct files)."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = sorted(SAMPLES.glob("*.jpg"))
    paths = []
    for i in range(n):
        dst = folder / f"img{i:05d}.jpg"
        shutil.copy(samples[i % len(samples)], dst)
        paths.append(dst)
    return paths


class Clock:
    """Times of the image reports of one run."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.marks: list[float] = []
        self.failed: list[str] = []

    def __call__(self, record: ImageRecord, result: object) -> None:
        self.marks.append(time.perf_counter())
        if record.status != "done":
            self.failed.append(f"{record.file}: {record.status} {record.error}")

    @property
    def per_image(self) -> float:
        """Steady-state seconds per image (first to last report)."""
        return (self.marks[-1] - self.marks[0]) / max(1, len(self.marks) - 1)

    @property
    def first(self) -> float:
        """Seconds from the start to the first report (loading, start-up, one image)."""
        return self.marks[0] - self.start


def outputs(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted((out / "per-image").rglob("*"))
        if p.is_file()
    }


def throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    vocab = load_builtin(args.vocab) if "," not in args.vocab else parse_classes(args.vocab)
    items = collect_inputs(make_inputs(work / "in", args.images))
    figures: dict[str, Any] = {"arch": args.arch, "images": args.images}
    # Ray first, then the local batch once Ray and its actors are gone: the machine holds one
    # copy of the models at a time beyond the actors' own.
    ray.init(
        num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR"
    )
    try:
        for actors in args.actors:
            clock = Clock()
            out = work / f"ray{actors}"
            options = RayOptions(actors=actors, cpus_per_actor=1.0 if actors == 1 else None)
            RayBatch(Builder(args, out, vocab), options).run(items, on_image=clock)
            if clock.failed:
                raise SystemExit(f"Ray run failed: {clock.failed[:3]}")
            figures[f"ray{actors}_per_image_s"] = clock.per_image
            figures[f"ray{actors}_first_s"] = clock.first
    finally:
        ray.shutdown()
    torch.set_num_threads(1)  # what one actor of 1 CPU gets
    clock = Clock()
    build = Builder(args, work / "local", vocab)
    BatchRunner(build.segmenter(), vocab, BatchOptions(out_dir=work / "local")).run(
        items, on_image=clock
    )
    figures["local_per_image_s"], figures["local_first_s"] = clock.per_image, clock.first
    local = outputs(work / "local")
    for actors in args.actors:
        figures[f"ray{actors}_identical"] = outputs(work / f"ray{actors}") == local
    if 1 in args.actors:
        figures["ray1_overhead"] = figures["ray1_per_image_s"] / figures["local_per_image_s"] - 1
    if {1, 2} <= set(args.actors):
        figures["ray2_speedup"] = figures["ray1_per_image_s"] / figures["ray2_per_image_s"]
    return figures


class NoModelRunner(BatchRunner):
    """Marks each image done without running or writing anything (driver-side figures)."""

    def process_image(self, item, image, record, identity):  # type: ignore[no-untyped-def]
        record.status = "done"
        return None


class NoModelBuilder:
    def __init__(self, out: Path) -> None:
        self.out = out

    def __call__(self) -> BatchRunner:
        seg = load_segmenter("tiny-random", device="cpu", progress=False)
        return NoModelRunner(seg, parse_classes("a,b"), BatchOptions(out_dir=self.out))


def rss_bytes() -> int:
    """Resident memory of this process now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def memory_child(queued: int, work: Path) -> None:
    """(A fresh process.) Queue ``queued`` images on a local Ray; print JSON figures."""
    from PIL import Image

    folder = work / "in"
    folder.mkdir(parents=True)
    first = folder / "img000000.png"
    Image.new("RGB", (64, 48), (90, 120, 150)).save(first)
    for i in range(1, queued):
        os.link(first, folder / f"img{i:06d}.png")
    tracemalloc.start()
    items = collect_inputs([folder])
    list_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    before = rss_bytes()
    peak = [before]
    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    summary = RayBatch(NoModelBuilder(work / "out"), RayOptions(actors=1)).run(items)
    seconds = time.perf_counter() - t0
    running.clear()
    sampler.join()
    ray.shutdown()
    print(
        json.dumps(
            {
                "queued": queued,
                "done": summary.count("done"),
                "list_bytes": list_bytes,
                "rss_before_run": before,
                "peak": peak[0],
                "seconds": seconds,
            }
        )
    )


def memory(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    runs = []
    for n in args.queued:
        folder = work / f"mem{n}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        text = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(n), "--work", str(folder)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
        runs.append(json.loads(text.strip().splitlines()[-1]))
    small, big = runs[0], runs[-1]
    growth = [run["peak"] - run["rss_before_run"] for run in (small, big)]
    per_image = (growth[1] - growth[0]) / max(1, big["queued"] - small["queued"])
    list_per_image = (big["list_bytes"] - small["list_bytes"]) / (big["queued"] - small["queued"])
    return {
        "memory_runs": runs,
        "growth_per_image_b": per_image,
        "list_per_image_b": list_per_image,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("real", "tiny"), default="real")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--points-per-side", type=int, default=4)
    parser.add_argument("--clip-size", type=int, default=640)
    parser.add_argument("--min-masks", type=int, default=40)
    parser.add_argument("--vocab", default="ade150", help="built-in vocabulary, or a,b,c")
    parser.add_argument("--ray-cpus", type=float, default=2)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--queued", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("SAMADAPTER_COMPILE", "0")
    os.environ.setdefault("SAMADAPTER_RUNTIME", "torch")
    os.environ.setdefault("SAMADAPTER_OFFLINE", "1")
    if args.memory_child:
        memory_child(args.memory_child, args.work)
        return 0

    work = Path(tempfile.mkdtemp(prefix="samadapter-ray-bench-"))
    os.environ.setdefault("SAMADAPTER_HOME", str(work / "home"))
    figures: dict[str, Any] = {}
    checks: dict[str, bool] = {}
    try:
        if not args.memory_only:
            figures.update(throughput(args, work))
            print(
                f"throughput ({figures['arch']} architectures, {figures['images']} images, "
                "CPU, torch on 1 thread locally and in a 1-CPU actor; steady state):\n"
                f"  local batch       {figures['local_per_image_s']:8.3f} s/image  "
                f"(first image after {figures['local_first_s']:.1f} s)"
            )
            for actors in args.actors:
                line = (
                    f"  Ray, {actors} actor(s)   {figures[f'ray{actors}_per_image_s']:8.3f} "
                    f"s/image  (first after {figures[f'ray{actors}_first_s']:.1f} s)"
                )
                if actors == 1:
                    line += f"  overhead {figures['ray1_overhead']:+.1%}"
                if actors == 2 and "ray2_speedup" in figures:
                    line += f"  {figures['ray2_speedup']:.2f}x the 1-actor throughput"
                print(line)
            if "ray1_overhead" in figures:
                checks["Ray per-image overhead at 1 actor <= 10%"] = (
                    figures["ray1_overhead"] <= 0.10
                )
            checks["outputs identical to the local batch"] = all(
                figures[f"ray{actors}_identical"] for actors in args.actors
            )
        if not args.skip_memory:
            figures.update(memory(args, work))
            for run in figures["memory_runs"]:
                mib = {k: run[k] / 2**20 for k in ("rss_before_run", "peak", "list_bytes")}
                print(
                    f"driver, {run['queued']:>6} queued images: RSS {mib['rss_before_run']:.1f} "
                    f"MiB before the run, peak {mib['peak']:.1f} MiB during it ({run['done']} "
                    f"done in {run['seconds']:.0f} s; the image list: {mib['list_bytes']:.1f} MiB)"
                )
            print(
                f"  growth {figures['growth_per_image_b'] / 1024:.2f} KiB per queued image "
                f"(the image list itself: {figures['list_per_image_b'] / 1024:.2f} KiB)"
            )
            checks["driver memory growth <= 4 KiB per queued image"] = (
                figures["growth_per_image_b"] <= 4096
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}: {name}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

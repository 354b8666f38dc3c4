"""Seconds per training step of the Mask-Adapter with and without the frozen-CLIP feature cache.

Not a test: it prints figures. CLIP is frozen during adapter training, so its dense features of an
image are computed once and cached (float16 on disk, :mod:`samadapter.train.features`); without
the cache every step runs the CLIP image encoder on its images again. Both variants run the same
:class:`~samadapter.train.loop.Trainer` (stage warmup, ``--masks`` ground-truth masks an image) on
synthetic images with many shapes, models with random weights:

    python benchmarks/train_speed.py                                 # tiny test models
    python benchmarks/train_speed.py --arch convnext_large_d_320 --clip-size 896 --device cuda
    python benchmarks/train_speed.py --arch convnext_large_d_320 --clip-size 448 --masks 8

Both variants read the images from RAM (generated once), so that the comparison is about CLIP
alone. Reported: the one-time cost of building the cache (seconds and MB an image), per image the
CLIP encoder's time against the time to read the cache, and seconds per step with the cache
(features read from disk each step, as for a dataset too big for RAM) and without it (CLIP and the
ground-truth masks computed each step), and their ratio; each with the next step's images read
(or encoded) by prefetch threads during the current step, and without.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from samadapter import registry
from samadapter.data.base import Sample
from samadapter.data.synthetic import SyntheticShapes
from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.mask_adapter import MaskAdapter
from samadapter.models import build_tiny_classifier
from samadapter.pipeline import resolve_device
from samadapter.train.features import TrainingFeatures
from samadapter.train.loop import TrainConfig, Trainer


def build_models(arch: str, seed: int) -> tuple[ClipBackbone, MaskAdapter]:
    """Random-weight CLIP and adapter of an architecture (``tiny-random``: the test models)."""
    if arch == "tiny-random":
        backbone, adapter = build_tiny_classifier()
        assert adapter is not None
        return backbone, adapter
    torch.manual_seed(seed)
    backbone = ClipBackbone.from_arch(arch)
    return backbone, MaskAdapter(backbone.arch.embed_dim)


class Preloaded:
    """A dataset's samples held in RAM (same protocol), so no variant pays for making images."""

    def __init__(self, dataset: SyntheticShapes) -> None:
        self.samples = [dataset[i] for i in range(len(dataset))]
        self.vocab = dataset.vocab
        self._names = dataset.names()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def names(self) -> list[str]:
        return list(self._names)


def mean_seconds(fn: Callable[[int], object], n: int, device: torch.device) -> float:
    """Mean seconds of ``fn(i)`` for ``i < n`` (after one untimed call)."""
    fn(0)
    total = 0.0
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        total += time.perf_counter() - t0
    return total / n


def time_steps(trainer: Trainer, warmup: int, steps: int, device: torch.device) -> list[float]:
    """Seconds of each of ``steps`` training steps after ``warmup`` untimed ones."""
    out = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    clips = [m.name for m in registry.models("clip")]
    p.add_argument("--arch", default="tiny-random", choices=clips)
    p.add_argument(
        "--clip-size", type=int, default=None, help="CLIP input size (default: 128 tiny, 896 real)"
    )
    p.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="synthetic image size (default: 96 128 tiny, 480 640 real)",
    )
    p.add_argument("--images", type=int, default=8, help="dataset images")
    p.add_argument("--batch", type=int, default=4, help="images per step")
    p.add_argument("--masks", type=int, default=32, help="ground-truth masks per image")
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--prefetch",
        type=int,
        nargs="+",
        default=[0, 2],
        help="prefetch thread counts to compare (0: read each step's images in turn)",
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tiny = args.arch == "tiny-random"
    clip_size = args.clip_size or (128 if tiny else 896)
    size = tuple(args.image_size or ((96, 128) if tiny else (480, 640)))
    device = resolve_device(args.device)
    backbone, adapter = build_models(args.arch, args.seed)
    backbone = backbone.to(device)
    dataset = Preloaded(
        SyntheticShapes(args.images, size=(size[0], size[1]), shapes=(40, 56), seed=args.seed)
    )
    config = TrainConfig(
        steps=10**6,
        batch_size=args.batch,
        max_gt_masks=args.masks,
        warmup_steps=0,
        checkpoint_every=0,
        seed=args.seed,
    )
    print(
        f"train_speed: {args.arch} (random weights) on {device} "
        f"({torch.get_num_threads()} CPU threads), CLIP input {clip_size} px, "
        f"{args.batch} images x {args.masks} masks a step, {args.images} images "
        f"{size[0]}x{size[1]}, stage warmup"
    )
    with tempfile.TemporaryDirectory() as tmp:
        cached = TrainingFeatures(
            dataset, backbone, clip_size=clip_size, device=device, cache_dir=Path(tmp)
        )
        report = cached.prepare()
        megabytes = sum(f.stat().st_size for f in Path(tmp).rglob("*.npz")) / 1e6
        live = TrainingFeatures(dataset, backbone, clip_size=clip_size, device=device)
        clip_s = mean_seconds(lambda i: live.image_features(dataset[i].image), len(dataset), device)
        read_s = mean_seconds(lambda i: cached[i], len(dataset), device)
        results = {}
        for workers in args.prefetch:
            for name, data in (("with cache", cached), ("without cache", live)):
                trainer = Trainer(
                    backbone, adapter, data, config, device=device, prefetch_workers=workers
                )
                results[name, workers] = statistics.median(
                    time_steps(trainer, args.warmup, args.steps, device)
                )
                trainer.close()
    masks = sum(min(args.masks, len(cached[i].gt)) for i in range(len(cached))) / len(cached)
    print(
        f"cache build (one time): {report.seconds / args.images:.3f} s/image, "
        f"{megabytes / args.images:.2f} MB/image on disk (CLIP features float16 + GT masks); "
        f"{masks:.1f} masks/image used"
    )
    print(f"per image: CLIP image encoder {clip_s:.4f} s, reading its cache entry {read_s:.4f} s")
    for workers in args.prefetch:
        with_cache, without = results["with cache", workers], results["without cache", workers]
        print(
            f"seconds/step (median of {args.steps}), {workers} prefetch threads: with cache "
            f"{with_cache:.4f}, without cache {without:.4f}, speed-up "
            f"{without / with_cache:.2f}x"
        )


if __name__ == "__main__":
    main()

"""Per-stage speed and memory of `samadapter segment`, `relabel` and the text cache.

Not a test: it prints figures and PASS/FAIL against the targets of the batch issue.

    python benchmarks/pipeline_speed.py                      # real architectures, random weights
    python benchmarks/pipeline_speed.py --arch tiny --leak-images 200 --images 20

With ``--arch real`` it builds SAM ViT-B and CLIP ConvNeXt-L (+ the Mask-Adapter) with random
weights, or loads the real ones when ``--preset`` names a preset whose weights are present.
Random SAM proposes few masks, so ``--min-masks`` pads each image's proposals with extra blob
masks to a realistic count (the adapter's cost grows with the mask count).

Targets:
- everything but the SAM, CLIP and adapter forwards <= 10 % of the per-image wall time;
- cached text encoding <= 1 % of cold;
- relabel of an image >= 20x faster than segment;
- peak RSS after ``--leak-images`` images within 10 % of the peak after 10 % of them.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from padded import PaddedProposer  # benchmarks/padded.py (this folder is on sys.path)

from samadapter.batch import BatchOptions, BatchRunner, RelabelRunner, collect_inputs
from samadapter.io.text_cache import TextEmbeddingCache
from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.mask_adapter import MaskAdapter
from samadapter.modeling.proposer import AmgSettings, SamProposer, build_sam
from samadapter.models import load_segmenter
from samadapter.pipeline import PipelineSettings, Segmenter
from samadapter.vocab import load_builtin, parse_classes

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
MODEL_STAGES = ("sam_encoder", "sam_decoder", "clip_dense", "classify")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(args: argparse.Namespace, text_dir: Path) -> tuple[Segmenter, float]:
    """The segmenter under test and the seconds it took to build."""
    t0 = time.perf_counter()
    settings = {"clip_size": args.clip_size, "score_thresh": 0.0, "keep_unknown": True}
    if args.preset:
        seg = load_segmenter(
            args.preset,
            device=args.device,
            settings=settings,
            amg={"points_per_side": args.points_per_side},
            progress=False,
        )
    elif args.arch == "tiny":
        seg = load_segmenter(
            "tiny-random",
            device=args.device,
            settings=settings,
            amg={"points_per_side": args.points_per_side},
            progress=False,
        )
    else:
        device = torch.device("cuda" if args.device == "cuda" else "cpu")
        sam = build_sam("vit_b").to(device)
        backbone = ClipBackbone.from_arch("convnext_large_d_320").to(device)
        adapter = MaskAdapter().eval().to(device)
        # SAM's own filters: random weights rarely pass them, so --min-masks supplies the masks
        # while SAM still pays for encoding and decoding every prompt.
        amg = AmgSettings(points_per_side=args.points_per_side)
        seg = Segmenter(
            backbone,
            adapter,
            SamProposer(sam, amg),
            PipelineSettings(**settings),
            device=device,  # type: ignore[arg-type]
            info={"arch": "real-random"},
        )
    seg.text_store = TextEmbeddingCache(text_dir, f"bench:{args.arch}:{args.preset}")
    if args.min_masks and seg.proposer is not None:
        seg.proposer = PaddedProposer(seg.proposer, args.min_masks)  # type: ignore[assignment]
    return seg, time.perf_counter() - t0


def make_inputs(folder: Path, n: int) -> list[Path]:
    """``n`` images cycled from the bundled samples (distinct files, so nothing is cached)."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = sorted(SAMPLES.glob("*.jpg"))
    paths = []
    for i in range(n):
        dst = folder / f"img{i:04d}.jpg"
        shutil.copy(samples[i % len(samples)], dst)
        paths.append(dst)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("real", "tiny"), default="real")
    parser.add_argument("--preset", default=None, help="load a preset's real weights instead")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--points-per-side", type=int, default=12)
    parser.add_argument("--clip-size", type=int, default=640)
    parser.add_argument("--min-masks", type=int, default=40)
    parser.add_argument("--vocab", default="ade150", help="built-in vocabulary, or a,b,c")
    parser.add_argument(
        "--leak-images",
        type=int,
        default=0,
        help="also run this many images and compare peak memory",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="samadapter-bench-"))
    figures: dict[str, float | str | bool] = {
        "arch": args.arch,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
    }
    try:
        vocab = load_builtin(args.vocab) if "," not in args.vocab else parse_classes(args.vocab)
        seg, load_s = build(args, work / "text")
        figures["model_load_s"] = load_s

        t0 = time.perf_counter()
        seg.text_classifier(vocab)
        figures["text_cold_s"] = time.perf_counter() - t0
        seg._text_cache.clear()  # next call reads the disk cache
        t0 = time.perf_counter()
        seg.text_classifier(vocab)
        figures["text_cached_s"] = time.perf_counter() - t0

        items = collect_inputs([p for p in make_inputs(work / "in", args.images)])
        options = BatchOptions(out_dir=work / "out", cache_features=True)
        t0 = time.perf_counter()
        summary = BatchRunner(seg, vocab, options).run(items)
        segment_s = (time.perf_counter() - t0) / len(items)
        stages: dict[str, float] = {}
        for record in summary.records:
            for key, value in record.seconds.items():
                stages[key] = stages.get(key, 0.0) + value / len(items)
        model_s = sum(stages.get(k, 0.0) for k in MODEL_STAGES)
        figures.update({f"stage_{k}_s": v for k, v in stages.items()})
        figures["segment_per_image_s"] = segment_s
        figures["masks_per_image"] = float(np.mean([r.masks for r in summary.records]))
        figures["non_model_share"] = max(0.0, 1 - model_s / segment_s)

        relabel = RelabelRunner(
            seg,
            parse_classes("thing,stuff,other"),
            BatchOptions(out_dir=work / "out", cache_features=True),
        )
        seg.text_classifier(relabel.vocab)  # text is not what relabel's speed is about
        t0 = time.perf_counter()
        relabel.run(items)
        figures["relabel_per_image_s"] = (time.perf_counter() - t0) / len(items)
        figures["peak_rss_mb"] = peak_rss_mb()

        if args.leak_images:
            leak_items = collect_inputs(make_inputs(work / "leak", args.leak_images))
            marks: list[float] = []
            first = max(1, args.leak_images // 10)

            def on_image(record: object, result: object) -> None:
                done = len(marks) + 1
                marks.append(peak_rss_mb())
                del done

            BatchRunner(seg, vocab, BatchOptions(out_dir=work / "leak_out")).run(
                leak_items, on_image=on_image
            )  # type: ignore[arg-type]
            figures[f"peak_rss_after_{first}_mb"] = marks[first - 1]
            figures[f"peak_rss_after_{args.leak_images}_mb"] = marks[-1]
            figures["leak_growth"] = marks[-1] / marks[first - 1] - 1
    finally:
        shutil.rmtree(work, ignore_errors=True)

    checks = {
        "non-model work <= 10% of per-image time": figures["non_model_share"] <= 0.10,
        "cached text <= 1% of cold": figures["text_cached_s"] <= 0.01 * figures["text_cold_s"],
        "relabel >= 20x faster than segment": figures["segment_per_image_s"]
        >= 20 * figures["relabel_per_image_s"],
    }
    if args.leak_images:
        checks["peak memory growth <= 10%"] = figures["leak_growth"] <= 0.10
    print(
        f"samadapter pipeline speed ({args.arch} architectures, {args.device}, "
        f"{args.images} images, {figures['masks_per_image']:.0f} masks/image, "
        f"vocab {args.vocab})"
    )
    seg_s = float(figures["segment_per_image_s"])
    print(f"{'stage':<22}{'seconds/image':>14}{'share':>8}")
    for key in (
        "read",
        "sam_encoder",
        "sam_decoder",
        "clip_dense",
        "text",
        "classify",
        "cache_write",
        "write",
    ):
        value = float(figures.get(f"stage_{key}_s", 0.0))
        print(f"{key:<22}{value:>14.3f}{value / seg_s:>8.1%}")
    print(f"{'per image (wall)':<22}{seg_s:>14.3f}")
    print(
        f"model load {figures['model_load_s']:.1f} s; text cold {figures['text_cold_s']:.2f} s,"
        f" cached {figures['text_cached_s'] * 1000:.1f} ms; relabel "
        f"{figures['relabel_per_image_s']:.3f} s/image "
        f"({seg_s / float(figures['relabel_per_image_s']):.0f}x faster); peak RSS "
        f"{figures['peak_rss_mb']:.0f} MiB"
    )
    if args.leak_images:
        print(
            f"peak RSS growth from image {max(1, args.leak_images // 10)} to "
            f"{args.leak_images}: {figures['leak_growth']:+.1%}"
        )
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if args.json:
        args.json.write_text(json.dumps({**figures, "checks": checks}, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

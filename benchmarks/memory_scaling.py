"""Peak memory of `samadapter segment` on one photo of 1, 12, 24 and 50 megapixels.

Not a test: it prints figures. Each size runs in its own process, so each peak RSS is that
size's alone.

    python benchmarks/memory_scaling.py                       # the fast preset's shapes
    python benchmarks/memory_scaling.py --arch tiny           # tiny random models (quick)
    python benchmarks/memory_scaling.py --arch tiny --working-size 0 --sizes 1 4
                                                              # the full-resolution path
    python benchmarks/memory_scaling.py --iou                 # working vs full-size SAM masks

``--arch real`` builds the ``fast`` preset's models with random weights: SAM ViT-B with a 12x12
prompt grid, CLIP ConvNeXt-L at 640 px and the Mask-Adapter (the same shapes and FLOPs as the
real weights). Random SAM masks rarely pass SAM's filters, so each image's proposals are padded
to ``--min-masks`` blob masks (made at the resolution SAM ran at). Every image is a synthetic 4:3
JPEG read from disk, segmented with a 150-class vocabulary and written in every format (overlay,
semantic PNG, per-class PNGs, COCO JSON, YOLO, CVAT, Label Studio), as ``segment`` does.

Printed per size: the resident memory once the models are built (``models``), the peak of the
whole process (``peak``), their difference (what the image cost), and seconds.

``--iou`` runs SAM (random weights, every filter off so every prompt's three masks are kept)
on one image at its full size and on the image shrunk to the working size, brings the second
set to the full size the way the writers do, and prints the IoU of each mask with the mask of
the same prompt and output slot: how much the working resolution changes SAM's masks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from padded import PaddedProposer  # benchmarks/padded.py (this folder is on sys.path)

from samadapter.batch import BatchOptions, BatchRunner, collect_inputs
from samadapter.io.images import working_image
from samadapter.io.layout import image_output_dir
from samadapter.io.writers import output_paths
from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.mask_adapter import MaskAdapter
from samadapter.modeling.proposer import AmgSettings, Proposals, SamProposer, build_sam
from samadapter.models import load_segmenter
from samadapter.pipeline import PipelineSettings, Segmenter
from samadapter.structures import upsample_nearest
from samadapter.vocab import load_builtin

EXPORTS = ("coco", "yolo-seg", "labelstudio", "cvat")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident memory now, MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def photo(megapixels: float, seed: int = 0) -> np.ndarray:
    """A 4:3 ``[H, W, 3]`` uint8 picture: gradients, a few dozen filled shapes and mild noise
    (so JPEG and PNG sizes resemble a photo's, not a flat image's)."""
    w = round((megapixels * 1e6 * 4 / 3) ** 0.5)
    h = round(w * 3 / 4)
    rng = np.random.default_rng(seed)
    small = np.zeros((300, 400, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:300, 0:400]
    small[..., 0] = 40 + xx * 150 // 400
    small[..., 1] = 40 + yy * 150 // 300
    small[..., 2] = 90
    for _ in range(30):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = (int(rng.integers(0, 400)), int(rng.integers(0, 300)))
        if rng.random() < 0.5:
            cv2.circle(small, centre, int(rng.integers(10, 80)), colour, -1)
        else:
            size = (int(rng.integers(10, 120)), int(rng.integers(10, 90)))
            cv2.rectangle(small, centre, (centre[0] + size[0], centre[1] + size[1]), colour, -1)
    image = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    noise = rng.integers(-6, 7, size=(h, 1, 1), dtype=np.int16)  # cheap row noise
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def pipeline_settings(working_size: int, clip_size: int) -> PipelineSettings:
    """Keep every mask (score_thresh 0), CLIP at ``clip_size``, the given working size."""
    base = PipelineSettings(score_thresh=0.0, keep_unknown=True, working_size=working_size)
    names = {f.name for f in dataclasses.fields(base)}
    clip_field = "clip_size" if "clip_size" in names else "clip_short_side"
    return dataclasses.replace(base, **{clip_field: clip_size})


def build(args: argparse.Namespace) -> Segmenter:
    """The segmenter under test (random weights)."""
    if args.arch == "tiny":  # the tiny CLIP's own size
        seg = load_segmenter(
            "tiny-random",
            device="cpu",
            progress=False,
            text_cache=False,
            amg={"points_per_side": args.points_per_side},
        )
        seg.settings = pipeline_settings(args.working_size, 64)
    else:
        settings = pipeline_settings(args.working_size, args.clip_size)
        amg = AmgSettings(points_per_side=args.points_per_side, min_mask_region_area=100)
        seg = Segmenter(
            ClipBackbone.from_arch("convnext_large_d_320"),
            MaskAdapter().eval(),
            SamProposer(build_sam("vit_b"), amg),
            settings,
            device=torch.device("cpu"),
            info={"arch": "real-random"},
        )
    if args.min_masks and seg.proposer is not None:
        seg.proposer = PaddedProposer(seg.proposer, args.min_masks)  # type: ignore[arg-type]
    return seg


def child(args: argparse.Namespace) -> None:
    """Segment one image file and print one JSON line of figures."""
    torch.manual_seed(0)
    seg = build(args)
    vocab = load_builtin("ade150")
    seg.text_classifier(vocab)
    models_mb = current_rss_mb()
    models_peak_mb = peak_rss_mb()
    out = Path(args.child).parent / f"out-{Path(args.child).stem}"
    options = BatchOptions(out_dir=out, exports=EXPORTS, reader_threads=1, writer_threads=1)
    items = collect_inputs([args.child])
    t0 = time.perf_counter()
    summary = BatchRunner(seg, vocab, options).run(items)
    seconds = time.perf_counter() - t0
    record = summary.records[0]
    if record.status != "done":
        raise SystemExit(f"image failed: {record.error}")
    coco_path = output_paths(image_output_dir(out, items[0].rel), items[0].rel.name)["coco"]
    coco = json.loads(coco_path.read_text())
    print(
        json.dumps(
            {
                "models_mb": models_mb,
                "models_peak_mb": models_peak_mb,
                "peak_mb": peak_rss_mb(),
                "seconds": seconds,
                "masks": record.masks,
                "width": coco["images"][0]["width"],
                "height": coco["images"][0]["height"],
            }
        )
    )


def scaling(args: argparse.Namespace) -> None:
    """One child process per size; prints the table."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="samadapter-mem-") as tmp:
        for mp in args.sizes:
            path = Path(tmp) / f"photo_{mp:g}mp.jpg"
            cv2.imwrite(
                str(path),
                cv2.cvtColor(photo(mp), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 90],
            )
            cmd = [
                sys.executable,
                __file__,
                "--child",
                str(path),
                "--arch",
                args.arch,
                "--working-size",
                str(args.working_size),
                "--clip-size",
                str(args.clip_size),
                "--points-per-side",
                str(args.points_per_side),
                "--min-masks",
                str(args.min_masks),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if done.returncode != 0:
                print(f"{mp:g} MP: failed (exit {done.returncode})\n{done.stderr[-2000:]}")
                continue
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            figures["mp"] = mp
            rows.append(figures)
            path.unlink()
            print(
                f"{mp:>5g} MP {figures['width']}x{figures['height']}: models "
                f"{figures['models_mb']:.0f} MiB, peak {figures['peak_mb']:.0f} MiB "
                f"(+{figures['peak_mb'] - figures['models_mb']:.0f} for the image), "
                f"{figures['masks']} masks, {figures['seconds']:.1f} s",
                flush=True,
            )
    if len(rows) < 2:
        return
    first = rows[0]
    print(
        f"\n{args.arch} architectures, working size {args.working_size or 'full'}, CLIP "
        f"{args.clip_size}, {args.points_per_side}x{args.points_per_side} prompts, "
        f"{args.min_masks}+ masks"
    )
    print(
        f"{'MP':>5} {'models MiB':>11} {'peak MiB':>9} {'image MiB':>10} {'x pixels':>9} "
        f"{'x peak':>7} {'x image':>8} {'s':>6}"
    )
    for r in rows:
        image_mb = r["peak_mb"] - r["models_mb"]
        first_image = max(first["peak_mb"] - first["models_mb"], 1.0)
        print(
            f"{r['mp']:>5g} {r['models_mb']:>11.0f} {r['peak_mb']:>9.0f} {image_mb:>10.0f} "
            f"{r['mp'] / first['mp']:>9.1f} {r['peak_mb'] / first['peak_mb']:>7.2f} "
            f"{image_mb / first_image:>8.2f} {r['seconds']:>6.1f}"
        )


def mask_iou(args: argparse.Namespace) -> None:
    """SAM on the full image vs on the working image, per prompt and output slot."""
    torch.manual_seed(0)
    arch = "tiny-random" if args.arch == "tiny" else "vit_b"
    amg = AmgSettings(
        points_per_side=args.points_per_side,
        points_per_batch=16,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=1.0,
    )
    proposer = SamProposer(build_sam(arch), amg)
    w, h = (int(v) for v in args.iou_size.split("x"))
    image = cv2.resize(photo(1.0), (w, h), interpolation=cv2.INTER_LINEAR)
    work = working_image(image, args.working_size or 1024)

    def by_prompt(props: Proposals, scale: tuple[float, float]) -> dict[tuple[int, int], list]:
        groups: dict[tuple[int, int], list] = {}
        for i in range(len(props)):
            x, y = props.point_coords[i] * np.array(scale)
            groups.setdefault((round(float(x)), round(float(y))), []).append(i)
        return groups

    t0 = time.perf_counter()
    full = proposer(image)
    t_full = time.perf_counter() - t0
    t0 = time.perf_counter()
    small = proposer(work)
    t_small = time.perf_counter() - t0
    sx, sy = w / work.shape[1], h / work.shape[0]
    full_groups = by_prompt(full, (1.0, 1.0))
    small_groups = by_prompt(small, (sx, sy))
    ious, nontrivial = [], []
    for key, rows in full_groups.items():
        candidates = small_groups.get(key, [])
        up = [upsample_nearest(small.masks[j], (h, w)) for j in candidates]
        for i in rows:
            a = full.masks[i]
            area = a.mean()
            best = 0.0
            for b in up:  # same prompt: the closest of its (up to three) masks
                union = np.logical_or(a, b).sum()
                best = max(best, float(np.logical_and(a, b).sum() / union) if union else 1.0)
            ious.append(best)
            nontrivial.append(0.01 < area < 0.99)
    ious_a, keep = np.array(ious), np.array(nontrivial)
    print(
        f"SAM {arch}, random weights, {args.points_per_side}x{args.points_per_side} prompts, "
        f"image {w}x{h}, working {work.shape[1]}x{work.shape[0]}: {len(full)} full-size masks, "
        f"{len(small)} working masks; SAM {t_full:.1f} s full vs {t_small:.1f} s working"
    )
    for name, values in (("all masks", ious_a), ("masks covering 1-99 %", ious_a[keep])):
        if len(values):
            print(
                f"IoU ({name}, n={len(values)}): mean {values.mean():.3f}, median "
                f"{np.median(values):.3f}, 10th percentile {np.percentile(values, 10):.3f}, "
                f"min {values.min():.3f}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("real", "tiny"), default="real")
    parser.add_argument(
        "--sizes", type=float, nargs="+", default=[1, 12, 24, 50], help="megapixels"
    )
    parser.add_argument("--working-size", type=int, default=1024, help="0: full resolution")
    parser.add_argument("--clip-size", type=int, default=640)
    parser.add_argument("--points-per-side", type=int, default=12)
    parser.add_argument("--min-masks", type=int, default=40)
    parser.add_argument("--iou", action="store_true", help="compare working vs full-size SAM")
    parser.add_argument("--iou-size", default="2048x1536", help="image WxH for --iou")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
    elif args.iou:
        mask_iou(args)
    else:
        scaling(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

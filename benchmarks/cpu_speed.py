"""CPU speed levers of `segment`, old vs new per stage, measured interleaved in one process.

Not a test: it prints a stage table (seconds and speed-ups) and the deviation of each inexact
lever from float32 torch, on one ~1-MP photo (the bundled sample scaled to 1224x816) with the
`fast` preset's real architectures (SAM ViT-B, CLIP ConvNeXt-L at 640 px, the Mask-Adapter) and
random weights (or the real ones with --weights, to re-check the deviations on photos).

    python benchmarks/cpu_speed.py                       # all stages, 2 repeats
    python benchmarks/cpu_speed.py --stages decoder      # only SAM's mask decoding
    python benchmarks/cpu_speed.py --runtime openvino    # also the encoders under OpenVINO

Stages (each variant runs on the same inputs; variants alternate within every repeat, and the
table reports each variant's fastest repeat):
- sam_encoder: torch fp32 (old) vs torch bf16 autocast, and a CPU runtime when installed;
- sam_decoder: segment-anything's SamAutomaticMaskGenerator on a cached image embedding (old)
  vs samadapter's generator eager, compiled, and compiled + bf16; mask equality is checked with
  the preset's filters and with all filters open;
- clip_dense: CLIP's dense features fp32 vs bf16 (and a runtime when installed);
- adapter: 40 masks through the Mask-Adapter fp32 vs bf16.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.mask_adapter import MaskAdapter
from samadapter.modeling.mask_generator import GeneratorOptions, MaskGenerator
from samadapter.modeling.proposer import AmgSettings, Proposals, SamProposer, build_sam
from samadapter.pipeline import PipelineSettings, Segmenter
from samadapter.presets import PRESETS
from samadapter.runtime import OpenVinoEncoder
from samadapter.vocab import parse_classes
from samadapter.weights import default_weights_dir

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "chelsea.jpg"
CLASSES = (
    "cat,dog,sofa,blanket,wall,floor,person,table,chair,window,plant,lamp,rug,door,"
    "painting,shelf,book,cushion,curtain,ceiling"
)


class CachedEncoder(torch.nn.Module):
    """Stands in for SAM's image encoder and returns a fixed embedding (the decoder stage is
    then timed without the encoder, for both generators)."""

    def __init__(self, embedding: torch.Tensor, img_size: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.img_size = img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def interleave(
    variants: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """Fastest of ``repeats`` runs per variant, the variants alternating; plus last outputs."""
    best = {k: float("inf") for k in variants}
    outs: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in variants.items():
            seconds, outs[name] = timed(fn)
            best[name] = min(best[name], seconds)
    return best, outs


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |a|."""
    a, b = a.float(), b.float()
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


def mask_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-mask IoU of two equally shaped boolean mask stacks ``[..., H, W]``."""
    inter = (a & b).sum(axis=(-2, -1))
    union = (a | b).sum(axis=(-2, -1))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def same_masks(a: Proposals, b: Proposals) -> str:
    """``identical`` / ``min IoU x`` / ``counts differ``."""
    if len(a) != len(b):
        return f"counts differ ({len(a)} vs {len(b)})"
    if np.array_equal(a.masks, b.masks):
        return f"identical ({len(a)} masks)"
    return f"min IoU {mask_ious(a.masks, b.masks).min():.4f} ({len(a)} masks)"


def blob_masks(h: int, w: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.05, 0.3) * min(h, w)
        out[i] = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="encoder,decoder,clip,adapter")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", default="1224x816", help="photo size WxH")
    parser.add_argument("--points-per-side", type=int, default=PRESETS["fast"].points_per_side)
    parser.add_argument("--masks", type=int, default=40, help="masks through the adapter")
    parser.add_argument(
        "--runtime",
        default="none",
        help="also time the encoders under this runtime (openvino|onnxruntime)",
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled decoder")
    args = parser.parse_args()
    stages = set(args.stages.split(","))
    w, h = (int(v) for v in args.size.split("x"))
    image = np.asarray(Image.open(SAMPLE).convert("RGB").resize((w, h), Image.Resampling.BICUBIC))
    fast = PRESETS["fast"]
    torch.manual_seed(0)
    print(
        f"samadapter CPU speed: {w}x{h} photo, fast preset shapes, random weights, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs; fastest of {args.repeats}"
    )
    rows: list[tuple[str, str, float, float]] = []  # stage, variant, seconds, vs old
    notes: list[str] = []

    def add(stage: str, times: dict[str, float], old: str) -> None:
        for name, seconds in times.items():
            rows.append((stage, name, seconds, times[old] / seconds))

    sam = build_sam("vit_b")
    settings = AmgSettings(
        points_per_side=args.points_per_side,
        pred_iou_thresh=fast.pred_iou_thresh,
        stability_score_thresh=fast.stability_score_thresh,
        min_mask_region_area=fast.min_mask_region_area,
    )
    gen32 = MaskGenerator(sam, settings)
    with torch.inference_mode():
        _, (emb, _) = timed(lambda: gen32.embed(image))
    if "encoder" in stages:
        gen16 = MaskGenerator(sam, settings, GeneratorOptions(dtype=torch.bfloat16))
        enc_variants: dict[str, Callable[[], Any]] = {
            "torch fp32 (old)": lambda: gen32.embed(image)[0],
            "torch bf16": lambda: gen16.embed(image)[0],
        }
        if args.runtime == "openvino":
            size = int(sam.image_encoder.img_size)
            for p in ("fp32", "bf16"):
                ov = OpenVinoEncoder(
                    sam.image_encoder,
                    "sam-vit_b",
                    (1, 3, size, size),
                    False,
                    p,
                    default_weights_dir() / "runtime",
                )
                seconds, _ = timed(ov.load)
                notes.append(
                    f"OpenVINO SAM encoder {p}: convert (or read the cache) + compile "
                    f"{seconds:.1f} s"
                )
                gen = MaskGenerator(sam, settings, encoder=ov)
                enc_variants[f"openvino {p}"] = lambda gen=gen: gen.embed(image)[0]  # type: ignore[misc]
        with torch.inference_mode():
            times, outs = interleave(enc_variants, args.repeats)
        add("SAM encoder", times, "torch fp32 (old)")
        for name in list(enc_variants)[1:]:
            dev = rel_err(outs["torch fp32 (old)"], outs[name])
            notes.append(f"SAM encoder {name}: {dev:.1e} rel. max deviation of the embedding")

    if "decoder" in stages:
        real_encoder = sam.image_encoder
        sam.image_encoder = CachedEncoder(emb, real_encoder.img_size)
        old = SamProposer(sam, settings, engine="segment-anything")
        eager = SamProposer(sam, settings, GeneratorOptions(compile=False))
        variants: dict[str, Callable[[], Any]] = {
            "segment-anything (old)": lambda: old(image),
            "samadapter eager": lambda: eager(image),
        }
        if not args.no_compile:
            comp = SamProposer(sam, settings, GeneratorOptions(compile=True, compile_after=0))
            comp16 = SamProposer(
                sam, settings, GeneratorOptions(compile=True, compile_after=0, dtype=torch.bfloat16)
            )
            for name, prop in (("compiled", comp), ("compiled bf16", comp16)):
                seconds, _ = timed(lambda prop=prop: prop(image))  # type: ignore[misc]
                notes.append(f"decoder {name}: first image (compiling) {seconds:.1f} s")
            variants["samadapter compiled"] = lambda: comp(image)
            variants["samadapter compiled bf16"] = lambda: comp16(image)
        times, outs = interleave(variants, args.repeats)
        add("SAM decoding", times, "segment-anything (old)")
        for name in list(variants)[1:]:
            notes.append(
                f"decoder {name} vs segment-anything, preset filters: "
                f"{same_masks(outs['segment-anything (old)'], outs[name])}"
            )
        open_settings = AmgSettings(
            points_per_side=args.points_per_side,
            pred_iou_thresh=0.0,
            stability_score_thresh=0.0,
            box_nms_thresh=1.0,
        )
        ref = SamProposer(sam, open_settings, engine="segment-anything")(image)
        for name, opts in (
            ("eager", GeneratorOptions()),
            ("compiled", GeneratorOptions(compile=True, compile_after=0)),
        ):
            if name == "compiled" and args.no_compile:
                continue
            ours = SamProposer(sam, open_settings, opts)(image)
            notes.append(
                f"decoder {name} vs segment-anything, all filters open: {same_masks(ref, ours)}"
            )
        points = gen32.points(image.shape[:2])
        m32, iou32 = MaskGenerator(sam, settings).predict(image, points)
        m16, iou16 = MaskGenerator(sam, settings, GeneratorOptions(dtype=torch.bfloat16)).predict(
            image, points
        )
        ious = mask_ious(m32, m16)
        notes.append(
            f"decoder bf16 vs fp32 on the same {len(points)} prompts: mask IoU min "
            f"{ious.min():.4f}, mean {ious.mean():.5f}; predicted IoU max|d| "
            f"{np.abs(iou32 - iou16).max():.1e}"
        )
        sam.image_encoder = real_encoder

    if "clip" in stages or "adapter" in stages:
        backbone = ClipBackbone.from_arch("convnext_large_d_320")
        adapter = MaskAdapter().eval()
        segs = {
            p: Segmenter(
                backbone,
                adapter,
                None,
                PipelineSettings(clip_size=fast.clip_size, precision=p),
                device=torch.device("cpu"),
            )
            for p in ("fp32", "bf16")
        }
        if "clip" in stages:
            clip_variants: dict[str, Callable[[], Any]] = {
                f"torch {p}" + (" (old)" if p == "fp32" else ""): (
                    lambda p=p: segs[p].image_features(image)
                )  # type: ignore[misc]
                for p in ("fp32", "bf16")
            }
            if args.runtime == "openvino":
                for p in ("fp32", "bf16"):
                    runner = OpenVinoEncoder(
                        backbone.model.visual.trunk,
                        "clip-convnext_large_d_320",
                        (1, 3, fast.clip_size, fast.clip_size),
                        True,
                        p,
                        default_weights_dir() / "runtime",
                        method="forward_features",
                    )
                    seconds, _ = timed(runner.load)
                    notes.append(
                        f"OpenVINO CLIP {p}: convert (or read the cache) + compile {seconds:.1f} s"
                    )

                    def run_ov(runner: OpenVinoEncoder = runner) -> Any:
                        backbone.dense_runner = runner
                        try:
                            return segs["fp32"].image_features(image)
                        finally:
                            backbone.dense_runner = None

                    clip_variants[f"openvino {p}"] = run_ov
            times, outs = interleave(clip_variants, args.repeats)
            add("CLIP dense", times, "torch fp32 (old)")
            for name in list(clip_variants)[1:]:
                dev = rel_err(outs["torch fp32 (old)"].raw, outs[name].raw)
                notes.append(f"CLIP dense {name}: {dev:.1e} rel. max deviation")
        if "adapter" in stages:
            feats = segs["fp32"].image_features(image)
            masks = blob_masks(h, w, args.masks)
            times, outs = interleave(
                {
                    f"torch {p}" + (" (old)" if p == "fp32" else ""): (
                        lambda p=p: segs[p].mask_embeddings(feats, masks)
                    )  # type: ignore
                    for p in ("fp32", "bf16")
                },
                args.repeats,
            )
            add(f"adapter ({args.masks} masks)", times, "torch fp32 (old)")
            text = segs["fp32"].text_classifier(parse_classes(CLASSES))
            feats16 = segs["bf16"].image_features(image)
            e32 = outs["torch fp32 (old)"]
            e16 = segs["bf16"].mask_embeddings(feats16, masks)
            p32, p16 = segs["fp32"].probabilities(e32, text), segs["bf16"].probabilities(e16, text)
            cos = (e32 * e16).sum(1) / (np.linalg.norm(e32, axis=1) * np.linalg.norm(e16, axis=1))
            notes.append(
                f"CLIP + adapter bf16 vs fp32 ({args.masks} masks, 20 classes): class "
                f"probability max|d| {np.abs(p32 - p16).max():.1e}, labels changed "
                f"{np.mean(p32.argmax(1) != p16.argmax(1)):.1%}, min cosine of mask "
                f"embeddings {cos.min():.6f}"
            )

    print(f"\n{'stage':<22}{'variant':<28}{'seconds':>9}{'speed-up':>10}")
    for stage, name, seconds, ratio in rows:
        print(f"{stage:<22}{name:<28}{seconds:>9.2f}{ratio:>9.2f}x")
    old_total = sum(s for st, n, s, _ in rows if "(old)" in n)
    if old_total:
        best_exact: dict[str, float] = {}
        best_any: dict[str, float] = {}
        for stage, name, seconds, _ in rows:
            exact = "bf16" not in name
            if exact:
                best_exact[stage] = min(best_exact.get(stage, float("inf")), seconds)
            best_any[stage] = min(best_any.get(stage, float("inf")), seconds)
        ex, an = sum(best_exact.values()), sum(best_any.values())
        print(
            f"\nsum of the stages: old {old_total:.2f} s; exact levers {ex:.2f} s "
            f"({old_total / ex:.2f}x); with bf16 {an:.2f} s ({old_total / an:.2f}x)"
        )
    print()
    for note in notes:
        print("-", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())

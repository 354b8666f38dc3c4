"""CLIP + Mask-Adapter cost of the official test resize vs the earlier short-side resize.

Not a test: it prints figures. The CLIP input size S used to mean "short side S" (a 4:3 photo at
896 became 896x1195); it now means detectron2's ResizeShortestEdge(S, max_size=S), so the long
side is S (672x896). The cost of CLIP's dense features and of the adapter depends only on the
padded canvas, so this builds the real architectures (CLIP ConvNeXt-L, the Mask-Adapter) with
random weights and times both canvases in the same run, interleaved, best of ``--repeats``.

    python benchmarks/clip_resize_cost.py                     # 4:3 and 3:2 photos, S = 896, 640
    python benchmarks/clip_resize_cost.py --sizes 896 --masks 40 --repeats 3
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from samadapter.modeling.clip_backbone import ClipBackbone, clip_input_size
from samadapter.modeling.embeddings import adapter_embeddings
from samadapter.modeling.mask_adapter import MaskAdapter


def short_side_size(h: int, w: int, s: int) -> tuple[int, int]:
    """The earlier rule: short side s, aspect kept, no cap on the long side."""
    scale = s / min(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def padded(hw: tuple[int, int]) -> tuple[int, int]:
    return math.ceil(hw[0] / 32) * 32, math.ceil(hw[1] / 32) * 32


@torch.inference_mode()
def time_canvas(
    backbone: ClipBackbone, adapter: MaskAdapter, canvas: tuple[int, int], masks: int
) -> tuple[float, float]:
    """Seconds for CLIP's dense features and for the adapter on ``masks`` masks."""
    pixels = torch.randn(1, 3, *canvas)
    t0 = time.perf_counter()
    raw = backbone.dense_features(pixels)
    t1 = time.perf_counter()
    hp, wp = canvas
    m = torch.zeros(1, masks, hp, wp)
    for q in range(masks):  # rectangles of varied size, on the canvas
        y0, x0 = (q * 37) % (hp // 2), (q * 53) % (wp // 2)
        m[0, q, y0 : y0 + hp // 3, x0 : x0 + wp // 3] = 1.0
    t2 = time.perf_counter()
    adapter_embeddings(backbone, adapter, raw, m)
    t3 = time.perf_counter()
    return t1 - t0, t3 - t2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[896, 640])
    parser.add_argument(
        "--photos",
        nargs="+",
        default=["3000x4000", "2000x3000"],
        help="HxW of the photos (default: 4:3 and 3:2 landscape)",
    )
    parser.add_argument("--masks", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone = ClipBackbone.from_arch("convnext_large_d_320").eval()
    adapter = MaskAdapter().eval()
    print(
        f"CLIP ConvNeXt-L + Mask-Adapter, random weights, CPU ({torch.get_num_threads()} "
        f"threads), {args.masks} masks, best of {args.repeats}"
    )
    print(
        "| photo | S | old canvas (short side S) | new canvas (long side S) | CLIP old / new s "
        "| adapter old / new s | total old / new s | ratio |"
    )
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for photo in args.photos:
        h, w = (int(v) for v in photo.split("x"))
        for s in args.sizes:
            old, new = padded(short_side_size(h, w, s)), padded(clip_input_size(h, w, s))
            best = {"old": [math.inf, math.inf], "new": [math.inf, math.inf]}
            for _ in range(args.repeats):
                for key, canvas in (("old", old), ("new", new)):
                    clip_s, adapter_s = time_canvas(backbone, adapter, canvas, args.masks)
                    best[key][0] = min(best[key][0], clip_s)
                    best[key][1] = min(best[key][1], adapter_s)
            t_old, t_new = sum(best["old"]), sum(best["new"])
            print(
                f"| {w}x{h} | {s} | {old[1]}x{old[0]} | {new[1]}x{new[0]} | "
                f"{best['old'][0]:.2f} / {best['new'][0]:.2f} | "
                f"{best['old'][1]:.2f} / {best['new'][1]:.2f} | {t_old:.2f} / {t_new:.2f} | "
                f"{t_old / t_new:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""MAFT+ + Mask-Adapter on the real ConvNeXt-B / ConvNeXt-L architectures, random weights.

Builds a checkpoint in the official MAFT+ layout for each real CLIP size (every tensor name and
shape: open_clip's model, the Mask-Adapter head, ``void_embedding``, MAFT+'s ``cdt``, plus
ignored Mask2Former tensors; values random), saves it, loads it strictly through
``samadapter.models.build_classifier_models`` and names three masks of the sample image with a
few classes (or a bundled vocabulary), printing the figures. No network, no real weights. Too
slow for the test suite on a small CPU (the L file is ~1.6 GB); run it by hand or on a GPU:

    python benchmarks/maftp_real_arch.py [--arch convnext_base_w_320] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the layout builder the tests use

import maftp_layout  # noqa: E402

from samadapter.io.images import load_image  # noqa: E402
from samadapter.models import build_classifier_models  # noqa: E402
from samadapter.pipeline import PipelineSettings, Segmenter  # noqa: E402
from samadapter.vocab import parse_classes, resolve_vocabulary  # noqa: E402

CLASSES = "cat,dog,sofa|couch,blanket,floor,wall,window,plant"


def check(arch: str, device: str, clip_size: int, vocab_name: str | None) -> None:
    t0 = time.perf_counter()
    sd = maftp_layout.maftp_state_dict(arch, hidden=768, seed=0)
    n_params = sum(v.numel() for v in sd.values())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"maftp_{arch}.pth"
        torch.save({"model": sd, "iteration": 0}, path)
        size = path.stat().st_size
        del sd
        t1 = time.perf_counter()
        backbone, adapter = build_classifier_models(None, path, clip_checkpoint=None)
        t2 = time.perf_counter()
    assert adapter is not None and adapter.cdt is not None
    assert backbone.arch.name == arch, backbone.arch.name
    seg = Segmenter(
        backbone.to(device),
        adapter.to(device),
        None,
        PipelineSettings(clip_size=clip_size),
        device=torch.device(device),
    )
    image = load_image(ROOT / "samples" / "chelsea.jpg")
    h, w = image.shape[:2]
    masks = np.zeros((3, h, w), dtype=bool)
    masks[0, : h // 2], masks[1, h // 2 :], masks[2, :, : w // 3] = True, True, True
    vocab = resolve_vocabulary(None, None, vocab_name) if vocab_name else parse_classes(CLASSES)
    t3 = time.perf_counter()
    text = seg.text_classifier(vocab)
    t4 = time.perf_counter()
    feats = seg.image_features(image)
    probs = seg.class_probabilities(feats, masks, text)
    t5 = time.perf_counter()
    assert probs.shape == (3, len(vocab)) and np.isfinite(probs).all()
    print(
        f"{arch}: width {backbone.arch.embed_dim}, cdt residual "
        f"{'t+LN(MLP(a))' if adapter.cdt.norm_update else 'LN(t+MLP(a))'}, "
        f"{n_params / 1e6:.1f} M tensors' values, file {size / 1e9:.2f} GB; build+save "
        f"{t1 - t0:.1f} s, strict load {t2 - t1:.1f} s, text ({len(vocab)} classes x 14 "
        f"templates) "
        f"{t4 - t3:.1f} s, features + 3 masks at {clip_size} px {t5 - t4:.2f} s; "
        f"feature grid {tuple(feats.raw.shape[-2:])}, probs row sums "
        f"{np.round(probs.sum(1), 3).tolist()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arch", action="append", choices=["convnext_base_w_320", "convnext_large_d_320"]
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clip-size", type=int, default=896)
    parser.add_argument("--vocab", help="a bundled vocabulary (e.g. ade150); default 8 classes")
    args = parser.parse_args()
    for arch in args.arch or ["convnext_base_w_320", "convnext_large_d_320"]:
        check(arch, args.device, args.clip_size, args.vocab)


if __name__ == "__main__":
    main()

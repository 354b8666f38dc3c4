"""Benchmark reports: ``metrics.json``, ``per_class.csv``, ``report.md`` and a per-class IoU chart.

``report.md`` holds the headline table (one row per method and mask source), the adapter's gain
over plain mask pooling on the same masks, the paper's reference numbers (docs/architecture.md;
clearly labelled: they use Mask2Former-style proposals of FC-CLIP / MAFT+, not SAM), the 20 worst
classes, the most confused class pairs, the time per image by stage and the settings. The chart
``per_class_iou.png`` is drawn with PIL (one bar per class and method, classes sorted by IoU).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from samadapter.eval.metrics import SegMetrics
from samadapter.eval.predictions import BenchmarkResult, RunInfo, _stage_key
from samadapter.io.atomic import atomic_write, dumps_json, to_jsonable, write_bytes_atomic

__all__ = ["REFERENCES", "Reference", "draw_iou_chart", "summarise_timings", "write_reports"]

METRICS_FILE = "metrics.json"
PER_CLASS_FILE = "per_class.csv"
REPORT_FILE = "report.md"
CHART_FILE = "per_class_iou.png"
UNLABELLED = "(unlabelled)"


@dataclass(frozen=True)
class Reference:
    """A published result to show beside ours.

    Attributes:
        benchmark: the benchmark's usual name.
        method: the published method.
        proposals: where its masks came from.
        miou: its mIoU.
    """

    benchmark: str
    method: str
    proposals: str
    miou: float


_PAPER = "Mask-Adapter paper (arXiv 2412.04533) / official README"
REFERENCES: dict[str, list[Reference]] = {
    vocab: [
        Reference(
            bench,
            "FC-CLIP + Mask-Adapter (ConvNeXt-L)",
            "FC-CLIP's Mask2Former-style proposals, not SAM",
            fc,
        ),
        Reference(
            bench,
            "MAFTP-L + Mask-Adapter (ConvNeXt-L)",
            "MAFT+'s Mask2Former-style proposals, not SAM",
            maft,
        ),
        Reference(
            bench,
            "MAFTP-B + Mask-Adapter (ConvNeXt-B)",
            "MAFT+'s Mask2Former-style proposals, not SAM",
            maft_b,
        ),
    ]
    for vocab, bench, fc, maft, maft_b in (
        ("ade150", "ADE20K-150", 36.6, 38.2, 35.6),
        ("ade847", "ADE20K-847", 14.1, 16.2, 14.2),
        ("pc59", "Pascal Context-59", 59.7, 60.4, 58.4),
        ("pc459", "Pascal Context-459", 19.3, 22.7, 17.9),
    )
}
"""The paper's mIoU (docs/architecture.md, Reference results; PC-459 and MAFTP-B from the
official README, docs/maftp.md), by builtin vocabulary name. The files:
``fcclip_convnext_large``, ``maftp_convnext_large``, ``maftp_convnext_base``."""


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _num(x: float) -> float | None:
    return round(float(x), 4) if math.isfinite(float(x)) else None


def summarise_timings(rows: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Mean and total seconds per stage over the images timed.

    Args:
        rows: seconds by stage, by image name.

    Returns:
        ``{"images": n, "mean_seconds": {stage: s}, "total_seconds": {stage: s}}``, stages in
        pipeline order.
    """
    stages: dict[str, list[float]] = {}
    for r in rows.values():
        for stage, seconds in r.items():
            stages.setdefault(stage, []).append(float(seconds))

    names = sorted(stages, key=_stage_key)
    return {
        "images": len(rows),
        "mean_seconds": {s: round(float(np.mean(stages[s])), 6) for s in names},
        "total_seconds": {s: round(float(np.sum(stages[s])), 6) for s in names},
    }


def _adapter_gains(
    runs: Sequence[RunInfo], metrics: Mapping[str, SegMetrics]
) -> dict[str, dict[str, float | None]]:
    """mask-adapter minus mask-pooling on the same masks, per mask source."""
    out = {}
    for masks in dict.fromkeys(r.masks for r in runs):
        by_method = {r.method: metrics[r.key] for r in runs if r.masks == masks}
        if "mask-adapter" in by_method and "mask-pooling" in by_method:
            a, p = by_method["mask-adapter"].headline(), by_method["mask-pooling"].headline()
            out[masks] = {k: _num(a[k] - p[k]) for k in ("mIoU", "fwIoU", "mAcc", "pAcc")}
    return out


def _metrics_json(result: BenchmarkResult, metrics: Mapping[str, SegMetrics]) -> dict[str, Any]:
    vocab = result.vocab
    valid = next(iter(metrics.values())).valid if metrics else np.zeros(0, bool)
    refs = REFERENCES.get(vocab.name or "", [])
    return {
        "dataset": result.dataset,
        "vocabulary": vocab.name,
        "num_classes": len(vocab),
        "classes_in_ground_truth": int(valid.sum()),
        "images": len(result.names),
        "computed": result.computed,
        "skipped": result.skipped,
        "limit": result.limit,
        "seed": result.seed,
        "runs": {
            r.key: {
                "method": r.method,
                "masks": r.masks,
                "predictions": str(r.directory),
                **{k: _num(v) for k, v in metrics[r.key].headline().items()},
            }
            for r in result.runs
        },
        "adapter_gain": _adapter_gains(result.runs, metrics),
        "reference": [
            {
                "source": _PAPER,
                "benchmark": x.benchmark,
                "method": x.method,
                "proposals": x.proposals,
                "mIoU": x.miou,
            }
            for x in refs
        ],
        "timings": summarise_timings(result.timings),
        "settings": result.settings,
        "definitions": "percent; confusion matrix C[pred, gt] with an extra 'unlabelled' row "
        "(pixels no mask covers count as misses); means over classes present in "
        "the ground truth (detectron2's SemSegEvaluator; docs/architecture.md)",
    }


def _per_class_csv(result: BenchmarkResult, metrics: Mapping[str, SegMetrics]) -> bytes:
    vocab = result.vocab
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["index", "id", "name", "gt_pixels"]
    for r in result.runs:
        header += [
            f"{r.key}:iou",
            f"{r.key}:acc",
            f"{r.key}:pred_pixels",
            f"{r.key}:unlabelled_pixels",
        ]
    w.writerow(header)
    first = metrics[result.runs[0].key] if result.runs else None
    for c in range(len(vocab)):
        row: list[Any] = [
            c,
            vocab.ids[c],
            vocab.names[c],
            int(first.pos_gt[c]) if first is not None else 0,
        ]
        for r in result.runs:
            m = metrics[r.key]
            row += [
                _f(m.iou[c], 4) if m.valid[c] else "",
                _f(m.acc[c], 4) if m.valid[c] else "",
                int(m.pos_pred[c]),
                int(m.unlabelled[c]),
            ]
        w.writerow(row)
    return buf.getvalue().encode("utf-8")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _report_md(
    result: BenchmarkResult, metrics: Mapping[str, SegMetrics], summary: Mapping[str, Any]
) -> str:
    vocab = result.vocab
    names = vocab.names
    lines: list[str] = [f"# Benchmark: {_md_escape(result.dataset)}", ""]
    subset = (
        f" (a seeded subset: --limit {result.limit}, --seed {result.seed})"
        if result.limit is not None
        else ""
    )
    lines += [
        f"- images: {len(result.names)}{subset}; predictions computed now: "
        f"{result.computed}, read from earlier runs: {result.skipped}",
        f"- classes: {len(vocab)} ({vocab.name or 'custom list'}), "
        f"{summary['classes_in_ground_truth']} present in the ground truth (the means are "
        f"over these)",
        "",
    ]
    lines += [
        "## Results (ours)",
        "",
        "| method | masks | mIoU | fwIoU | mAcc | pAcc | unlabelled pixels % |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result.runs:
        h = metrics[r.key].headline()
        masks = {"sam": "SAM", "gt": "ground truth (one per segment)"}.get(r.masks, r.masks)
        lines.append(
            f"| {_md_escape(r.method)} | {masks} | {_f(h['mIoU'])} | {_f(h['fwIoU'])} "
            f"| {_f(h['mAcc'])} | {_f(h['pAcc'])} | {_f(h['unlabelled'])} |"
        )
    lines.append("")
    for masks, gain in summary["adapter_gain"].items():
        what = {"sam": "SAM masks", "gt": "ground-truth masks"}.get(masks, f"{masks} masks")
        g = gain["mIoU"]
        lines.append(
            f"**Mask-Adapter gain over plain mask pooling on the same {what}: "
            f"{'+' if g is not None and g >= 0 else ''}{_f(g if g is not None else 0)}"
            f" mIoU.**"
        )
        lines.append("")
    refs = REFERENCES.get(vocab.name or "", [])
    lines += ["## Reference: the paper's numbers (not ours)", ""]
    if refs:
        lines += [
            f"From the {_PAPER}. They name **Mask2Former-style proposals** of FC-CLIP / "
            "MAFT+ (trained on COCO), not SAM's automatic masks, so they are a point of "
            "reference rather than a like-for-like comparison.",
            "",
            "| method (paper) | proposals | mIoU |",
            "|---|---|---:|",
        ]
        lines += [f"| {x.method} | {x.proposals} | {x.miou:.1f} |" for x in refs]
    else:
        lines.append(
            "The paper reports no number for this class list (references exist for "
            "ade150, ade847 and pc59)."
        )
    lines.append("")
    for r in result.runs:
        lines += _worst_classes(r, metrics[r.key], result, names)
        lines += _confused_pairs(r, result, names)
    lines += ["## Per-class IoU", "", f"![per-class IoU]({CHART_FILE})", ""]
    lines += _timing_lines(summary["timings"])
    if result.settings:
        lines += ["## Settings", "", "```json", dumps_json(result.settings), "```", ""]
    lines += [
        "## Definitions",
        "",
        "Confusion matrix `C[pred, gt]` over all scored pixels, ground-truth ignore pixels "
        "dropped, with an extra *unlabelled* prediction row for pixels no mask covers: they "
        "count as misses of their ground-truth class and in no class's predictions. "
        "IoU = tp / (gt + pred − tp), accuracy = tp / gt, per class; mIoU and mAcc are means "
        "over the classes present in the ground truth of the images scored; fwIoU weights "
        "IoU by ground-truth pixels; pAcc = Σ tp / Σ gt. All in percent (detectron2's "
        "semantic-segmentation evaluator; docs/architecture.md). Semantic maps: per "
        "pixel the argmax of Σ_q score[q, c] · mask[q] over the masks covering it, at "
        "the image's original resolution.",
        "",
    ]
    return "\n".join(lines)


def _worst_classes(
    run: RunInfo, m: SegMetrics, result: BenchmarkResult, names: Sequence[str], top: int = 20
) -> list[str]:
    valid = np.flatnonzero(m.valid)
    if not len(valid):
        return []
    order = valid[np.lexsort((valid, m.iou[valid]))][:top]
    total = max(int(m.pos_gt.sum()), 1)
    cm = result.confusion[run.key].matrix
    k = len(names)
    lines = [
        f"## {min(top, len(valid))} worst classes: {_md_escape(run.label)}",
        "",
        "| class | IoU | accuracy | share of GT pixels % | unlabelled % | most often labelled as |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for c in order:
        col = cm[:, c].copy()
        col[c] = 0
        other = int(col.argmax())
        as_what = (
            ""
            if col[other] == 0
            else (
                f"{UNLABELLED if other == k else _md_escape(names[other])} "
                f"({100 * col[other] / m.pos_gt[c]:.1f}%)"
            )
        )
        lines.append(
            f"| {_md_escape(names[c])} | {_f(m.iou[c])} | {_f(m.acc[c])} | "
            f"{100 * m.pos_gt[c] / total:.2f} | "
            f"{100 * m.unlabelled[c] / m.pos_gt[c]:.1f} | {as_what} |"
        )
    lines.append("")
    return lines


def _confused_pairs(
    run: RunInfo, result: BenchmarkResult, names: Sequence[str], top: int = 20
) -> list[str]:
    pairs = result.confusion[run.key].confused_pairs(top)
    if not pairs:
        return []
    k = len(names)
    lines = [
        f"## Most confused class pairs: {_md_escape(run.label)}",
        "",
        "| ground truth | labelled as | pixels | share of the class's GT pixels % |",
        "|---|---|---:|---:|",
    ]
    for gt, pred, pixels, share in pairs:
        lines.append(
            f"| {_md_escape(names[gt])} | "
            f"{UNLABELLED if pred == k else _md_escape(names[pred])} | {pixels} | "
            f"{share:.1f} |"
        )
    lines.append("")
    return lines


def _timing_lines(timings: Mapping[str, Any]) -> list[str]:
    if not timings["images"]:
        return []
    lines = [
        f"## Time per image ({timings['images']} images timed)",
        "",
        "| stage | mean s | total s |",
        "|---|---:|---:|",
    ]
    for stage, mean in timings["mean_seconds"].items():
        lines.append(f"| {stage} | {mean:.4f} | {timings['total_seconds'][stage]:.2f} |")
    lines.append("")
    return lines


# --------------------------------------------------------------------------------------------------
# Chart
# --------------------------------------------------------------------------------------------------

_COLOURS = [(54, 110, 196), (230, 126, 34), (46, 160, 67), (192, 57, 43), (142, 68, 173)]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def draw_iou_chart(
    names: Sequence[str], series: Mapping[str, np.ndarray], title: str = "per-class IoU"
) -> Image.Image:
    """A horizontal bar chart of per-class IoU, one bar per class and series.

    Args:
        names: ``K`` class names.
        series: ``[K]`` IoU in percent (NaN: class left out) by series label; classes are sorted
            by the first series, best first, and only those with a value in it are drawn.
        title: drawn at the top.

    Returns:
        an RGB image.
    """
    labels = list(series)
    first = np.asarray(series[labels[0]]) if labels else np.zeros(0)
    classes = [int(c) for c in np.flatnonzero(np.isfinite(first))]
    classes.sort(key=lambda c: (-first[c], c))
    n_series = max(len(labels), 1)
    bar = 10 if len(classes) > 200 else 14
    row = bar * n_series + 6
    name_w, plot_w, value_w, pad = 230, 560, 70, 12
    font, small = _font(13), _font(max(bar - 2, 9))
    legend_h = 22 * n_series
    top = pad + 24 + legend_h + 22
    width = pad + name_w + plot_w + value_w + pad
    height = top + max(len(classes), 1) * row + pad
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((pad, pad), title, fill="black", font=font)
    for i, label in enumerate(labels):
        y = pad + 26 + 22 * i
        draw.rectangle((pad, y + 2, pad + 16, y + 14), fill=_COLOURS[i % len(_COLOURS)])
        draw.text((pad + 24, y), label, fill="black", font=font)
    x0 = pad + name_w
    axis_y = top - 6
    for tick in range(0, 101, 20):
        x = x0 + plot_w * tick / 100
        draw.line((x, axis_y, x, height - pad), fill=(225, 225, 225))
        draw.text((x - 8, axis_y - 16), str(tick), fill=(90, 90, 90), font=small)
    if not classes:
        draw.text((x0, top), "no class has ground truth", fill="black", font=font)
    for j, c in enumerate(classes):
        y = top + j * row
        draw.text((pad, y + (row - 6) / 2 - 7), _fit(names[c], 32), fill="black", font=small)
        for i, label in enumerate(labels):
            v = float(np.asarray(series[label])[c])
            if not math.isfinite(v):
                continue
            yb = y + i * bar
            draw.rectangle(
                (x0, yb, x0 + max(plot_w * v / 100, 1), yb + bar - 2),
                fill=_COLOURS[i % len(_COLOURS)],
            )
            draw.text((x0 + plot_w + 6, yb - 1), f"{v:.1f}", fill=(60, 60, 60), font=small)
    return img


# --------------------------------------------------------------------------------------------------
# All files
# --------------------------------------------------------------------------------------------------


def write_reports(result: BenchmarkResult, output: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``metrics.json``, ``per_class.csv``, ``report.md`` and ``per_class_iou.png``.

    Each file is written atomically; ``metrics.json`` last.

    Args:
        result: what the benchmark measured.
        output: the folder.

    Returns:
        the paths, by ``metrics``, ``per_class``, ``report``, ``chart``.
    """
    out = Path(output)
    metrics = result.metrics()
    summary = _metrics_json(result, metrics)
    paths = {
        "metrics": out / METRICS_FILE,
        "per_class": out / PER_CLASS_FILE,
        "report": out / REPORT_FILE,
        "chart": out / CHART_FILE,
    }
    write_bytes_atomic(paths["per_class"], _per_class_csv(result, metrics))
    chart = draw_iou_chart(
        result.vocab.names,
        {r.label: metrics[r.key].iou for r in result.runs},
        title=f"per-class IoU (%): {result.dataset}",
    )
    atomic_write(paths["chart"], lambda tmp: chart.save(tmp, format="PNG"))
    write_bytes_atomic(paths["report"], _report_md(result, metrics, summary).encode("utf-8"))
    text = json.dumps(to_jsonable(summary), indent=2, ensure_ascii=False, allow_nan=False)
    write_bytes_atomic(paths["metrics"], (text + "\n").encode("utf-8"))
    return paths

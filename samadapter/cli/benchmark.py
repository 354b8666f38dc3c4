"""``samadapter benchmark``: mIoU of SAM + Mask-Adapter (or mask pooling) on a labelled dataset."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from samadapter.cli.common import command, console, out_console, print_error
from samadapter.cli.options import (
    Classifier,
    ConfigFlags,
    QuietOpt,
    ThreadsOpt,
    config_flags,
)
from samadapter.errors import ConfigError

if TYPE_CHECKING:
    from samadapter.data.base import SemanticDataset
    from samadapter.eval.benchmark import ImageProgress

DATA_PANEL = "Dataset"
MODE_PANEL = "What to measure"


class DatasetKind(str, Enum):
    ade20k_150 = "ade20k-150"
    ade20k_847 = "ade20k-847"
    coco_stuff = "coco-stuff"
    coco_panoptic = "coco-panoptic"
    folder = "folder"


class MaskSource(str, Enum):
    sam = "sam"
    sam_two_pass = "sam-two-pass"
    gt = "gt"


@command
@config_flags(exclude=("classifier", "score_thresh", "keep_unknown", "keep_ratio", "two_pass"))
def benchmark(
    dataset: Annotated[
        DatasetKind,
        typer.Option(
            rich_help_panel=DATA_PANEL,
            help="ade20k-150 (ADEChallengeData2016 validation, 2000 images, 150 classes), "
            "ade20k-847 (ADE20K full validation, detectron2-prepared, 847 classes), coco-stuff / "
            "coco-panoptic (COCO val2017, 171 / 133 classes) or folder (any images + label "
            "maps: --images, --labels, --classes-file or --vocab).",
            show_default=False,
        ),
    ],
    *,
    root: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel=DATA_PANEL,
            help="The folder holding ADEChallengeData2016/ (ade20k-150), ADE20K_2021_17_01/ "
            "(ade20k-847) or coco/ (coco-stuff, coco-panoptic), or that folder itself.",
            show_default=False,
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel=DATA_PANEL,
            help="folder: the images (sub-folders included).",
            show_default=False,
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel=DATA_PANEL,
            help="folder: the label maps (PNG / TIFF, one class value per pixel), mirroring the "
            "images' relative paths: images/a/x.jpg -> labels/a/x.png.",
            show_default=False,
        ),
    ] = None,
    classes_file: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel=DATA_PANEL,
            help="folder: the classes, one a line ('ID:name,synonym' or 'name,synonym'; plain "
            "lines are ids 1..K).",
            show_default=False,
        ),
    ] = None,
    vocab: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=DATA_PANEL,
            help="folder: a built-in class list instead of --classes-file (pc59, cityscapes, "
            "voc21, ...; see `samadapter vocab list`).",
            show_default=False,
        ),
    ] = None,
    ignore_index: Annotated[
        int | None,
        typer.Option(
            rich_help_panel=DATA_PANEL,
            min=0,
            max=65535,
            help="folder: the label value of unlabelled pixels. [default: 255]",
            show_default=False,
        ),
    ] = None,
    label_offset: Annotated[
        int | None,
        typer.Option(
            rich_help_panel=DATA_PANEL,
            help="folder: label value + offset = class id (e.g. 1 for 0-based label maps scored "
            "with a list whose ids start at 1, like pc59). [default: 0]",
            show_default=False,
        ),
    ] = None,
    image_name_suffix: Annotated[
        str,
        typer.Option(
            rich_help_panel=DATA_PANEL,
            help="folder: text removed from image file names before pairing them with label maps "
            "(Cityscapes: _leftImg8bit).",
        ),
    ] = "",
    label_name_suffix: Annotated[
        str,
        typer.Option(
            rich_help_panel=DATA_PANEL,
            help="folder: text removed from label file names before pairing (Cityscapes: "
            "_gtFine_labelTrainIds).",
        ),
    ] = "",
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Folder for metrics.json, per_class.csv, report.md, per_class_iou.png, "
            "timings.csv and predictions/.",
        ),
    ] = Path("benchmark_out"),
    limit: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Score a fixed random subset of this many images (the same for the same "
            "--seed). [default: all]",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --limit subset.")] = 0,
    classifier: Annotated[
        Classifier | None,
        typer.Option(
            rich_help_panel=MODE_PANEL,
            help="mask-adapter (the paper's method) or mask-pooling (plain average pooling of the "
            "same CLIP features). [default: mask-adapter]",
            show_default=False,
        ),
    ] = None,
    masks: Annotated[
        list[MaskSource] | None,
        typer.Option(
            rich_help_panel=MODE_PANEL,
            help="sam: SAM's automatic masks; sam-two-pass: the same SAM prompted with a sparse "
            "grid, then only where no kept mask covers; gt: one mask per ground-truth segment "
            "(connected region of a class), which measures classification alone. Repeat to "
            "compare sources on the same images in one run (--masks sam --masks sam-two-pass). "
            "[default: sam]",
            show_default=False,
        ),
    ] = None,
    compare: Annotated[
        bool,
        typer.Option(
            rich_help_panel=MODE_PANEL,
            help="Run mask-adapter AND mask-pooling on the same masks in one pass (SAM and CLIP "
            "computed once) and report both and the adapter's gain.",
        ),
    ] = False,
    predictions: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel=MODE_PANEL,
            help="Score saved predictions without any model: a benchmark output folder (or one of "
            "its predictions/ folders), or a folder of 8/16-bit PNGs holding class index + 1 "
            "(0 = unlabelled) named like the images. Model flags are then ignored.",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Recompute predictions that exist (a rerun skips them otherwise, so an "
            "interrupted run resumes)."
        ),
    ] = False,
    flags: ConfigFlags,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> int:
    """Score SAM + Mask-Adapter on ADE20K (150 / 847 classes) or any labelled folder: mIoU,
    fwIoU, mAcc, pAcc and per-class IoU.

    Semantic maps follow the paper's rule (per pixel, the class with the largest sum of mask
    scores), at the images' original size; pixels no mask covers count as misses. Predictions are
    saved per image (predictions/MASKS/METHOD/NAME.png: 16-bit, class index + 1, 0 = none), so
    a rerun resumes, and --predictions rescores them without any model.

    Example: samadapter benchmark --dataset ade20k-150 --root datasets/ --compare --limit 200
    """
    from samadapter.eval.benchmark import run_benchmark, score_predictions

    if compare and classifier is not None:
        raise ConfigError(
            "give --compare or --classifier, not both",
            hint="--compare runs mask-adapter and mask-pooling",
        )
    sources = list(dict.fromkeys(m.value for m in masks or [MaskSource.sam]))
    data = _load_dataset(
        dataset,
        root,
        images,
        labels,
        classes_file,
        vocab,
        ignore_index,
        label_offset,
        image_name_suffix,
        label_name_suffix,
    )
    try:
        with _progress(quiet) as (bar, on_image):
            if predictions is not None:
                result = score_predictions(
                    data, predictions, output, limit=limit, seed=seed, on_image=on_image
                )
            else:
                from samadapter.models import load_segmenter

                method = (classifier or Classifier("mask-adapter")).value
                methods = ["mask-adapter", "mask-pooling"] if compare else [method]
                config = flags.given("classifier", "mask-adapter" if compare else method).config()
                if threads:
                    import torch

                    torch.set_num_threads(threads)
                t0 = time.perf_counter()
                segmenter = load_segmenter(
                    config=config,
                    progress=not quiet,
                    # No SAM for ground-truth masks; else SAM's file hash joins the settings now.
                    with_proposer=sources != ["gt"],
                    eager_proposer=sources != ["gt"],
                )
                if not quiet:
                    bar.console.print(
                        f"models ready in {time.perf_counter() - t0:.1f} s on "
                        f"{segmenter.device}; {len(data)} images, {len(data.vocab)} "
                        f"classes"
                    )
                result = run_benchmark(
                    data,
                    output,
                    segmenter=segmenter,
                    methods=methods,
                    masks=sources,
                    limit=limit,
                    seed=seed,
                    overwrite=overwrite,
                    on_image=on_image,
                )
    except KeyboardInterrupt:
        print_error(
            f"interrupted: the predictions saved so far are kept in {output}; run the "
            "same command again to continue"
        )
        return 130
    if not quiet:
        table = Table(
            "method",
            "masks",
            "mIoU",
            "fwIoU",
            "mAcc",
            "pAcc",
            "unlabelled %",
            title=f"{result.dataset}: {len(result.names)} images",
        )
        for run in result.runs:
            h = result.confusion[run.key].metrics().headline()
            table.add_row(
                run.method,
                run.masks,
                *(_pct(h[k]) for k in ("mIoU", "fwIoU", "mAcc", "pAcc", "unlabelled")),
            )
        out_console.print(table)
        if result.skipped and predictions is None:
            out_console.print(
                f"{result.skipped} image(s) read from earlier predictions "
                "(--overwrite to redo them)"
            )
        out_console.print(
            f"wrote {escape(str(output))}/report.md, metrics.json, per_class.csv, per_class_iou.png"
        )
    return 0


def _load_dataset(
    dataset: DatasetKind,
    root: Path | None,
    images: Path | None,
    labels: Path | None,
    classes_file: Path | None,
    vocab: str | None,
    ignore_index: int | None,
    label_offset: int | None,
    image_name_suffix: str = "",
    label_name_suffix: str = "",
) -> SemanticDataset:
    from samadapter.data.factory import open_dataset
    from samadapter.vocab import resolve_vocabulary

    folder_flags = {
        "--images": images,
        "--labels": labels,
        "--classes-file": classes_file,
        "--vocab": vocab,
        "--ignore-index": ignore_index,
        "--label-offset": label_offset,
    }
    if dataset is DatasetKind.folder:
        if root is not None:
            raise ConfigError(
                "--root is for the ADE20K datasets",
                hint="with --dataset folder give --images and --labels",
            )
        for flag, value in (("--images", images), ("--labels", labels)):
            if value is None:
                raise ConfigError(
                    f"--dataset folder needs {flag} DIR",
                    hint="e.g. --images val/images --labels val/labels --classes-file classes.txt",
                )
        if classes_file is None and vocab is None:
            raise ConfigError(
                "--dataset folder needs --classes-file FILE or --vocab NAME",
                hint="the classes the label values refer to",
            )
        if classes_file is not None and vocab is not None:
            raise ConfigError("give --classes-file or --vocab, not both")
        return open_dataset(
            "folder",
            None,
            images=images,
            labels=labels,
            vocab=resolve_vocabulary(None, classes_file, vocab),
            ignore_index=255 if ignore_index is None else ignore_index,
            label_offset=label_offset or 0,
            image_name_suffix=image_name_suffix,
            label_name_suffix=label_name_suffix,
        )
    given = [flag for flag, value in folder_flags.items() if value is not None]
    if given:
        raise ConfigError(
            f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} only for --dataset folder",
            hint=f"{dataset.value} has a fixed layout",
        )
    if root is None:
        raise ConfigError(
            f"--dataset {dataset.value} needs --root DIR",
            hint="the folder holding ADEChallengeData2016/, ADE20K_2021_17_01/ or coco/",
        )
    return open_dataset(dataset.value, root, "val")


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.2f}"


@contextlib.contextmanager
def _progress(quiet: bool) -> Iterator[tuple[Progress, Callable[[ImageProgress], None]]]:
    """A rich progress bar showing images done and each method's running mIoU."""
    with Progress(
        TextColumn("[bold]{task.fields[miou]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=True,
    ) as bar:
        task = bar.add_task("benchmark", total=None, miou="scoring")

        def on_image(p: ImageProgress) -> None:
            text = " ".join(f"{key.split('/')[-1]} {_pct(v)}" for key, v in p.miou.items())
            bar.update(task, total=p.total, completed=p.done, miou=f"mIoU {text}")

        yield bar, on_image

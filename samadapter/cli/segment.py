"""``samadapter segment``: images in, named masks out (overlay, COCO JSON, PNG masks)."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from samadapter.cli.common import console, print_error
from samadapter.errors import CheckpointError, ImageError, OutputError, SamAdapterError
from samadapter.io.images import IMAGE_SUFFIXES, load_image
from samadapter.io.summary import summary_table
from samadapter.io.writers import output_paths, write_all
from samadapter.vocab import resolve_vocabulary

SAM_PANEL = "SAM proposals (defaults: the preset's)"
MODEL_PANEL = "Models and weights"
CLASS_PANEL = "Classes (give one)"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Classifier(str, Enum):
    mask_adapter = "mask-adapter"
    mask_pooling = "mask-pooling"


def collect_images(inputs: list[Path]) -> list[Path]:
    """Files as given; folders expanded to the images directly inside them (sorted).

    Raises:
        ImageError: a path that does not exist, or a folder with no images.
    """
    images: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageError(f"no images in folder {path}",
                                 hint=f"expected files ending in {', '.join(IMAGE_SUFFIXES)}")
            images.extend(found)
        elif path.exists():
            images.append(path)
        else:
            raise ImageError(f"image not found: {path}", hint="check the path")
    return images


def unique_stems(images: list[Path]) -> list[str]:
    """Output stems: the file stem, with ``_2``, ``_3``... where two inputs share one."""
    seen: dict[str, int] = {}
    stems = []
    for p in images:
        n = seen.get(p.stem, 0) + 1
        seen[p.stem] = n
        stems.append(p.stem if n == 1 else f"{p.stem}_{n}")
    return stems


def segment(
    images: Annotated[list[Path], typer.Argument(
        help="Image files or folders of images (jpg, png, tif, webp, bmp).", show_default=False)],
    classes: Annotated[str | None, typer.Option(
        "--classes", "-c", rich_help_panel=CLASS_PANEL,
        help="Comma-separated class names; synonyms joined with '|', e.g. \"sofa|couch,cat\".")
    ] = None,
    classes_file: Annotated[Path | None, typer.Option(
        rich_help_panel=CLASS_PANEL,
        help="Text file, one class per line, synonyms separated by ','.")] = None,
    vocab: Annotated[str | None, typer.Option(
        rich_help_panel=CLASS_PANEL,
        help="Built-in vocabulary: ade150, ade847, coco-stuff, coco-panoptic, pc59, pc459, "
             "voc21, cityscapes, lvis (see `samadapter vocab list`).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o",
                                         help="Folder for the outputs.")] = Path("samadapter_out"),
    overwrite: Annotated[bool, typer.Option(help="Redo images whose outputs exist.")] = False,
    preset: Annotated[str, typer.Option(
        rich_help_panel=MODEL_PANEL,
        help="auto (fast on CPU, accurate on GPU) | fast (SAM ViT-B, 12x12 points, CLIP 640 px) "
             "| accurate (SAM ViT-H, 32x32 points, CLIP 896 px) | tiny-random (tests only: "
             "random weights, meaningless labels).")] = "auto",
    sam: Annotated[str | None, typer.Option(
        rich_help_panel=MODEL_PANEL, help="SAM model: vit_b, vit_l or vit_h. [default: preset's]",
        show_default=False)] = None,
    sam_checkpoint: Annotated[Path | None, typer.Option(
        rich_help_panel=MODEL_PANEL, help="SAM .pth file (instead of the registry's).")] = None,
    adapter: Annotated[str | None, typer.Option(
        rich_help_panel=MODEL_PANEL,
        help="Mask-Adapter weights by registry name (fcclip_convnext_large, demo) or 'none'. "
             "[default: fcclip_convnext_large]", show_default=False)] = None,
    adapter_checkpoint: Annotated[Path | None, typer.Option(
        rich_help_panel=MODEL_PANEL,
        help="Mask-Adapter .pth file (official detectron2 or demo layout).")] = None,
    clip: Annotated[str | None, typer.Option(
        rich_help_panel=MODEL_PANEL,
        help="CLIP model: convnext_large_d_320 or convnext_base_w_320. [default: the "
             "adapter's]", show_default=False)] = None,
    clip_checkpoint: Annotated[Path | None, typer.Option(
        rich_help_panel=MODEL_PANEL,
        help="open_clip weights file, when the adapter file carries no CLIP weights.")] = None,
    classifier: Annotated[Classifier, typer.Option(
        help="mask-adapter (the paper's method) or mask-pooling (plain average pooling of the "
             "same CLIP features: the baseline).")] = Classifier.mask_adapter,
    weights_dir: Annotated[Path | None, typer.Option(
        rich_help_panel=MODEL_PANEL, envvar="SAMADAPTER_WEIGHTS_DIR",
        help="Folder with the weight files. [default: $SAMADAPTER_HOME or ~/.cache/samadapter, "
             "then ./weights]", show_default=False)] = None,
    offline: Annotated[bool, typer.Option(
        rich_help_panel=MODEL_PANEL,
        help="Never download; fail naming each missing file and where to put it "
             "(also SAMADAPTER_OFFLINE=1).")] = False,
    points_per_side: Annotated[int | None, typer.Option(
        rich_help_panel=SAM_PANEL, min=1,
        help="Prompt grid per side (SAM: 32; fast: 12). Cost grows with its square.",
        show_default=False)] = None,
    points_per_batch: Annotated[int, typer.Option(
        rich_help_panel=SAM_PANEL, min=1, help="Prompts decoded at once.")] = 64,
    pred_iou_thresh: Annotated[float | None, typer.Option(
        rich_help_panel=SAM_PANEL, min=0.0, max=1.0,
        help="Drop masks SAM rates below this IoU (SAM: 0.88).", show_default=False)] = None,
    stability_score_thresh: Annotated[float | None, typer.Option(
        rich_help_panel=SAM_PANEL, min=0.0, max=1.0,
        help="Drop unstable masks (SAM: 0.95; the official demo: 0.7).",
        show_default=False)] = None,
    box_nms_thresh: Annotated[float, typer.Option(
        rich_help_panel=SAM_PANEL, min=0.0, max=1.0,
        help="Box IoU above which duplicate masks are suppressed.")] = 0.7,
    crop_n_layers: Annotated[int, typer.Option(
        rich_help_panel=SAM_PANEL, min=0,
        help="Also run on image crops (n layers); finds small objects, slower.")] = 0,
    min_mask_region_area: Annotated[int | None, typer.Option(
        rich_help_panel=SAM_PANEL, min=0,
        help="Remove holes and islands smaller than this (pixels; presets: 100).",
        show_default=False)] = None,
    clip_size: Annotated[int | None, typer.Option(
        min=32, help="Short side of the image fed to CLIP (paper: 896; fast: 640).",
        show_default=False)] = None,
    score_thresh: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="Drop masks whose best class probability is below this "
                               "(presets: 0.5).", show_default=False)] = None,
    keep_unknown: Annotated[bool, typer.Option(
        help="Keep masks with no confident class, labelled 'unknown'.")] = False,
    mask_batch: Annotated[int, typer.Option(
        min=1, help="Masks per adapter forward pass (lower it if memory runs out).")] = 16,
    max_size: Annotated[int | None, typer.Option(
        min=32, help="Shrink images whose long side exceeds this (pixels) before anything.",
        show_default=False)] = None,
    device: Annotated[Device, typer.Option(help="Where to run.")] = Device.auto,
    threads: Annotated[int | None, typer.Option(
        min=1, help="CPU threads for torch. [default: torch's]", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q",
                                        help="Print errors only.")] = False,
) -> None:
    """Cut out every object in IMAGES and name it from your classes.

    Writes per image, into --output: STEM.overlay.png (coloured, labelled masks), STEM.json
    (COCO with RLE masks and scores), STEM.semantic.png (pixel = category id, 0 = none) and
    STEM/CLASS.png (one 0/255 mask per class found).

    Example: samadapter segment photo.jpg --classes "cat,sofa|couch,floor"
    """
    try:
        code = _run(**locals())
    except SamAdapterError as e:
        print_error(e)
        raise typer.Exit(e.exit_code) from None
    raise typer.Exit(code)


def _run(images: list[Path], classes: str | None, classes_file: Path | None, vocab: str | None,
         output: Path, overwrite: bool, preset: str, sam: str | None,
         sam_checkpoint: Path | None, adapter: str | None, adapter_checkpoint: Path | None,
         clip: str | None, clip_checkpoint: Path | None, classifier: Classifier,
         weights_dir: Path | None, offline: bool, points_per_side: int | None,
         points_per_batch: int, pred_iou_thresh: float | None,
         stability_score_thresh: float | None, box_nms_thresh: float, crop_n_layers: int,
         min_mask_region_area: int | None, clip_size: int | None, score_thresh: float | None,
         keep_unknown: bool, mask_batch: int, max_size: int | None, device: Device,
         threads: int | None, quiet: bool) -> int:
    from samadapter.models import load_segmenter

    vocabulary = resolve_vocabulary(classes, classes_file, vocab)
    for path in (sam_checkpoint, adapter_checkpoint, clip_checkpoint):
        if path is not None and not path.is_file():
            raise CheckpointError(f"checkpoint file not found: {path}", hint="check the path")
    files = collect_images(images)
    stems = unique_stems(files)
    todo = [(f, s) for f, s in zip(files, stems, strict=True)
            if overwrite or not output_paths(output, s)["coco"].exists()]
    if len(files) == 1 and not todo:
        raise OutputError(f"outputs for {files[0]} exist already in {output}",
                          hint="pass --overwrite to redo them")
    skipped = len(files) - len(todo)
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    segmenter = load_segmenter(
        preset, sam=sam, adapter=adapter, clip=clip, sam_checkpoint=sam_checkpoint,
        adapter_checkpoint=adapter_checkpoint, clip_checkpoint=clip_checkpoint,
        weights_dir=weights_dir, offline=offline or None, device=device.value,
        amg={"points_per_side": points_per_side, "points_per_batch": points_per_batch,
             "pred_iou_thresh": pred_iou_thresh, "stability_score_thresh": stability_score_thresh,
             "box_nms_thresh": box_nms_thresh, "crop_n_layers": crop_n_layers,
             "min_mask_region_area": min_mask_region_area},
        settings={"classifier": classifier.value, "clip_short_side": clip_size,
                  "score_thresh": score_thresh, "keep_unknown": keep_unknown,
                  "mask_batch": mask_batch},
        progress=not quiet)
    if not quiet:
        console.print(f"models ready in {time.perf_counter() - t0:.1f} s on "
                      f"{segmenter.device}; {len(vocabulary)} classes")
    failed = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=quiet or len(todo) < 2,
                  transient=True) as bar:
        task = bar.add_task("segmenting", total=len(todo))
        for path, stem in todo:
            bar.update(task, description=f"segmenting {path.name}")
            try:
                image = load_image(path, max_size=max_size)
                result = segmenter(image, vocabulary, file_name=path.name)
                written = write_all(image, result, output, stem, overwrite=overwrite,
                                    replace_incomplete=True)
            except (ImageError, OutputError) as e:
                if len(files) == 1:
                    raise
                failed += 1
                print_error(f"{path}: {e} - skipped")
            else:
                if not quiet:
                    seconds = sum(result.timings.values())
                    console.print(summary_table(result, title=f"{path.name}: {len(result)} masks "
                                                f"in {seconds:.1f} s"))
                    console.print(f"wrote {written['overlay'].parent}/{stem}.*")
            bar.advance(task)
    if not quiet and (skipped or len(files) > 1):
        console.print(f"{len(todo) - failed} done, {skipped} skipped (outputs exist; "
                      f"--overwrite to redo), {failed} failed")
    return 1 if failed else 0

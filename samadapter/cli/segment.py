"""``samadapter segment``: images in, named masks out (overlay, COCO JSON, PNG masks)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from samadapter.cli.common import console, print_error, print_warning
from samadapter.cli.options import (
    CROP_OVERLAP_RATIO,
    MODEL_PANEL,
    POST_PANEL,
    AdapterCheckpointOpt,
    AdapterOpt,
    BoxNmsThreshOpt,
    ClassesFileOpt,
    ClassesOpt,
    Classifier,
    ClassifierOpt,
    ClipCheckpointOpt,
    ClipOpt,
    ClipSizeOpt,
    CropNLayersOpt,
    CropNmsThreshOpt,
    CropNPointsDownscaleFactorOpt,
    CropOverlapRatioOpt,
    Device,
    DeviceOpt,
    FormatOpt,
    KeepRatioOpt,
    KeepUnknownOpt,
    MaskBatchOpt,
    MergeOpt,
    MinMaskRegionAreaOpt,
    OfflineOpt,
    PerMaskPngOpt,
    PointsPerBatchOpt,
    PointsPerSideOpt,
    Precision,
    PrecisionOpt,
    PredIouThreshOpt,
    PresetOpt,
    QuietOpt,
    Runtime,
    RuntimeOpt,
    SamCheckpointOpt,
    SamOpt,
    ScoreThreshOpt,
    SemanticOnlyOpt,
    StabilityScoreOffsetOpt,
    StabilityScoreThreshOpt,
    ThreadsOpt,
    TopKOpt,
    TwoPassOpt,
    VocabOpt,
    WeightsDirOpt,
    amg_arguments,
    model_arguments,
)
from samadapter.cli.progress import finish, run_with_progress
from samadapter.errors import ConfigError, SamAdapterError


def _non_empty_root(value: str) -> str:
    """``--labelstudio-root`` must name a URL root: empty would leave Label Studio bare paths."""
    if not value.strip():
        raise typer.BadParameter(
            "is empty; give a URL root such as /data/local-files/?d= or https://host/photos/"
        )
    return value


def segment(
    images: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders of images, or glob patterns "
            "(quote them: 'photos/**/*.jpg').",
            show_default=False,
        ),
    ],
    classes: ClassesOpt = None,
    classes_file: ClassesFileOpt = None,
    vocab: VocabOpt = None,
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Folder for the outputs; sub-folders mirror the inputs'."
        ),
    ] = Path("samadapter_out"),
    recursive: Annotated[
        bool,
        typer.Option("--recursive", "-r", help="Also take images in sub-folders of folder inputs."),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Redo images already finished with the same settings (they are skipped "
            "otherwise, so a rerun resumes)."
        ),
    ] = False,
    cache_features: Annotated[
        bool,
        typer.Option(
            help="Also keep SAM's masks and CLIP's features per image under OUTPUT/features, so "
            "`samadapter relabel` can rename everything with new classes in seconds."
        ),
    ] = False,
    preset: PresetOpt = "auto",
    sam: SamOpt = None,
    sam_checkpoint: SamCheckpointOpt = None,
    adapter: AdapterOpt = None,
    adapter_checkpoint: AdapterCheckpointOpt = None,
    clip: ClipOpt = None,
    clip_checkpoint: ClipCheckpointOpt = None,
    classifier: ClassifierOpt = Classifier.mask_adapter,
    weights_dir: WeightsDirOpt = None,
    offline: OfflineOpt = False,
    points_per_side: PointsPerSideOpt = None,
    points_per_batch: PointsPerBatchOpt = 64,
    pred_iou_thresh: PredIouThreshOpt = None,
    stability_score_thresh: StabilityScoreThreshOpt = None,
    box_nms_thresh: BoxNmsThreshOpt = 0.7,
    crop_n_layers: CropNLayersOpt = 0,
    min_mask_region_area: MinMaskRegionAreaOpt = None,
    stability_score_offset: StabilityScoreOffsetOpt = 1.0,
    crop_nms_thresh: CropNmsThreshOpt = 0.7,
    crop_overlap_ratio: CropOverlapRatioOpt = CROP_OVERLAP_RATIO,
    crop_n_points_downscale_factor: CropNPointsDownscaleFactorOpt = 1,
    clip_size: ClipSizeOpt = None,
    score_thresh: ScoreThreshOpt = None,
    keep_unknown: KeepUnknownOpt = False,
    mask_batch: MaskBatchOpt = 0,
    max_size: Annotated[
        int | None,
        typer.Option(
            min=32,
            help="Shrink images whose long side exceeds this (pixels) before anything.",
            show_default=False,
        ),
    ] = None,
    proposer: Annotated[
        str,
        typer.Option(
            rich_help_panel=MODEL_PANEL,
            metavar="[sam|sam2]",
            autocompletion=lambda incomplete: [
                p for p in ("sam", "sam2") if p.startswith(incomplete)
            ],
            help="sam (segment-anything) or sam2 (SAM 2.1, needs `pip install samadapter[sam2]`; "
            "model: --sam sam2.1_hiera_tiny|small|base_plus|large, default large).",
        ),
    ] = "sam",
    format: FormatOpt = None,
    labelstudio_root: Annotated[
        str,
        typer.Option(
            rich_help_panel=POST_PANEL,
            callback=_non_empty_root,
            help="URL root of the images in labelstudio/tasks.json; each image's path relative to "
            "the inputs' common folder is URL-encoded and appended (local-files storage by "
            "default; or e.g. https://host/photos/, s3://bucket/photos/).",
        ),
    ] = "/data/local-files/?d=",  # samadapter.io.labelstudio.LOCAL_FILES_ROOT
    yolo_copy_images: Annotated[
        bool,
        typer.Option(
            rich_help_panel=POST_PANEL,
            help="Hard-link (or copy) the images into yolo/images/ so that yolo/ is a complete "
            "Ultralytics dataset.",
        ),
    ] = False,
    merge: MergeOpt = False,
    semantic_only: SemanticOnlyOpt = False,
    top_k: TopKOpt = None,
    keep_ratio: KeepRatioOpt = None,
    per_mask_png: PerMaskPngOpt = False,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    runtime: RuntimeOpt = Runtime.auto,
    two_pass: TwoPassOpt = False,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Cut out every object in IMAGES and name it from your classes.

    Writes per image NAME (its path below the inputs' common folder, extension kept), into
    --output/per-image: NAME.overlay.png (coloured, labelled masks), NAME.json (COCO with RLE
    masks and scores), NAME.semantic.png (pixel = category id, 0 = none) and
    NAME.masks/CLASS.png (one 0/255 mask per class found; with --per-mask-png also
    NAME.masks/per-mask/N.png per mask and metadata.csv, as SAM's amg.py writes them); for the
    whole run annotations.json (one COCO file of every image), run.json (settings, models,
    timings) and failures.json.
    Nothing outside --output is written, and nothing there that samadapter did not write is
    ever replaced (the run stops first, naming it).

    A rerun skips images already finished with the same settings, so an interrupted run
    continues where it stopped. Images that cannot be read are reported and skipped; the exit
    code is then 1.

    Example: samadapter segment photos/ --classes "cat,sofa|couch,floor" -o out
    """
    try:
        code = _run(**locals())
    except SamAdapterError as e:
        print_error(e)
        raise typer.Exit(e.exit_code) from None
    raise typer.Exit(code)


def _run(
    images: list[str],
    classes: str | None,
    classes_file: Path | None,
    vocab: str | None,
    output: Path,
    recursive: bool,
    overwrite: bool,
    cache_features: bool,
    preset: str,
    sam: str | None,
    sam_checkpoint: Path | None,
    adapter: str | None,
    adapter_checkpoint: Path | None,
    clip: str | None,
    clip_checkpoint: Path | None,
    classifier: Classifier,
    weights_dir: Path | None,
    offline: bool,
    points_per_side: int | None,
    points_per_batch: int,
    pred_iou_thresh: float | None,
    stability_score_thresh: float | None,
    box_nms_thresh: float,
    crop_n_layers: int,
    min_mask_region_area: int | None,
    stability_score_offset: float,
    crop_nms_thresh: float,
    crop_overlap_ratio: float,
    crop_n_points_downscale_factor: int,
    clip_size: int | None,
    score_thresh: float | None,
    keep_unknown: bool,
    mask_batch: int,
    max_size: int | None,
    proposer: str,
    format: list[str] | None,
    labelstudio_root: str,
    yolo_copy_images: bool,
    merge: bool,
    semantic_only: bool,
    top_k: int | None,
    keep_ratio: float | None,
    per_mask_png: bool,
    device: Device,
    precision: Precision,
    runtime: Runtime,
    two_pass: bool,
    threads: int | None,
    quiet: bool,
) -> int:
    import torch

    from samadapter.batch import (
        BatchOptions,
        BatchRunner,
        PostProcess,
        check_outputs,
        collect_inputs,
    )
    from samadapter.io.exports import ExportOptions, check_exports
    from samadapter.models import load_segmenter
    from samadapter.vocab import check_keep_unknown, resolve_vocabulary

    vocabulary = resolve_vocabulary(classes, classes_file, vocab)
    check_keep_unknown(vocabulary, keep_unknown)  # a refusal before the models load, not after
    exports = check_exports(format or ["coco"])
    post = PostProcess(merge=merge, semantic_only=semantic_only, top_k=top_k)
    if proposer not in ("sam", "sam2"):
        raise ConfigError(f"unknown --proposer '{proposer}'", hint="use sam or sam2")
    if proposer == "sam2" and sam is None:
        sam = "sam2.1_hiera_large"
    model_args = model_arguments(
        preset,
        sam,
        sam_checkpoint,
        adapter,
        adapter_checkpoint,
        clip,
        clip_checkpoint,
        weights_dir,
        offline,
        device,
    )
    model_args["precision"] = precision.value
    model_args["runtime"] = runtime.value
    if two_pass:
        model_args["two_pass"] = True
    items = collect_inputs(images, recursive=recursive, output=output)
    options = BatchOptions(
        out_dir=output,
        overwrite=overwrite,
        max_size=max_size,
        cache_features=cache_features,
        exports=exports,
        export_options=ExportOptions(labelstudio_root, yolo_copy_images),
        postprocess=post,
        per_mask_png=per_mask_png,
    )
    check_outputs(options, items)  # before loading any model; checked again before writing
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    segmenter = load_segmenter(
        **model_args,
        amg=amg_arguments(
            points_per_side,
            points_per_batch,
            pred_iou_thresh,
            stability_score_thresh,
            box_nms_thresh,
            crop_n_layers,
            min_mask_region_area,
            stability_score_offset,
            crop_nms_thresh,
            crop_overlap_ratio,
            crop_n_points_downscale_factor,
        ),
        settings={
            "classifier": classifier.value,
            "clip_size": clip_size,
            "score_thresh": score_thresh,
            "keep_unknown": keep_unknown,
            "keep_ratio": keep_ratio,
            "mask_batch": mask_batch,
        },
        progress=not quiet,
        eager_proposer=True,
    )
    if not quiet:
        console.print(
            f"models ready in {time.perf_counter() - t0:.1f} s on {segmenter.device}; "
            f"{len(vocabulary)} classes, {len(items)} image(s)"
        )
    run_settings = {
        key: (str(value) if isinstance(value, Path) else value) for key, value in model_args.items()
    }
    run_settings["precision"] = segmenter.settings.precision  # as resolved on this machine
    run_settings["runtime"] = segmenter.info["runtime"]
    runner = BatchRunner(
        segmenter, vocabulary, options, run_settings=run_settings, on_warning=print_warning
    )
    summary = run_with_progress(runner, items, quiet=quiet)
    return finish(summary, quiet=quiet)

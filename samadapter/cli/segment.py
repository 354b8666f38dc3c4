"""``samadapter segment``: images in, named masks out (overlay, COCO JSON, PNG masks)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from samadapter.cli.cluster import batch_runner
from samadapter.cli.common import command, print_warning
from samadapter.cli.options import (
    MODEL_PANEL,
    POST_PANEL,
    AdapterCheckpointOpt,
    AdapterOpt,
    ClassesFileOpt,
    ClassesOpt,
    Classifier,
    ClassifierOpt,
    ClipCheckpointOpt,
    ClipOpt,
    ClipSizeOpt,
    Device,
    DeviceOpt,
    FormatOpt,
    KeepRatioOpt,
    KeepUnknownOpt,
    MaskBatchOpt,
    MergeOpt,
    OfflineOpt,
    PerMaskPngOpt,
    Precision,
    PrecisionOpt,
    PresetOpt,
    QuietOpt,
    RayActorsOpt,
    RayOpt,
    Runtime,
    RuntimeOpt,
    SamCheckpointOpt,
    SamOpt,
    ScoreThreshOpt,
    SemanticOnlyOpt,
    ThreadsOpt,
    TopKOpt,
    TwoPassOpt,
    VerboseOpt,
    VocabOpt,
    WeightsDirOpt,
    flags_config,
    sam_flags,
)
from samadapter.cli.progress import finish, run_with_progress
from samadapter.errors import ConfigError


def _non_empty_root(value: str) -> str:
    """``--labelstudio-root`` must name a URL root: empty would leave Label Studio bare paths."""
    if not value.strip():
        raise typer.BadParameter(
            "is empty; give a URL root such as /data/local-files/?d= or https://host/photos/"
        )
    return value


@command
@sam_flags
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
    amg: dict[str, object] | None = None,  # the SAM knob flags (see sam_flags)
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
    ray: RayOpt = None,
    ray_actors: RayActorsOpt = None,
    verbose: VerboseOpt = False,
) -> int:
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
    import torch

    from samadapter.batch import (
        BatchOptions,
        BatchRunner,
        PostProcess,
        check_outputs,
        collect_inputs,
        models_record,
    )
    from samadapter.io.exports import ExportOptions, check_exports
    from samadapter.models import load_segmenter
    from samadapter.vocab import check_keep_unknown, resolve_vocabulary

    vocabulary = resolve_vocabulary(classes, classes_file, vocab)
    check_keep_unknown(vocabulary, keep_unknown)  # a refusal before the models load, not after
    exports = check_exports(format or ["coco"])
    if proposer not in ("sam", "sam2"):
        raise ConfigError(f"unknown --proposer '{proposer}'", hint="use sam or sam2")
    if proposer == "sam2" and sam is None:
        sam = "sam2.1_hiera_large"
    config = flags_config(
        preset,
        models={
            "sam": sam,
            "sam_checkpoint": sam_checkpoint,
            "adapter": adapter,
            "adapter_checkpoint": adapter_checkpoint,
            "clip": clip,
            "clip_checkpoint": clip_checkpoint,
            "weights_dir": weights_dir,
            "offline": offline or None,
            "device": device,
            "precision": precision,
            "runtime": runtime,
            "two_pass": two_pass,
        },
        amg=amg,
        pipeline={
            "classifier": classifier,
            "clip_size": clip_size,
            "score_thresh": score_thresh,
            "keep_unknown": keep_unknown,
            "keep_ratio": keep_ratio,
            "mask_batch": mask_batch,
        },
    )
    items = collect_inputs(images, recursive=recursive, output=output)
    options = BatchOptions(
        out_dir=output,
        overwrite=overwrite,
        max_size=max_size,
        cache_features=cache_features,
        exports=exports,
        export_options=ExportOptions(labelstudio_root, yolo_copy_images),
        postprocess=PostProcess(merge=merge, semantic_only=semantic_only, top_k=top_k),
        per_mask_png=per_mask_png,
    )
    check_outputs(options, items)  # before loading any model; checked again before writing
    if threads and not ray:
        torch.set_num_threads(threads)

    def build() -> BatchRunner:  # here, or on every Ray actor
        segmenter = load_segmenter(config=config, progress=not (quiet or ray), eager_proposer=True)
        run = models_record(config.models, segmenter)
        return BatchRunner(
            segmenter, vocabulary, options, run_settings=run, on_warning=print_warning
        )

    runner = batch_runner(
        build,
        ray,
        ray_actors=ray_actors,
        threads=threads,
        verbose=verbose,
        quiet=quiet,
        ready=lambda built, seconds: (
            f"models ready in {seconds:.1f} s on "
            f"{built.segmenter.device}; {len(vocabulary)} classes, {len(items)} image(s)"
        ),
    )
    return finish(run_with_progress(runner, items, quiet=quiet), quiet=quiet)

"""``samadapter segment``: images in, named masks out (overlay, COCO JSON, PNG masks)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from samadapter.cli.cluster import BatchFlags, batch_flags, ready_line
from samadapter.cli.common import command, print_warning
from samadapter.cli.options import (
    MODEL_PANEL,
    POST_PANEL,
    ConfigFlags,
    Outputs,
    class_flags,
    config_flags,
    output_flags,
)
from samadapter.cli.progress import finish, run_with_progress
from samadapter.errors import ConfigError
from samadapter.vocab import Vocabulary


def _non_empty_root(value: str) -> str:
    """``--labelstudio-root`` must name a URL root: empty would leave Label Studio bare paths."""
    if not value.strip():
        raise typer.BadParameter(
            "is empty; give a URL root such as /data/local-files/?d= or https://host/photos/"
        )
    return value


@command
@class_flags
@config_flags()
@output_flags
@batch_flags
def segment(
    images: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders of images, or glob patterns "
            "(quote them: 'photos/**/*.jpg').",
            show_default=False,
        ),
    ],
    *,
    vocabulary: Vocabulary,
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
    flags: ConfigFlags,
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
    outputs: Outputs,
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
    per_mask_png: Annotated[
        bool,
        typer.Option(
            rich_help_panel=POST_PANEL,
            help="Also write one 0/255 PNG per mask and a metadata.csv into NAME.masks/per-mask/ "
            "(the layout of segment-anything's amg.py), beside the per-class PNGs.",
        ),
    ] = False,
    batch: BatchFlags,
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
    from samadapter.batch import (
        BatchOptions,
        BatchRunner,
        check_outputs,
        collect_inputs,
        models_record,
    )
    from samadapter.io.exports import ExportOptions
    from samadapter.models import load_segmenter
    from samadapter.vocab import check_keep_unknown

    if proposer not in ("sam", "sam2"):
        raise ConfigError(f"unknown --proposer '{proposer}'", hint="use sam or sam2")
    if proposer == "sam2":
        flags = flags.given("sam", "sam2.1_hiera_large")
    config = flags.config()
    check_keep_unknown(vocabulary, config.pipeline.keep_unknown)  # before the models load
    items = collect_inputs(images, recursive=recursive, output=output)
    options = BatchOptions(
        out_dir=output,
        overwrite=overwrite,
        max_size=max_size,
        cache_features=cache_features,
        exports=outputs.exports,
        export_options=ExportOptions(labelstudio_root, yolo_copy_images),
        postprocess=outputs.postprocess,
        per_mask_png=per_mask_png,
    )
    check_outputs(options, items)  # before loading any model; checked again before writing

    def build() -> BatchRunner:  # here, or on every Ray actor
        segmenter = load_segmenter(config=config, progress=batch.progress, eager_proposer=True)
        run = models_record(config.models, segmenter)
        return BatchRunner(
            segmenter, vocabulary, options, run_settings=run, on_warning=print_warning
        )

    runner = batch.runner(build, ready_line(len(vocabulary), len(items)))
    return finish(run_with_progress(runner, items, quiet=batch.quiet), quiet=batch.quiet)

"""``samadapter classify``: name masks from any generator (COCO JSON, mask PNGs, label PNGs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from samadapter.cli.cluster import BatchFlags, batch_flags, ready_line
from samadapter.cli.common import command, print_warning
from samadapter.cli.options import (
    SAM_ONLY,
    ConfigFlags,
    Outputs,
    class_flags,
    config_flags,
    output_flags,
)
from samadapter.cli.progress import finish, run_with_progress
from samadapter.errors import ImageError
from samadapter.vocab import Vocabulary

DEFAULT_MAX_MASKS = 1000
"""``--max-masks`` default: :data:`samadapter.io.mask_inputs.DEFAULT_MAX_MASKS`, written out here
so that the CLI starts without loading the mask readers (a test keeps the two equal)."""


@command
@class_flags
@config_flags(exclude=SAM_ONLY)
@output_flags
@batch_flags
def classify(
    images: Annotated[
        list[str],
        typer.Argument(
            help="An image, or folders / globs of images (then --masks is a folder or one COCO "
            "file covering them).",
            show_default=False,
        ),
    ],
    *,
    masks: Annotated[
        Path,
        typer.Option(
            "--masks",
            "-m",
            help="The masks: a COCO JSON (ours, SAM's amg.py --convert-to-rle output, any model's "
            "results with RLE or polygons), a folder of binary mask PNGs, or a label PNG (one "
            "mask per value). For several images: a folder with <name>.json / <name>.png / "
            "<name>/ per image, or one COCO JSON matched by file_name.",
            show_default=False,
        ),
    ],
    vocabulary: Vocabulary,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the outputs.")] = Path(
        "samadapter_out"
    ),
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Also take images in sub-folders.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Redo images already finished with the same settings.")
    ] = False,
    flags: ConfigFlags,
    outputs: Outputs,
    max_masks: Annotated[
        int,
        typer.Option(
            min=1,
            help="Most masks taken from one image's mask input; beyond it the largest are "
            "kept (from a folder: the first files by name) and a warning says how many "
            "were left out. Each mask costs H x W bytes.",
        ),
    ] = DEFAULT_MAX_MASKS,
    batch: BatchFlags,
) -> int:
    """Name masks made by any other tool (SAM 2, Mask2Former, a hand annotation, a previous run).

    The masks are classified with the Mask-Adapter (or --classifier mask-pooling) and written as
    `segment` writes them. Masks of the wrong size, empty or unreadable ones are reported one
    line each and left out.

    Example: samadapter classify photo.jpg --masks photo_masks.json --classes "cat,sofa"
    """
    from samadapter.batch import (
        BatchOptions,
        ClassifyRunner,
        check_outputs,
        collect_inputs,
        models_record,
    )
    from samadapter.models import load_segmenter
    from samadapter.vocab import check_keep_unknown

    if not masks.exists():
        raise ImageError(f"masks not found: {masks}", hint="check the --masks path")
    # Given masks are all named unless asked (the official given-mask path).
    config = flags.given("keep_ratio", 0.0).config()
    check_keep_unknown(vocabulary, config.pipeline.keep_unknown)  # before the models load
    items = collect_inputs(images, recursive=recursive, output=output)
    single = len(items) == 1 and not Path(images[0]).is_dir()
    options = BatchOptions(
        out_dir=output,
        overwrite=overwrite,
        exports=outputs.exports,
        postprocess=outputs.postprocess,
    )
    check_outputs(options, items)  # before loading any model

    def build() -> ClassifyRunner:  # here, or on every Ray actor
        segmenter = load_segmenter(config=config, with_proposer=False, progress=batch.progress)
        return ClassifyRunner(
            segmenter,
            vocabulary,
            options,
            masks=masks,
            single=single,
            on_warning=print_warning,
            max_masks=max_masks,
            run_settings=models_record(config.models, segmenter),
        )

    runner = batch.runner(build, ready_line(len(vocabulary), len(items)))
    return finish(run_with_progress(runner, items, quiet=batch.quiet), quiet=batch.quiet)

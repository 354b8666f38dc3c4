"""``samadapter relabel``: rename a finished run's masks with new classes, without SAM or CLIP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from samadapter.cli.cluster import BatchFlags, batch_flags
from samadapter.cli.common import command, print_warning
from samadapter.cli.options import Classifier, ConfigFlags, class_flags, config_flags
from samadapter.cli.progress import finish, run_with_progress
from samadapter.vocab import Vocabulary


@command
@class_flags
@config_flags(only=("score_thresh", "weights_dir", "offline", "device"))
@batch_flags
def relabel(
    output: Annotated[
        Path,
        typer.Argument(
            help="The --output folder of a `segment --cache-features` run.", show_default=False
        ),
    ],
    *,
    vocabulary: Vocabulary,
    classifier: Annotated[
        Classifier | None,
        typer.Option(help="mask-adapter or mask-pooling. [default: the run's]", show_default=False),
    ] = None,
    keep_unknown: Annotated[
        bool | None,
        typer.Option(
            "--keep-unknown/--drop-unknown",
            help="Also keep masks whose top class is void, as 'unknown'. [default: the run's]",
            show_default=False,
        ),
    ] = None,
    keep_ratio: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="The demo's keep rule: keep a mask if its probability of some class is above "
            "RATIO x the best any mask has for it; 0 keeps all. [default: the run's]",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(help="Redo images already named with exactly these classes and settings."),
    ] = False,
    flags: ConfigFlags,
    batch: BatchFlags,
) -> int:
    """Rename every mask of a finished run with NEW classes, in seconds per image.

    SAM's masks and CLIP's image features come from OUTPUT/features (kept by `segment
    --cache-features`); only the text encoder and the Mask-Adapter run. Every output file of
    the run is rewritten, as a fresh `segment` with these classes would write it.

    Example: samadapter relabel out --classes "dog,armchair,rug"
    """
    from samadapter.batch import (
        BatchOptions,
        PostProcess,
        RelabelRunner,
        check_outputs,
        inputs_of_run,
        load_run,
        relabel_settings,
        run_config,
    )
    from samadapter.config import from_json
    from samadapter.io.exports import export_options_from
    from samadapter.io.images import DEFAULT_MAX_PIXELS
    from samadapter.io.writers import FORMATS
    from samadapter.models import load_segmenter
    from samadapter.vocab import check_keep_unknown

    run = load_run(output)
    options = BatchOptions(
        out_dir=output,
        overwrite=overwrite,
        max_size=run["settings"].get("max_size"),
        max_pixels=run["settings"].get("max_pixels", DEFAULT_MAX_PIXELS),
        cache_features=True,
        formats=tuple(run["settings"].get("formats", FORMATS)),
        exports=tuple(run["settings"].get("exports", ["coco"])),
        export_options=export_options_from(run.get("export_options")),
        postprocess=from_json(PostProcess, run["settings"].get("postprocess", {})),
        per_mask_png=bool(run["settings"].get("per_mask_png")),
    )
    items = inputs_of_run(run)
    check_outputs(options, items, write_features=False)  # before loading any model
    for name, value in (
        ("classifier", classifier),
        ("keep_unknown", keep_unknown),
        ("keep_ratio", keep_ratio),
    ):
        flags = flags.given(name, value)
    config = flags.apply(run_config(run))
    check_keep_unknown(vocabulary, config.pipeline.keep_unknown)  # before the models load

    def build() -> RelabelRunner:  # here, or on every Ray actor
        segmenter = load_segmenter(config=config, with_proposer=False, progress=batch.progress)
        return RelabelRunner(
            segmenter,
            vocabulary,
            options,
            run_settings=run["run"],
            settings=relabel_settings(run, vocabulary, segmenter.settings),
            on_warning=print_warning,
        )

    runner = batch.runner(
        build,
        lambda built, seconds: (
            f"models ready in {seconds:.1f} s; relabelling "
            f"{len(run['inputs'])} image(s) with {len(vocabulary)} classes"
        ),
    )
    return finish(run_with_progress(runner, items, quiet=batch.quiet), quiet=batch.quiet)

"""``samadapter relabel``: rename a finished run's masks with new classes, without SAM or CLIP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from samadapter.cli.cluster import batch_runner
from samadapter.cli.common import command, print_warning
from samadapter.cli.options import (
    ClassesFileOpt,
    ClassesOpt,
    Classifier,
    Device,
    DeviceOpt,
    OfflineOpt,
    QuietOpt,
    RayActorsOpt,
    RayOpt,
    ScoreThreshOpt,
    ThreadsOpt,
    VerboseOpt,
    VocabOpt,
    WeightsDirOpt,
)
from samadapter.cli.progress import finish, run_with_progress


@command
def relabel(
    output: Annotated[
        Path,
        typer.Argument(
            help="The --output folder of a `segment --cache-features` run.", show_default=False
        ),
    ],
    classes: ClassesOpt = None,
    classes_file: ClassesFileOpt = None,
    vocab: VocabOpt = None,
    classifier: Annotated[
        Classifier | None,
        typer.Option(help="mask-adapter or mask-pooling. [default: the run's]", show_default=False),
    ] = None,
    score_thresh: ScoreThreshOpt = None,
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
    weights_dir: WeightsDirOpt = None,
    offline: OfflineOpt = False,
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
    ray: RayOpt = None,
    ray_actors: RayActorsOpt = None,
    verbose: VerboseOpt = False,
) -> int:
    """Rename every mask of a finished run with NEW classes, in seconds per image.

    SAM's masks and CLIP's image features come from OUTPUT/features (kept by `segment
    --cache-features`); only the text encoder and the Mask-Adapter run. Every output file of
    the run is rewritten, as a fresh `segment` with these classes would write it.

    Example: samadapter relabel out --classes "dog,armchair,rug"
    """
    import torch

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
    from samadapter.config import from_json, override
    from samadapter.io.exports import export_options_from
    from samadapter.io.images import DEFAULT_MAX_PIXELS
    from samadapter.io.writers import FORMATS
    from samadapter.models import load_segmenter
    from samadapter.vocab import resolve_vocabulary

    vocabulary = resolve_vocabulary(classes, classes_file, vocab)
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
    if threads and not ray:
        torch.set_num_threads(threads)
    config = override(
        run_config(run),
        {
            "models": {
                "weights_dir": weights_dir,
                "offline": offline or None,
                "device": device,
            },
            "pipeline": {
                "classifier": classifier,
                "score_thresh": score_thresh,
                "keep_unknown": keep_unknown,
                "keep_ratio": keep_ratio,
            },
        },
        "flags",
    )

    def build() -> RelabelRunner:  # here, or on every Ray actor
        segmenter = load_segmenter(config=config, with_proposer=False, progress=not (quiet or ray))
        return RelabelRunner(
            segmenter,
            vocabulary,
            options,
            run_settings=run["run"],
            settings=relabel_settings(run, vocabulary, segmenter.settings),
            on_warning=print_warning,
        )

    runner = batch_runner(
        build,
        ray,
        ray_actors=ray_actors,
        threads=threads,
        verbose=verbose,
        quiet=quiet,
        ready=lambda built, seconds: (
            f"models ready in {seconds:.1f} s; relabelling "
            f"{len(run['inputs'])} image(s) with {len(vocabulary)} classes"
        ),
    )
    return finish(run_with_progress(runner, items, quiet=quiet), quiet=quiet)

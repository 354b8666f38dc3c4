"""``samadapter classify``: name masks from any generator (COCO JSON, mask PNGs, label PNGs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from samadapter.cli.cluster import batch_runner
from samadapter.cli.common import command, print_warning
from samadapter.cli.options import (
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
    PresetOpt,
    QuietOpt,
    RayActorsOpt,
    RayOpt,
    ScoreThreshOpt,
    SemanticOnlyOpt,
    ThreadsOpt,
    TopKOpt,
    VerboseOpt,
    VocabOpt,
    WeightsDirOpt,
    flags_config,
)
from samadapter.cli.progress import finish, run_with_progress
from samadapter.errors import ImageError

DEFAULT_MAX_MASKS = 1000
"""``--max-masks`` default: :data:`samadapter.io.mask_inputs.DEFAULT_MAX_MASKS`, written out here
so that the CLI starts without loading the mask readers (a test keeps the two equal)."""


@command
def classify(
    images: Annotated[
        list[str],
        typer.Argument(
            help="An image, or folders / globs of images (then --masks is a folder or one COCO "
            "file covering them).",
            show_default=False,
        ),
    ],
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
    classes: ClassesOpt = None,
    classes_file: ClassesFileOpt = None,
    vocab: VocabOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the outputs.")] = Path(
        "samadapter_out"
    ),
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Also take images in sub-folders.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Redo images already finished with the same settings.")
    ] = False,
    preset: PresetOpt = "auto",
    adapter: AdapterOpt = None,
    adapter_checkpoint: AdapterCheckpointOpt = None,
    clip: ClipOpt = None,
    clip_checkpoint: ClipCheckpointOpt = None,
    classifier: ClassifierOpt = Classifier.mask_adapter,
    weights_dir: WeightsDirOpt = None,
    offline: OfflineOpt = False,
    clip_size: ClipSizeOpt = None,
    score_thresh: ScoreThreshOpt = None,
    keep_unknown: KeepUnknownOpt = False,
    mask_batch: MaskBatchOpt = 0,
    format: FormatOpt = None,
    merge: MergeOpt = False,
    semantic_only: SemanticOnlyOpt = False,
    top_k: TopKOpt = None,
    keep_ratio: KeepRatioOpt = None,
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
    ray: RayOpt = None,
    ray_actors: RayActorsOpt = None,
    verbose: VerboseOpt = False,
    max_masks: Annotated[
        int,
        typer.Option(
            min=1,
            help="Most masks taken from one image's mask input; beyond it the largest are "
            "kept (from a folder: the first files by name) and a warning says how many "
            "were left out. Each mask costs H x W bytes.",
        ),
    ] = DEFAULT_MAX_MASKS,
) -> int:
    """Name masks made by any other tool (SAM 2, Mask2Former, a hand annotation, a previous run).

    The masks are classified with the Mask-Adapter (or --classifier mask-pooling) and written as
    `segment` writes them. Masks of the wrong size, empty or unreadable ones are reported one
    line each and left out.

    Example: samadapter classify photo.jpg --masks photo_masks.json --classes "cat,sofa"
    """
    import torch

    from samadapter.batch import (
        BatchOptions,
        ClassifyRunner,
        PostProcess,
        check_outputs,
        collect_inputs,
        models_record,
    )
    from samadapter.io.exports import check_exports
    from samadapter.models import load_segmenter
    from samadapter.vocab import resolve_vocabulary

    vocabulary = resolve_vocabulary(classes, classes_file, vocab)
    exports = check_exports(format or ["coco"])
    if not masks.exists():
        raise ImageError(f"masks not found: {masks}", hint="check the --masks path")
    config = flags_config(
        preset,
        models={
            "adapter": adapter,
            "adapter_checkpoint": adapter_checkpoint,
            "clip": clip,
            "clip_checkpoint": clip_checkpoint,
            "weights_dir": weights_dir,
            "offline": offline or None,
            "device": device,
        },
        pipeline={
            "classifier": classifier,
            "clip_size": clip_size,
            "score_thresh": score_thresh,
            "keep_unknown": keep_unknown,
            # Given masks are all named unless asked (the official given-mask path).
            "keep_ratio": keep_ratio if keep_ratio is not None else 0.0,
            "mask_batch": mask_batch,
        },
    )
    items = collect_inputs(images, recursive=recursive, output=output)
    single = len(items) == 1 and not Path(images[0]).is_dir()
    options = BatchOptions(
        out_dir=output,
        overwrite=overwrite,
        exports=exports,
        postprocess=PostProcess(merge=merge, semantic_only=semantic_only, top_k=top_k),
    )
    check_outputs(options, items)  # before loading any model
    if threads and not ray:
        torch.set_num_threads(threads)

    def build() -> ClassifyRunner:  # here, or on every Ray actor
        segmenter = load_segmenter(config=config, with_proposer=False, progress=not (quiet or ray))
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

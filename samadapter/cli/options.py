"""Options shared by the commands that load models (segment, relabel, benchmark, train)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from samadapter.cli import choices
from samadapter.cli.common import print_warning
from samadapter.config import AmgSettings, ModelConfig, RunConfig, override
from samadapter.errors import CheckpointError
from samadapter.presets import preset_config

MODEL_PANEL = "Models and weights"
CLASS_PANEL = "Classes (give one)"
SAM_PANEL = "SAM proposals (defaults: the preset's)"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Classifier(str, Enum):
    mask_adapter = "mask-adapter"
    mask_pooling = "mask-pooling"


ClassesOpt = Annotated[
    str | None,
    typer.Option(
        "--classes",
        "-c",
        rich_help_panel=CLASS_PANEL,
        help="Comma-separated class names; synonyms joined with '|', e.g. \"sofa|couch,cat\".",
    ),
]
ClassesFileOpt = Annotated[
    Path | None,
    typer.Option(
        rich_help_panel=CLASS_PANEL,
        help="Text file, one class per line, synonyms separated by ','.",
    ),
]
VocabOpt = Annotated[
    str | None,
    typer.Option(
        rich_help_panel=CLASS_PANEL,
        metavar="NAME",
        autocompletion=choices.completer(choices.vocab_names),
        help=f"Built-in vocabulary: {', '.join(choices.vocab_names())} (see `samadapter vocab "
        "list`).",
    ),
]
PresetOpt = Annotated[
    str,
    typer.Option(
        rich_help_panel=MODEL_PANEL,
        metavar=f"[{'|'.join(choices.preset_names())}]",
        autocompletion=choices.completer(choices.preset_names),
        help="auto (fast on CPU, accurate on GPU) | fast (SAM ViT-B, 12x12 points, CLIP 640 px) | "
        "accurate (SAM ViT-H, 32x32 points, CLIP 896 px) | demo (the official demo's SAM 2.1 "
        "Hiera-L + demo adapter) | tiny-random (tests only: random weights, meaningless "
        "labels).",
    ),
]
SamOpt = Annotated[
    str | None,
    typer.Option(
        rich_help_panel=MODEL_PANEL,
        metavar="NAME",
        autocompletion=choices.completer(choices.sam_names, tests=True),
        help=f"SAM model: {', '.join(choices.sam_names())}. [default: preset's]",
        show_default=False,
    ),
]
SamCheckpointOpt = Annotated[
    Path | None,
    typer.Option(rich_help_panel=MODEL_PANEL, help="SAM .pth file (instead of the registry's)."),
]
AdapterOpt = Annotated[
    str | None,
    typer.Option(
        rich_help_panel=MODEL_PANEL,
        metavar="NAME",
        autocompletion=choices.completer(choices.adapter_names, tests=True),
        help=f"Mask-Adapter weights by registry name: {', '.join(choices.adapter_names())}. "
        "[default: the preset's: fcclip_convnext_large for fast, maftp_convnext_large for "
        "accurate]",
        show_default=False,
    ),
]
AdapterCheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        rich_help_panel=MODEL_PANEL,
        help="Mask-Adapter .pth file (official detectron2 or demo layout).",
    ),
]
ClipOpt = Annotated[
    str | None,
    typer.Option(
        rich_help_panel=MODEL_PANEL,
        metavar="NAME",
        autocompletion=choices.completer(choices.clip_names, tests=True),
        help=f"CLIP model: {' or '.join(choices.clip_names())}. [default: the adapter's]",
        show_default=False,
    ),
]
ClipCheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        rich_help_panel=MODEL_PANEL,
        help="open_clip weights file, when the adapter file carries no CLIP weights.",
    ),
]
ClassifierOpt = Annotated[
    Classifier,
    typer.Option(
        help="mask-adapter (the paper's method) or mask-pooling (plain average pooling of the same "
        "CLIP features: the baseline)."
    ),
]
WeightsDirOpt = Annotated[
    Path | None,
    typer.Option(
        rich_help_panel=MODEL_PANEL,
        envvar="SAMADAPTER_WEIGHTS_DIR",
        help="Folder with the weight files. [default: $SAMADAPTER_HOME or "
        "~/.cache/samadapter, then ./weights]",
        show_default=False,
    ),
]
OfflineOpt = Annotated[
    bool,
    typer.Option(
        rich_help_panel=MODEL_PANEL,
        help="Never download; fail naming each missing file and where to put it "
        "(also SAMADAPTER_OFFLINE=1).",
    ),
]
ClipSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--clip-size",
        min=32,
        help="CLIP input size S, resized as the official test pipeline does: short side to S, "
        "unless the long side would then exceed S, in which case the long side is S (so a "
        "non-square photo ends with its long side S). [default: 896; fast preset: 640]",
        show_default=False,
    ),
]
ScoreThreshOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Opt-in: also drop masks whose best class probability is below this. [default: off]",
        show_default=False,
    ),
]
KeepUnknownOpt = Annotated[
    bool,
    typer.Option(help="Also keep masks whose top class is void (no object), labelled 'unknown'."),
]
MaskBatchOpt = Annotated[
    int, typer.Option(min=0, help="Masks per adapter forward pass; 0 = sized to the free memory.")
]
DeviceOpt = Annotated[Device, typer.Option(help="Where to run.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(min=1, help="CPU threads for torch. [default: torch's]", show_default=False),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")]
RAY_PANEL = "More than one machine (pip install 'samadapter[ray]')"
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        rich_help_panel=RAY_PANEL,
        show_default=False,
        help="Spread the images over a Ray cluster: auto (the cluster `ray start` made, or "
        "RAY_ADDRESS), HOST:6379, ray://HOST:10001, or local (a Ray on this machine alone). "
        "The inputs and --output must be on a filesystem every node mounts.",
    ),
]
RayActorsOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        rich_help_panel=RAY_PANEL,
        show_default=False,
        help="Most model actors with --ray (each loads the models once). "
        "[default: one per GPU, else one per 4 CPUs]",
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option(rich_help_panel=RAY_PANEL, help="With --ray, also show Ray's own log lines.")
]


def check_files(*paths: Path | None) -> None:
    """Fail early, in one line, on a checkpoint path that does not exist or is a folder."""
    for path in paths:
        if path is not None and path.is_dir():
            raise CheckpointError(
                f"checkpoint {path} is a folder, not a file",
                hint="give the .pth / .bin file inside it",
            )
        if path is not None and not path.is_file():
            raise CheckpointError(f"checkpoint file not found: {path}", hint="check the path")


def ignored_flags(
    preset: str,
    sam: str | None,
    sam_checkpoint: Path | None,
    adapter: str | None,
    adapter_checkpoint: Path | None,
    clip: str | None,
    clip_checkpoint: Path | None,
) -> list[str]:
    """One line per model flag that the preset and the other flags leave unused.

    A test model (``tiny-random``) is built from a seed, reading no file (its adapter comes with
    its CLIP), and an adapter file that carries its own CLIP (the FC-CLIP checkpoints) makes
    ``--clip-checkpoint`` unused; a user who gave such a flag expects it to matter.
    """
    from samadapter import registry
    from samadapter.presets import PRESETS

    chosen = PRESETS.get("fast" if preset == "auto" else preset)  # auto: same adapter either way
    if chosen is None:
        return []  # an unknown preset is reported by the loader
    lines = []
    sam_model = registry.find("sam", sam or chosen.sam)  # unknown names: reported by the loader
    adapter_name = adapter or chosen.adapter
    adapter_model = registry.find("adapter", adapter_name) if adapter_checkpoint is None else None
    if sam_checkpoint is not None and sam_model is not None and sam_model.random:
        lines.append(
            "--sam-checkpoint is ignored: --preset tiny-random builds a random SAM (add "
            "--sam vit_b, vit_l or vit_h to use the file)"
        )
    if adapter_model is not None and adapter_model.random:
        for flag, value in (("--clip", clip), ("--clip-checkpoint", clip_checkpoint)):
            if value is not None:
                lines.append(
                    f"{flag} is ignored: --preset tiny-random builds a random CLIP "
                    "(add --adapter-checkpoint or --adapter to use real weights)"
                )
    elif adapter_model is not None and adapter_model.includes_clip and clip_checkpoint is not None:
        lines.append(
            f"--clip-checkpoint is ignored: the adapter {adapter_name} carries its own CLIP weights"
        )
    return lines


def flags_config(
    preset: str,
    models: Mapping[str, Any],
    amg: Mapping[str, Any] | None = None,
    pipeline: Mapping[str, Any] | None = None,
) -> RunConfig:
    """A command's run configuration: the preset's (resolved for the device), changed by every
    flag given (``None``: the preset's value).

    Checkpoint paths are checked first, and each model flag the chosen models would not use gets
    a warning line (:func:`ignored_flags`).

    Args:
        preset: ``--preset``.
        models, amg, pipeline: the flags of each :class:`~samadapter.config.RunConfig` section,
            by field name (``precision`` is the models'; the pipeline's follows it).
    """
    from samadapter.pipeline import resolve_device

    asked = override(ModelConfig(), models, "flags")
    check_files(asked.sam_checkpoint, asked.adapter_checkpoint, asked.clip_checkpoint)
    for line in ignored_flags(
        preset,
        asked.sam,
        asked.sam_checkpoint,
        asked.adapter,
        asked.adapter_checkpoint,
        asked.clip,
        asked.clip_checkpoint,
    ):
        print_warning(line)
    base = preset_config(preset, resolve_device(asked.device).type)
    return override(base, {"models": models, "amg": amg, "pipeline": pipeline}, "flags")


POST_PANEL = "Post-processing and exports"

FormatOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--format",
        "-f",
        rich_help_panel=POST_PANEL,
        help="Extra annotation-tool exports, repeatable or comma-separated: yolo-seg (Ultralytics "
        "polygons + data.yaml), labelstudio (pre-annotations + labeling config), cvat (CVAT for "
        "images 1.1 XML). The COCO JSON, PNGs and overlay are always written.",
        show_default=False,
    ),
]
MergeOpt = Annotated[
    bool,
    typer.Option(
        rich_help_panel=POST_PANEL,
        help="Join masks of the same class that touch or overlap into one instance.",
    ),
]
SemanticOnlyOpt = Annotated[
    bool,
    typer.Option(rich_help_panel=POST_PANEL, help="One mask per class: the union of its masks."),
]
TopKOpt = Annotated[
    int | None,
    typer.Option(
        rich_help_panel=POST_PANEL,
        min=1,
        help="Keep only the K best-scoring masks per image.",
        show_default=False,
    ),
]


def _keep_ratio(value: float | None) -> float | None:
    """``--keep-ratio`` lies in [0, 1): at 1 no mask can exceed its class's best, none is kept."""
    if value is not None and not 0.0 <= value < 1.0:
        raise typer.BadParameter(f"{value} is not in [0, 1) (1 would keep no mask; 0 keeps all)")
    return value


KeepRatioOpt = Annotated[
    float | None,
    typer.Option(
        rich_help_panel=POST_PANEL,
        callback=_keep_ratio,
        help="The official demo's keep rule, RATIO in [0, 1): keep a mask if, for some class, its "
        "probability is above RATIO x the best any mask has for that class; 0 keeps every mask. "
        "[default: 0.8 for segment; classify names every given mask]",
        show_default=False,
    ),
]


PointsPerSideOpt = Annotated[
    int | None,
    typer.Option(
        rich_help_panel=SAM_PANEL,
        min=1,
        help="Prompt grid per side (SAM: 32; fast: 12). Cost grows with its square.",
        show_default=False,
    ),
]
PointsPerBatchOpt = Annotated[
    int, typer.Option(rich_help_panel=SAM_PANEL, min=1, help="Prompts decoded at once.")
]
PredIouThreshOpt = Annotated[
    float | None,
    typer.Option(
        rich_help_panel=SAM_PANEL,
        min=0.0,
        max=1.0,
        help="Drop masks SAM rates below this IoU (SAM: 0.88).",
        show_default=False,
    ),
]
StabilityScoreThreshOpt = Annotated[
    float | None,
    typer.Option(
        rich_help_panel=SAM_PANEL,
        min=0.0,
        max=1.0,
        help="Drop unstable masks (SAM: 0.95; the official demo: 0.7).",
        show_default=False,
    ),
]
BoxNmsThreshOpt = Annotated[
    float,
    typer.Option(
        rich_help_panel=SAM_PANEL,
        min=0.0,
        max=1.0,
        help="Box IoU above which duplicate masks are suppressed.",
    ),
]
CropNLayersOpt = Annotated[
    int,
    typer.Option(
        rich_help_panel=SAM_PANEL,
        min=0,
        help="Also run on image crops (n layers); finds small objects, slower.",
    ),
]
MinMaskRegionAreaOpt = Annotated[
    int | None,
    typer.Option(
        rich_help_panel=SAM_PANEL,
        min=0,
        help="Remove holes and islands smaller than this (pixels; presets: 100).",
        show_default=False,
    ),
]


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


PrecisionOpt = Annotated[
    Precision,
    typer.Option(
        rich_help_panel=MODEL_PANEL,
        help="Compute precision of SAM, CLIP's image encoder and the adapter. auto: bf16 on a GPU "
        "and, with the fast preset, on a CPU with AVX512-BF16/AMX; fp32 otherwise. bf16 is "
        "faster but masks and scores move slightly (benchmarks/fast_preset.py prints by how "
        "much); fp32 gives the exact path.",
    ),
]


StabilityScoreOffsetOpt = Annotated[
    float,
    typer.Option(
        rich_help_panel=SAM_PANEL,
        min=0.0,
        help="Logit shift of the two cut-offs the stability score compares (SAM: 1.0).",
    ),
]
CropNmsThreshOpt = Annotated[
    float,
    typer.Option(
        rich_help_panel=SAM_PANEL,
        min=0.0,
        max=1.0,
        help="Box IoU above which duplicate masks from different crops are suppressed.",
    ),
]
CropOverlapRatioOpt = Annotated[
    float,
    typer.Option(
        rich_help_panel=SAM_PANEL,
        min=0.0,
        max=1.0,
        show_default="512/1500 = 0.341",  # AmgSettings' default
        help="Overlap of neighbouring crops, as a share of the crop's side (with --crop-n-layers).",
    ),
]
CropNPointsDownscaleFactorOpt = Annotated[
    int,
    typer.Option(
        rich_help_panel=SAM_PANEL,
        min=1,
        help="Prompt grid per side shrinks by this factor per crop layer (with --crop-n-layers).",
    ),
]
SAM_FLAGS: dict[str, tuple[Any, Any]] = {
    "points_per_side": (PointsPerSideOpt, None),
    "points_per_batch": (PointsPerBatchOpt, AmgSettings.points_per_batch),
    "pred_iou_thresh": (PredIouThreshOpt, None),
    "stability_score_thresh": (StabilityScoreThreshOpt, None),
    "box_nms_thresh": (BoxNmsThreshOpt, AmgSettings.box_nms_thresh),
    "crop_n_layers": (CropNLayersOpt, AmgSettings.crop_n_layers),
    "min_mask_region_area": (MinMaskRegionAreaOpt, None),
    "stability_score_offset": (StabilityScoreOffsetOpt, AmgSettings.stability_score_offset),
    "crop_nms_thresh": (CropNmsThreshOpt, AmgSettings.crop_nms_thresh),
    "crop_overlap_ratio": (CropOverlapRatioOpt, AmgSettings.crop_overlap_ratio),
    "crop_n_points_downscale_factor": (
        CropNPointsDownscaleFactorOpt,
        AmgSettings.crop_n_points_downscale_factor,
    ),
}
"""SAM's knobs as flags: :class:`~samadapter.config.AmgSettings` field -> (option, default;
``None``: the preset's value)."""


def sam_flags(run: Callable[..., int]) -> Callable[..., int]:
    """Give a command every flag of :data:`SAM_FLAGS`, in place of its ``amg`` parameter, which
    receives them as one mapping (for :func:`flags_config`): a SAM knob is added in one place."""
    signature = inspect.signature(run, eval_str=True)
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        if param.name != "amg":
            params.append(param)
            continue
        for name, (option, default) in SAM_FLAGS.items():
            params.append(param.replace(name=name, annotation=option, default=default))

    @functools.wraps(run)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        amg = {name: kwargs.pop(name) for name in SAM_FLAGS if name in kwargs}
        return run(*args, amg=amg, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper


PerMaskPngOpt = Annotated[
    bool,
    typer.Option(
        rich_help_panel=POST_PANEL,
        help="Also write one 0/255 PNG per mask and a metadata.csv into NAME.masks/per-mask/ (the "
        "layout of segment-anything's amg.py), beside the per-class PNGs.",
    ),
]


class Runtime(str, Enum):
    auto = "auto"
    torch = "torch"
    openvino = "openvino"


RuntimeOpt = Annotated[
    Runtime,
    typer.Option(
        rich_help_panel=MODEL_PANEL,
        help="Runtime of the two image encoders (SAM's ViT, CLIP's ConvNeXt). openvino: faster on "
        "CPUs, needs `pip install samadapter[cpu]`; each model is converted once (about a "
        "minute) and cached. auto: openvino on a CPU when installed, else torch.",
    ),
]
TwoPassOpt = Annotated[
    bool,
    typer.Option(
        "--two-pass",
        rich_help_panel=SAM_PANEL,
        help="Prompt SAM with a sparse grid first, then only the grid points no kept mask covers "
        "(fewer prompts where objects are large; slightly different masks).",
    ),
]

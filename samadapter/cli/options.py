"""The commands' shared flags, each declared once, and how a command takes a group of them.

A flag of the run configuration (:class:`~samadapter.config.RunConfig`) is one entry of
:data:`CONFIG_FLAGS`, keyed by its field's name; every command that takes configuration flags
(:func:`config_flags`) gets it, in its help and its :class:`ConfigFlags`, unless the command
leaves it out by name. The other shared groups work the same way (:func:`flag_group`):
:data:`CLASS_FLAGS` (``--classes``, ``--classes-file``, ``--vocab``) and :data:`OUTPUT_FLAGS`
(post-processing and exports). A new flag is one entry of one table; no command changes.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer

from samadapter.cli import choices
from samadapter.cli.common import print_warning
from samadapter.config import (
    CLASSIFIERS,
    PRECISIONS,
    RUNTIMES,
    AmgSettings,
    ModelConfig,
    RunConfig,
    override,
)
from samadapter.errors import CheckpointError
from samadapter.presets import preset_config

if TYPE_CHECKING:  # torch loads inside the commands: --help stays instant
    from samadapter.batch import PostProcess
    from samadapter.vocab import Vocabulary

MODEL_PANEL = "Models and weights"
CLASS_PANEL = "Classes (give one)"
SAM_PANEL = "SAM proposals (defaults: the preset's)"
POST_PANEL = "Post-processing and exports"
RAY_PANEL = "More than one machine (pip install 'samadapter[ray]')"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


def choice(name: str, values: Iterable[str]) -> Any:
    """A ``str`` enum of ``values`` (the configuration's own tuple), for Typer's choices."""
    return Enum(name, [(v.replace("-", "_"), v) for v in values], type=str)


Classifier = choice("Classifier", CLASSIFIERS)
Precision = choice("Precision", PRECISIONS)
Runtime = choice("Runtime", RUNTIMES)


class Flag(NamedTuple):
    """One flag: its Typer annotation and its default (``None``: not given)."""

    option: Any
    default: Any = None


def flag(kind: Any, default: Any = None, *names: str, panel: str | None = None, **kw: Any) -> Flag:
    """A :class:`Flag` of type ``kind``; a flag whose default is ``None`` shows none unless
    ``show_default`` says otherwise (its help names what it falls back to)."""
    if default is None:
        kw.setdefault("show_default", False)
    return Flag(Annotated[kind, typer.Option(*names, rich_help_panel=panel, **kw)], default)


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
WeightsDirOpt = Annotated[
    Path | None,
    typer.Option(
        rich_help_panel=MODEL_PANEL,
        envvar="SAMADAPTER_WEIGHTS_DIR",
        file_okay=False,
        help="Folder with the weight files. [default: $SAMADAPTER_HOME or "
        "~/.cache/samadapter, then ./weights]",
        show_default=False,
    ),
]
OfflineOpt = Annotated[
    bool | None,
    typer.Option(
        rich_help_panel=MODEL_PANEL,
        help="Never download; fail naming each missing file and where to put it "
        "(also SAMADAPTER_OFFLINE=1).",
    ),
]
DeviceOpt = Annotated[Device, typer.Option(help="Where to run.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(min=1, help="CPU threads for torch. [default: torch's]", show_default=False),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")]


def _keep_ratio(value: float | None) -> float | None:
    """``--keep-ratio`` lies in [0, 1): at 1 no mask can exceed its class's best, none is kept."""
    if value is not None and not 0.0 <= value < 1.0:
        raise typer.BadParameter(f"{value} is not in [0, 1) (1 would keep no mask; 0 keeps all)")
    return value


def _named(names: Callable[[], list[str]]) -> dict[str, Any]:
    """Option settings of a ``--sam`` / ``--adapter`` / ``--clip`` name."""
    completion = choices.completer(names, tests=True)
    return {"panel": MODEL_PANEL, "metavar": "NAME", "autocompletion": completion}


CONFIG_FLAGS: dict[str, Flag] = {
    "preset": Flag(PresetOpt, "auto"),
    "sam": flag(
        str | None,
        **_named(choices.sam_names),
        help=f"SAM model: {', '.join(choices.sam_names())}. [default: preset's]",
    ),
    "sam_checkpoint": flag(
        Path | None, panel=MODEL_PANEL, help="SAM .pth file (instead of the registry's)."
    ),
    "adapter": flag(
        str | None,
        **_named(choices.adapter_names),
        help=f"Mask-Adapter weights by registry name: {', '.join(choices.adapter_names())}. "
        "[default: the preset's: fcclip_convnext_large for fast, maftp_convnext_large for "
        "accurate]",
    ),
    "adapter_checkpoint": flag(
        Path | None,
        panel=MODEL_PANEL,
        help="Mask-Adapter .pth file (official detectron2 or demo layout).",
    ),
    "clip": flag(
        str | None,
        **_named(choices.clip_names),
        help=f"CLIP model: {' or '.join(choices.clip_names())}. [default: the adapter's]",
    ),
    "clip_checkpoint": flag(
        Path | None,
        panel=MODEL_PANEL,
        help="open_clip weights file, when the adapter file carries no CLIP weights.",
    ),
    "classifier": flag(
        Classifier,
        Classifier("mask-adapter"),
        help="mask-adapter (the paper's method) or mask-pooling (plain average pooling of the same "
        "CLIP features: the baseline).",
    ),
    "weights_dir": Flag(WeightsDirOpt),
    "offline": Flag(OfflineOpt),
    "points_per_side": flag(
        int | None,
        panel=SAM_PANEL,
        min=1,
        help="Prompt grid per side (SAM: 32; fast: 12). Cost grows with its square.",
    ),
    "points_per_batch": flag(
        int, AmgSettings.points_per_batch, panel=SAM_PANEL, min=1, help="Prompts decoded at once."
    ),
    "pred_iou_thresh": flag(
        float | None,
        panel=SAM_PANEL,
        min=0.0,
        max=1.0,
        help="Drop masks SAM rates below this IoU (SAM: 0.88).",
    ),
    "stability_score_thresh": flag(
        float | None,
        panel=SAM_PANEL,
        min=0.0,
        max=1.0,
        help="Drop unstable masks (SAM: 0.95; the official demo: 0.7).",
    ),
    "box_nms_thresh": flag(
        float,
        AmgSettings.box_nms_thresh,
        panel=SAM_PANEL,
        min=0.0,
        max=1.0,
        help="Box IoU above which duplicate masks are suppressed.",
    ),
    "crop_n_layers": flag(
        int,
        AmgSettings.crop_n_layers,
        panel=SAM_PANEL,
        min=0,
        help="Also run on image crops (n layers); finds small objects, slower.",
    ),
    "min_mask_region_area": flag(
        int | None,
        panel=SAM_PANEL,
        min=0,
        help="Remove holes and islands smaller than this (pixels; presets: 100).",
    ),
    "stability_score_offset": flag(
        float,
        AmgSettings.stability_score_offset,
        panel=SAM_PANEL,
        min=0.0,
        help="Logit shift of the two cut-offs the stability score compares (SAM: 1.0).",
    ),
    "crop_nms_thresh": flag(
        float,
        AmgSettings.crop_nms_thresh,
        panel=SAM_PANEL,
        min=0.0,
        max=1.0,
        help="Box IoU above which duplicate masks from different crops are suppressed.",
    ),
    "crop_overlap_ratio": flag(
        float,
        AmgSettings.crop_overlap_ratio,
        panel=SAM_PANEL,
        min=0.0,
        max=1.0,
        show_default="512/1500 = 0.341",
        help="Overlap of neighbouring crops, as a share of the crop's side (with --crop-n-layers).",
    ),
    "crop_n_points_downscale_factor": flag(
        int,
        AmgSettings.crop_n_points_downscale_factor,
        panel=SAM_PANEL,
        min=1,
        help="Prompt grid per side shrinks by this factor per crop layer (with --crop-n-layers).",
    ),
    "clip_size": flag(
        int | None,
        min=32,
        help="CLIP input size S, resized as the official test pipeline does: short side to S, "
        "unless the long side would then exceed S, in which case the long side is S (so a "
        "non-square photo ends with its long side S). [default: 896; fast preset: 640]",
    ),
    "score_thresh": flag(
        float | None,
        min=0.0,
        max=1.0,
        help="Opt-in: also drop masks whose best class probability is below this. [default: off]",
    ),
    "keep_unknown": flag(
        bool | None,
        help="Also keep masks whose top class is void (no object), labelled 'unknown'.",
    ),
    "mask_batch": flag(
        int, 0, min=0, help="Masks per adapter forward pass; 0 = sized to the free memory."
    ),
    "keep_ratio": flag(
        float | None,
        panel=POST_PANEL,
        callback=_keep_ratio,
        help="The official demo's keep rule, RATIO in [0, 1): keep a mask if, for some class, its "
        "probability is above RATIO x the best any mask has for that class; 0 keeps every mask. "
        "[default: 0.8 for segment; classify names every given mask]",
    ),
    "device": Flag(DeviceOpt, Device.auto),
    "precision": flag(
        Precision,
        Precision("auto"),
        panel=MODEL_PANEL,
        help="Compute precision of SAM, CLIP's image encoder and the adapter. auto: bf16 on a GPU "
        "and, with the fast preset, on a CPU with AVX512-BF16/AMX; fp32 otherwise. bf16 is "
        "faster but masks and scores move slightly (benchmarks/fast_preset.py prints by how "
        "much); fp32 gives the exact path.",
    ),
    "runtime": flag(
        Runtime,
        Runtime("auto"),
        panel=MODEL_PANEL,
        help="Runtime of the two image encoders (SAM's ViT, CLIP's ConvNeXt). openvino: faster on "
        "CPUs, needs `pip install samadapter[cpu]`; each model is converted once (about a "
        "minute) and cached. auto: openvino on a CPU when installed, else torch.",
    ),
    "two_pass": flag(
        bool | None,
        None,
        "--two-pass",
        panel=SAM_PANEL,
        help="Prompt SAM with a sparse grid first, then only the grid points no kept mask covers "
        "(fewer prompts where objects are large; slightly different masks).",
    ),
}
"""The run configuration's flags, by field name (``preset``: the models' ``preset``), in the
order ``--help`` lists them."""

SECTIONS: dict[str, str] = {
    f.name: section.name
    for section in reversed(dataclasses.fields(RunConfig))
    for f in dataclasses.fields(section.default_factory())
}
"""Field name -> the :class:`~samadapter.config.RunConfig` section it belongs to (the models'
``precision`` wins: the pipeline's follows it)."""

SAM_ONLY = ("sam", "sam_checkpoint", "two_pass", *(f.name for f in dataclasses.fields(AmgSettings)))
"""The configuration flags of SAM, for commands that run no SAM."""


def flag_group(
    param: str, flags: Mapping[str, Flag], make: Callable[..., Any]
) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Give a command every flag of ``flags`` in place of its parameter ``param``, which receives
    ``make(**values)`` (called when the command runs, never for ``--help``).

    Args:
        param: the command's parameter the group replaces (``flags``, ``classes``, ...).
        flags: flag name -> :class:`Flag`, in the order ``--help`` lists them.
        make: builds the parameter's value from the flags' values, by name.
    """

    def decorate(run: Callable[..., int]) -> Callable[..., int]:
        signature = inspect.signature(run, eval_str=True)
        params: list[inspect.Parameter] = []
        for p in signature.parameters.values():
            if p.name != param:
                params.append(p)
                continue
            for name, (option, default) in flags.items():
                params.append(p.replace(name=name, annotation=option, default=default))

        @functools.wraps(run)
        def wrapper(*args: Any, **kwargs: Any) -> int:
            values = {name: kwargs.pop(name) for name in flags if name in kwargs}
            return run(*args, **{param: make(**values)}, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper

    return decorate


@dataclass(frozen=True)
class ConfigFlags:
    """The configuration flags a command was given.

    Attributes:
        preset: ``--preset``.
        changes: section -> field -> the flag's value; ``None`` (a flag not given) keeps the
            value of the configuration the flags change (the preset's, or a run's).
    """

    preset: str = "auto"
    changes: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, preset: str = "auto", **values: Any) -> ConfigFlags:
        """The flags' values sorted into their sections."""
        changes: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            changes.setdefault(SECTIONS[name], {})[name] = value
        return cls(preset, changes)

    def given(self, name: str, value: Any) -> ConfigFlags:
        """These flags with ``name`` set to ``value`` where the user gave none."""
        if self.value(name) is not None:
            return self
        section = SECTIONS[name]
        changes = {**self.changes, section: {**self.changes.get(section, {}), name: value}}
        return dataclasses.replace(self, changes=changes)

    def value(self, name: str) -> Any:
        """The value the user gave ``name`` (``None``: none)."""
        return self.changes.get(SECTIONS[name], {}).get(name)

    def apply(self, base: RunConfig) -> RunConfig:
        """``base`` changed by every flag given."""
        return override(base, self.changes, "flags")

    def config(self) -> RunConfig:
        """The preset's configuration (resolved for the device) changed by every flag given.

        Checkpoint paths are checked first, and each model flag the chosen models would not use
        gets a warning line (:func:`ignored_flags`).
        """
        from samadapter.pipeline import resolve_device

        asked = override(ModelConfig(), self.changes.get("models"), "flags")
        check_files(asked.sam_checkpoint, asked.adapter_checkpoint, asked.clip_checkpoint)
        for line in ignored_flags(
            self.preset,
            asked.sam,
            asked.sam_checkpoint,
            asked.adapter,
            asked.adapter_checkpoint,
            asked.clip,
            asked.clip_checkpoint,
        ):
            print_warning(line)
        return self.apply(preset_config(self.preset, resolve_device(asked.device).type))


def config_flags(
    *, exclude: Iterable[str] = (), only: Iterable[str] | None = None
) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Give a command the :data:`CONFIG_FLAGS` (all, or ``only`` these, less ``exclude``) in
    place of its ``flags`` parameter, a :class:`ConfigFlags`."""
    names = [n for n in (CONFIG_FLAGS if only is None else only) if n not in set(exclude)]
    return flag_group("flags", {n: CONFIG_FLAGS[n] for n in names}, ConfigFlags.of)


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
        for name, value in (("--clip", clip), ("--clip-checkpoint", clip_checkpoint)):
            if value is not None:
                lines.append(
                    f"{name} is ignored: --preset tiny-random builds a random CLIP "
                    "(add --adapter-checkpoint or --adapter to use real weights)"
                )
    elif adapter_model is not None and adapter_model.includes_clip and clip_checkpoint is not None:
        lines.append(
            f"--clip-checkpoint is ignored: the adapter {adapter_name} carries its own CLIP weights"
        )
    return lines


def _vocabulary(classes: str | None, classes_file: Path | None, vocab: str | None) -> Vocabulary:
    from samadapter.vocab import resolve_vocabulary

    return resolve_vocabulary(classes, classes_file, vocab)


CLASS_FLAGS: dict[str, Flag] = {
    "classes": flag(
        str | None,
        None,
        "--classes",
        "-c",
        panel=CLASS_PANEL,
        help="Comma-separated class names; synonyms joined with '|', e.g. \"sofa|couch,cat\".",
    ),
    "classes_file": flag(
        Path | None,
        panel=CLASS_PANEL,
        help="Text file, one class per line, synonyms separated by ','.",
    ),
    "vocab": flag(
        str | None,
        panel=CLASS_PANEL,
        metavar="NAME",
        autocompletion=choices.completer(choices.vocab_names),
        help=f"Built-in vocabulary: {', '.join(choices.vocab_names())} (see `samadapter vocab "
        "list`).",
    ),
}
"""The class-list flags; a command's ``vocabulary`` parameter (:func:`class_flags`)."""

class_flags = flag_group("vocabulary", CLASS_FLAGS, _vocabulary)
"""Give a command :data:`CLASS_FLAGS` in place of its ``vocabulary`` parameter, a
:class:`~samadapter.vocab.Vocabulary`."""


class Outputs(NamedTuple):
    """What ``--format``, ``--merge``, ``--semantic-only`` and ``--top-k`` ask for."""

    exports: tuple[str, ...]
    postprocess: PostProcess


def _outputs(
    format: list[str] | None, merge: bool, semantic_only: bool, top_k: int | None
) -> Outputs:
    from samadapter.batch import PostProcess
    from samadapter.io.exports import check_exports

    post = PostProcess(merge=merge, semantic_only=semantic_only, top_k=top_k)
    return Outputs(check_exports(format or ["coco"]), post)


OUTPUT_FLAGS: dict[str, Flag] = {
    "format": flag(
        list[str] | None,
        None,
        "--format",
        "-f",
        panel=POST_PANEL,
        help="Extra annotation-tool exports, repeatable or comma-separated: yolo-seg (Ultralytics "
        "polygons + data.yaml), labelstudio (pre-annotations + labeling config), cvat (CVAT for "
        "images 1.1 XML). The COCO JSON, PNGs and overlay are always written.",
    ),
    "merge": flag(
        bool,
        False,
        panel=POST_PANEL,
        help="Join masks of the same class that touch or overlap into one instance.",
    ),
    "semantic_only": flag(
        bool, False, panel=POST_PANEL, help="One mask per class: the union of its masks."
    ),
    "top_k": flag(
        int | None, panel=POST_PANEL, min=1, help="Keep only the K best-scoring masks per image."
    ),
}
"""Post-processing and export flags of ``segment`` and ``classify``; a command's ``outputs``
parameter (:func:`output_flags`)."""

output_flags = flag_group("outputs", OUTPUT_FLAGS, _outputs)
"""Give a command :data:`OUTPUT_FLAGS` in place of its ``outputs`` parameter, an
:class:`Outputs`."""

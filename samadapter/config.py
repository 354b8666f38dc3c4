"""The run configuration: small frozen dataclasses, one generic way to record, read and compare.

A leaf module: no torch, no I/O. Every setting of a run is a field of one of
:class:`ModelConfig` (which models, on what), :class:`AmgSettings` (SAM's knobs) and
:class:`PipelineSettings` (how masks are classified and kept), composed into :class:`RunConfig`.
A run starts from a preset (:func:`samadapter.presets.preset_config`) and is changed with typed
values (:func:`override`). Declared with :func:`setting`, each field says

* whether it changes outputs (``output=False``: speed, memory or where files are looked for,
  never an output byte: ``device``, ``points_per_batch``, ``mask_batch``, ...), and
* whether it is recorded at its default (``recorded=False``: a field added after run folders
  existed is written only when set, so the records, and fingerprints, of older runs still match).

API (the whole of it):

* ``setting(default, *, output=True, recorded=True)``: a field with that metadata.
* ``to_json(config) -> dict``: JSON-ready, nested; ``outputs_only=True`` drops ``output=False``.
* ``from_json(cls, data, source) -> cls``: ``data`` is untrusted (read from a file): an unknown
  key or a value of the wrong type is one :class:`~samadapter.errors.ConfigError` naming it
  (and the nearest valid key); missing keys take their defaults.
* ``override(config, changes, source) -> config``: a copy with ``changes`` (a mapping; ``None``
  keeps the current value; a mapping for a nested section changes inside it), checked as
  ``from_json`` checks.
* ``one_of(what, value, choices)``: a :class:`~samadapter.errors.ConfigError` unless ``value``
  is one of ``choices``.
* ``fingerprint(value) -> str``: 16 hex digits over everything that decides outputs: a config
  (its ``output=False`` fields left out) or a JSON record built from configs (keys named as an
  ``output=False`` field of the run configuration, :data:`OUTPUT_NEUTRAL`, left out at any depth).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from samadapter.errors import ConfigError

C = TypeVar("C")

CLASSIFIERS = ("mask-adapter", "mask-pooling")
PRECISIONS = ("auto", "fp32", "bf16")
RUNTIMES = ("auto", "torch", "openvino")
WORKING_SIZE = 1024
"""Default long side of the working resolution SAM runs at and masks are kept at (SAM's own
input size: it resizes every image to a 1024 long side, and its masks are 256 x 256 logits
upsampled from there)."""


def setting(default: Any, *, output: bool = True, recorded: bool = True) -> Any:
    """A configuration field.

    Args:
        default: its value unless a preset or an override sets it.
        output: whether it can change an output byte (``False``: left out of fingerprints).
        recorded: whether :func:`to_json` writes it at its default (``False`` for fields added
            after run folders were first written).
    """
    return dataclasses.field(default=default, metadata={"output": output, "recorded": recorded})


@dataclass(frozen=True)
class ModelConfig:
    """Which models run, from which files, on what.

    Attributes:
        preset: the preset the run started from (``auto`` until resolved for a device).
        sam: SAM architecture (``vit_b``, ``vit_l``, ``vit_h``, a SAM 2.1 name, ``tiny-random``);
            ``None``: the preset's.
        sam_checkpoint: explicit SAM file (skips the registry).
        adapter: Mask-Adapter registry name, or ``none``; ``None``: the preset's.
        adapter_checkpoint: explicit Mask-Adapter file (skips the registry).
        clip: CLIP architecture; ``None``: the adapter's.
        clip_checkpoint: explicit open_clip file.
        weights_dir: where weights are looked for and downloaded to.
        offline: never download; ``None``: ``SAMADAPTER_OFFLINE`` decides.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        precision: ``auto``, ``fp32`` or ``bf16`` for SAM, CLIP's image encoder and the adapter.
        runtime: ``auto``, ``torch`` or ``openvino`` for the two image encoders.
        two_pass: prompt SAM with a sparse grid first, then the uncovered points of the full
            grid (how SAM runs, so it sits with the runtime choices).
    """

    preset: str = "auto"
    sam: str | None = None
    sam_checkpoint: Path | None = None
    adapter: str | None = None
    adapter_checkpoint: Path | None = None
    clip: str | None = None
    clip_checkpoint: Path | None = None
    weights_dir: Path | None = setting(None, output=False)
    offline: bool | None = setting(None, output=False)
    device: str = setting("auto", output=False)
    precision: str = "auto"
    runtime: str = "auto"
    two_pass: bool = setting(False, recorded=False)

    def __post_init__(self) -> None:
        one_of("--precision", self.precision, PRECISIONS)
        one_of("--runtime", self.runtime, RUNTIMES)


@dataclass(frozen=True)
class AmgSettings:
    """SAM automatic-mask-generator knobs, named as SAM names them (defaults are SAM's).

    Attributes:
        points_per_side: prompt grid per side (on the full image).
        points_per_batch: prompts decoded at once (speed / memory only).
        pred_iou_thresh: drop masks whose predicted IoU is below this.
        stability_score_thresh: drop masks whose stability score is below this.
        box_nms_thresh: box IoU above which duplicates within a crop are suppressed.
        crop_n_layers: also run on ``2**i x 2**i`` crops for ``i = 1..n``.
        min_mask_region_area: remove holes and islands smaller than this (pixels).
        stability_score_offset: logit shift of the two thresholds the stability score compares.
        crop_nms_thresh: box IoU above which duplicates across crops are suppressed.
        crop_overlap_ratio: overlap of neighbouring crops, a share of the crop's side.
        crop_n_points_downscale_factor: the grid per side shrinks by this factor per layer.
    """

    points_per_side: int = 32
    points_per_batch: int = setting(64, output=False)
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    min_mask_region_area: int = 0
    stability_score_offset: float = setting(1.0, recorded=False)
    crop_nms_thresh: float = setting(0.7, recorded=False)
    crop_overlap_ratio: float = setting(512 / 1500, recorded=False)
    crop_n_points_downscale_factor: int = setting(1, recorded=False)

    def generator_kwargs(self) -> dict[str, Any]:
        """The knobs as keyword arguments of SAM's (and SAM 2's) automatic mask generator."""
        return dataclasses.asdict(self)

    def record(self) -> dict[str, Any]:
        """The knobs for run records and cache keys (:func:`to_json`)."""
        return to_json(self)


@dataclass(frozen=True)
class PipelineSettings:
    """How masks are classified and which are kept (see docs/architecture.md).

    Attributes:
        classifier: ``mask-adapter`` or ``mask-pooling`` (the baseline without adapter).
        clip_size: CLIP input size ``S``, the official test resize at ``S``: the short side is
            scaled to ``S`` unless the long side would then exceed ``S``, in which case the long
            side is ``S`` (so any non-square photo ends with its long side ``S``); 896 official.
        keep_ratio: the official demo's keep rule: with ``P`` the ``[Q, K]`` class probabilities
            of all masks, a mask is kept if ``P[q, k] > keep_ratio * max_q P[q, k]`` for any class
            ``k``; ``0`` keeps every mask. 0.8 in the demo.
        score_thresh: opt-in absolute threshold: also drop masks whose best class probability is
            below this; ``0`` (default) turns it off. No official path has one.
        keep_unknown: masks whose top class over the classes plus void is void are kept (even if
            the rules above drop them) and labelled ``unknown``. Off: they are not singled out and
            take their best class like any other mask.
        mask_batch: masks per adapter forward (bounds memory); 0 sizes it to the free memory.
        min_area: masks with fewer pixels (of the image) are dropped before classification.
        working_size: SAM runs on the image shrunk to this long side, and masks are kept at that
            resolution until a writer upsamples them one at a time to the image's size (see
            :mod:`samadapter.structures`); smaller images are used as they are. ``0``: SAM and
            the masks at the image's full size (memory grows with the pixel count).
        precision: compute precision of the CLIP image encoder and the adapter: ``fp32``,
            ``bf16`` (autocast), or ``auto``: bfloat16 on a GPU, float32 on a CPU
            (:func:`samadapter.models.load_segmenter` resolves ``auto`` with the CPU's bfloat16
            support, see :mod:`samadapter.runtime`).
    """

    classifier: str = "mask-adapter"
    clip_size: int = 896
    keep_ratio: float = 0.8
    score_thresh: float = 0.0
    keep_unknown: bool = False
    mask_batch: int = setting(0, output=False)
    min_area: int = 1
    working_size: int = WORKING_SIZE
    precision: str = "auto"

    def __post_init__(self) -> None:
        one_of("--precision", self.precision, PRECISIONS)
        one_of("classifier", self.classifier, CLASSIFIERS)
        if not 0.0 <= self.score_thresh <= 1.0:
            raise ConfigError(f"--score-thresh must be in [0, 1], got {self.score_thresh}")
        if not 0.0 <= self.keep_ratio < 1.0:
            raise ConfigError(
                f"--keep-ratio must be in [0, 1), got {self.keep_ratio}",
                hint="0.8 is the official demo's; 0 keeps every mask",
            )
        if self.clip_size < 32:
            raise ConfigError(f"--clip-size must be >= 32, got {self.clip_size}")
        if self.mask_batch < 0:
            raise ConfigError(f"--mask-batch must be >= 0 (0 = automatic), got {self.mask_batch}")
        if self.working_size != 0 and self.working_size < 64:
            raise ConfigError(
                f"the working size must be 0 (full size) or >= 64, got {self.working_size}"
            )

    def describe(self) -> dict[str, str]:
        """Plain-language record of how this run scores and keeps masks (for the JSON's
        ``info``)."""
        void = (
            "softmax over the classes plus the adapter's void class, void dropped"
            if self.classifier == "mask-adapter"
            else "softmax over the classes (no void)"
        )
        keep = (
            f"kept if P[q,k] > {self.keep_ratio:g} * max over all masks of P[:,k] for any class k"
            if self.keep_ratio > 0
            else "every mask kept"
        )
        if self.score_thresh > 0:
            keep += f", and best class probability >= {self.score_thresh:g}"
        if self.keep_unknown:
            keep += "; masks whose top class is void kept as 'unknown'"
        return {
            "clip_resize": (
                f"short side to {self.clip_size}, long side capped at "
                f"{self.clip_size} (detectron2 ResizeShortestEdge({self.clip_size}, "
                f"max_size={self.clip_size})), Pillow bilinear, pad to 32"
            ),
            "probabilities": void,
            "keep_rule": keep,
        }


@dataclass(frozen=True)
class RunConfig:
    """Everything a segmenter is built from: models, SAM's knobs, classification settings."""

    models: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    amg: AmgSettings = dataclasses.field(default_factory=AmgSettings)
    pipeline: PipelineSettings = dataclasses.field(default_factory=PipelineSettings)


OUTPUT_NEUTRAL = frozenset(
    f.name
    for cls in (ModelConfig, AmgSettings, PipelineSettings)
    for f in dataclasses.fields(cls)
    if not f.metadata.get("output", True)
)
"""Fields that never change an output byte; a record's keys of these names are not
fingerprinted, at any depth."""


def one_of(what: str, value: str, choices: tuple[str, ...]) -> None:
    """Refuse ``value`` unless it is one of ``choices``: one :class:`ConfigError` naming ``what``
    and the choices."""
    if value not in choices:
        raise ConfigError(f"unknown {what} '{value}'", hint=f"use one of {', '.join(choices)}")


def to_json(config: Any, *, outputs_only: bool = False) -> dict[str, Any]:
    """``config`` (a dataclass) as JSON-ready data: nested dicts, paths as strings.

    Args:
        config: a dataclass instance whose fields hold JSON scalars, paths, enums, tuples or
            dataclasses.
        outputs_only: leave out the fields declared ``output=False``.
    """

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return to_json(value, outputs_only=outputs_only)
        if isinstance(value, enum.Enum):
            return plain(value.value)
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if outputs_only and not f.metadata.get("output", True):
            continue
        if not f.metadata.get("recorded", True) and value == f.default:
            continue
        out[f.name] = plain(value)
    return out


def fingerprint(value: Any) -> str:
    """A short hash (16 hex digits) of everything in ``value`` that decides outputs.

    Args:
        value: a config dataclass, or a JSON-like record (dicts, lists, scalars; other values as
            ``str``) that may hold config dataclasses; a record's keys in :data:`OUTPUT_NEUTRAL`
            are left out wherever they occur, so a record read back from a file hashes as the
            configuration it was written from. Key order does not matter.
    """

    def clean(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            v = to_json(v, outputs_only=True)
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items() if k not in OUTPUT_NEUTRAL}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    blob = json.dumps(clean(value), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def from_json(cls: type[C], data: Any, source: str = "settings") -> C:
    """A ``cls`` instance from untrusted JSON data (the inverse of :func:`to_json`).

    Args:
        cls: a config dataclass (all fields with defaults).
        data: a JSON object; keys missing take their defaults.
        source: names the data in errors (``run.json 'run'``).

    Raises:
        ConfigError: ``data`` is not an object, has an unknown key (the nearest valid key is
            named), a value of the wrong type, or a value the class refuses.
    """
    return override(cls(), data, source, keep_none=False)


def override(
    config: C,
    changes: Mapping[str, Any] | None,
    source: str = "settings",
    *,
    keep_none: bool = True,
) -> C:
    """A copy of ``config`` with ``changes``, each checked against the field's type.

    Args:
        config: a config dataclass instance.
        changes: field name to new value; a ``None`` value keeps the current one (with
            ``keep_none``); a mapping for a nested dataclass field changes inside it.
        source: names the changes in errors (``amg``, ``--points-per-side``, a file).
        keep_none: ``False``: ``None`` is a value like any other (for fields that allow it).

    Raises:
        ConfigError: an unknown key (naming the nearest valid one), a wrong type or a value the
            class refuses (its own check).
    """
    if changes is None:
        return config
    if not isinstance(changes, Mapping):
        raise ConfigError(f"{source} must be an object of settings, got {type(changes).__name__}")
    cls = type(config)
    fields = {f.name: f for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    new: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            raise ConfigError(
                f"unknown {source} key '{key}'",
                hint=f"did you mean '{near[0]}'?" if near else f"use one of {', '.join(fields)}",
            )
        if value is None and keep_none:
            continue
        current = getattr(config, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            new[key] = override(current, value, f"{source}.{key}", keep_none=keep_none)
        else:
            new[key] = _coerce(value, hints[key], f"{source} '{key}'")
    try:
        return dataclasses.replace(config, **new)  # type: ignore[type-var]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {e}") from None


def _coerce(value: Any, hint: Any, what: str) -> Any:
    """``value`` as a value of the annotated type ``hint``, or a ConfigError naming ``what``."""
    if isinstance(value, enum.Enum):
        value = value.value
    options = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    )
    for option in options:
        if option is type(None) and value is None:
            return None
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return value  # an int stays one: records (and fingerprints) keep their exact value
        if option is str and isinstance(value, str):
            return value
        if option is Path and isinstance(value, str | Path) and str(value):
            return Path(value)
        if typing.get_origin(option) is tuple and isinstance(value, list | tuple):
            item = typing.get_args(option)[0]
            return tuple(_coerce(v, item, what) for v in value)
    names = " or ".join(getattr(o, "__name__", str(o)).replace("NoneType", "null") for o in options)
    raise ConfigError(f"{what} must be {names}, got {value!r}")

"""Build models from names or files: the one place that turns weights on disk into modules.

Modelling code (:mod:`samadapter.modeling`) is pure torch; this module resolves registry names to
files (:mod:`samadapter.weights`), reads and checks checkpoints (:mod:`samadapter.checkpoint`)
and loads them strictly. What to build comes from :mod:`samadapter.registry`; a test model
(``tiny-random``) is built from its seed and reads nothing.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from samadapter import registry
from samadapter.checkpoint import (
    SplitCheckpoint,
    check_state_dict,
    load_checkpoint_file,
    split_adapter_state_dict,
)
from samadapter.config import AmgSettings, ModelConfig, RunConfig, override, to_json
from samadapter.errors import CheckpointError, ConfigError
from samadapter.io.text_cache import TextEmbeddingCache
from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.mask_adapter import MaskAdapter
from samadapter.modeling.mask_generator import GeneratorOptions
from samadapter.modeling.proposer import (
    Proposals,
    Sam2MissingError,
    Sam2Proposer,
    SamProposer,
    build_sam,
    build_sam2,
    sam2_available,
)
from samadapter.pipeline import Proposer, Segmenter, resolve_device
from samadapter.presets import PRESETS, preset_config, resolve_preset
from samadapter.registry import Model
from samadapter.runtime import (
    OpenVinoEncoder,
    precision_dtype,
    resolve_precision,
    resolve_runtime,
)
from samadapter.weights import default_weights_dir, file_checksum, resolve_weights


def _expected(module: nn.Module) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in module.state_dict().items()}


def _load_strict(
    module: nn.Module, state: Mapping[str, torch.Tensor], what: str, path: Path | str
) -> None:
    check_state_dict(_expected(module), state, what, path)
    module.load_state_dict(dict(state), strict=True)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Draw a test model's random weights from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def model_file(
    model: Model, weights_dir: Path | None, offline: bool | None, progress: bool
) -> Path | None:
    """The weights file of a registry model, found or downloaded (None for a test model)."""
    if model.file is None:
        return None
    name = model.file.name
    found = resolve_weights([name], weights_dir=weights_dir, offline=offline, progress=progress)
    return found[name]


def _check_sam2(model: Model) -> None:
    """Raise Sam2MissingError for a SAM 2 model when the ``sam2`` package is missing."""
    if model.kind == "sam2" and not sam2_available():
        raise Sam2MissingError(
            f"SAM 2 model '{model.name}' needs the sam2 package",
            hint="pip install samadapter[sam2]",
        )


def build_sam_model(arch: str, checkpoint: Path | None) -> nn.Module:
    """SAM or SAM 2 with weights from ``checkpoint`` (a test model: seeded random weights).

    Raises:
        ConfigError: unknown model. CheckpointError: file does not fit the architecture.
        Sam2MissingError: a SAM 2 model without the ``sam2`` package.
    """
    model = registry.get("sam", arch)
    build, what = (build_sam2, "SAM 2") if model.kind == "sam2" else (build_sam, "SAM")
    if model.random:
        with _seeded(model.seed):
            return build(arch)
    if checkpoint is None:
        raise CheckpointError(f"no checkpoint given for {what} {arch}")
    sam = build(arch)
    _load_strict(sam, load_checkpoint_file(checkpoint), f"{what} {arch}", checkpoint)
    return sam


def build_tiny_classifier(
    with_adapter: bool = True, name: str = registry.TINY
) -> tuple[ClipBackbone, MaskAdapter | None]:
    """The seeded random CLIP (+ adapter) of a test adapter model (``tiny-random``)."""
    model = registry.get("adapter", name)
    with _seeded(model.seed):
        backbone = ClipBackbone.from_arch(model.clip)
        adapter = MaskAdapter(backbone.arch.embed_dim, model.hidden_dim) if with_adapter else None
        if adapter is not None:
            # A zero void embedding scores 0 against every mask, so random masks are not all void.
            torch.nn.init.zeros_(adapter.void_embedding.weight)
    return backbone.eval(), (adapter.eval() if adapter is not None else None)


def _vote(dims: list[tuple[torch.Tensor | None, int]]) -> int | None:
    """The size most of the given tensor dimensions agree on (ties: the first listed).

    A model's widths are read from several tensors, so that one damaged tensor is reported as
    the one that does not fit rather than making every other tensor look wrong.

    Args:
        dims: ``(tensor or None, axis)`` pairs; missing tensors and axes are skipped.
    """
    sizes = [int(t.shape[axis]) for t, axis in dims if t is not None and -t.ndim <= axis < t.ndim]
    if not sizes:
        return None
    counts = Counter(sizes)
    return max(sizes, key=lambda v: (counts[v], -sizes.index(v)))


def _hidden_width(adapter: Mapping[str, torch.Tensor]) -> int:
    """The adapter head's block width, voted over the tensors that have it (768 if none)."""
    dims = [
        (adapter.get("fuse.weight"), 0),
        (adapter.get("fuse.bias"), 0),
        (adapter.get("norm.weight"), 0),
        (adapter.get("final.weight"), 1),
    ]
    for block in ("cnext1", "cnext2", "cnext3"):
        dims += [
            (adapter.get(f"{block}.{key}"), 0)
            for key in ("gamma", "dwconv.weight", "norm.weight", "pwconv2.weight")
        ]
    return _vote(dims) or 768


def clip_arch_of(split: SplitCheckpoint, source: Path | str = "the adapter checkpoint") -> str:
    """The CLIP architecture an adapter checkpoint belongs to, from its embedding width.

    Raises:
        ConfigError: no known architecture has that width.
    """
    width = _vote(
        [
            (split.void, -1),
            (split.adapter.get("mask_downscaling.6.weight"), 0),
            (split.adapter.get("mask_downscaling.6.bias"), 0),
            (split.adapter.get("fuse.weight"), 1),
        ]
    )
    for model in registry.models("clip"):
        if model.clip_arch().embed_dim == width:
            return model.name
    raise ConfigError(
        f"cannot tell the CLIP model of {source} (embedding width {width})", hint="give --clip"
    )


def build_classifier_models(
    clip: str | None,
    adapter_checkpoint: Path | None,
    clip_checkpoint: Callable[[str], Path | None] | Path | None,
) -> tuple[ClipBackbone, MaskAdapter | None]:
    """CLIP backbone and Mask-Adapter with their weights, loaded strictly.

    When the adapter checkpoint carries ``backbone.clip_model.*`` (the FC-CLIP and MAFT+ files),
    those CLIP weights are used and ``clip_checkpoint`` is never called. A checkpoint with
    ``cdt.*`` tensors (MAFT+) gives an adapter with MAFT+'s cdt, in the residual form the official
    config of that CLIP size uses (the registry's ``cdt_norm_update``).

    Args:
        clip: CLIP registry name; ``None``: the one the adapter file's embedding width says
            (else the registry's default CLIP).
        adapter_checkpoint: the adapter file, or ``None`` for no adapter (mask pooling only).
        clip_checkpoint: the open_clip weights file, or a function of the CLIP name returning it
            (called only when the adapter file has no CLIP weights). None for a test CLIP: its
            seeded random weights.

    Returns:
        ``(backbone, adapter)`` in eval mode on the CPU.
    """
    split = None
    if adapter_checkpoint is not None:
        split = split_adapter_state_dict(load_checkpoint_file(adapter_checkpoint))
    if clip is None:
        clip = clip_arch_of(split, adapter_checkpoint or "") if split else registry.DEFAULT_CLIP
    entry = registry.get("clip", clip)
    with _seeded(entry.seed):
        backbone = ClipBackbone.from_arch(clip)
    if split is not None and split.clip is not None:
        _load_strict(
            backbone.model,
            split.clip,
            f"CLIP {clip} (inside the adapter checkpoint)",
            str(adapter_checkpoint),
        )
    else:
        path = clip_checkpoint(clip) if callable(clip_checkpoint) else clip_checkpoint
        if path is None and not entry.random:
            raise CheckpointError(
                f"no weights for CLIP {clip}",
                hint="give --clip-checkpoint or an adapter file with CLIP",
            )
        if path is not None:
            _load_strict(backbone.model, load_checkpoint_file(path), f"CLIP {clip}", path)
    model = None
    if split is not None:
        norm_update = entry.cdt_norm_update if split.cdt is not None else None
        model = MaskAdapter(
            backbone.arch.embed_dim,
            hidden_dim=_hidden_width(split.adapter),
            cdt_norm_update=norm_update,
        )
        state = {f"mask_adapter.{k}": v for k, v in split.adapter.items()}
        if split.void is not None:
            state["void_embedding.weight"] = split.void
        state.update(split.cdt or {})
        kind = "MAFT+ Mask-Adapter" if split.cdt is not None else "Mask-Adapter"
        _load_strict(model, state, f"{kind} for {clip}", str(adapter_checkpoint))
        model.eval()
    return backbone.eval(), model


@dataclass
class Classifier:
    """What :func:`load_classifier` built: CLIP (eval mode, CPU), the Mask-Adapter (None: none
    asked for), and the files their weights came from (None: none, or a test model's seed)."""

    backbone: ClipBackbone
    adapter: MaskAdapter | None
    adapter_file: Path | None
    clip_file: Path | None


def load_classifier(
    adapter: str | None,
    clip: str | None,
    *,
    adapter_checkpoint: Path | None = None,
    clip_checkpoint: Path | None = None,
    weights_dir: Path | None = None,
    offline: bool | None = None,
    progress: bool = True,
    with_adapter: bool = True,
    also: Sequence[Model] = (),
) -> Classifier:
    """CLIP and Mask-Adapter from registry names or files (inference and training alike).

    Args:
        adapter: an adapter registry name; ``None`` or ``"none"``: no adapter.
        clip: a CLIP registry name; None: the adapter's (else the registry's default).
        adapter_checkpoint: an adapter file (wins over ``adapter``).
        clip_checkpoint: an open_clip file (used when the adapter file carries no CLIP).
        weights_dir: where registry files are looked for / downloaded to.
        offline: never download.
        progress: download progress bars.
        with_adapter: build a test model's adapter too (False: its CLIP only).
        also: more registry models whose files are found (or downloaded) with these, so that
            one error names every missing file.

    Raises:
        ConfigError, WeightsError, CheckpointError: with a message naming the fix.
    """
    model = None
    if adapter_checkpoint is None and adapter not in (None, "none"):
        model = registry.get("adapter", str(adapter))
    needed = list(also)
    if model is not None and not model.random:
        needed.append(model)
        clip = clip or model.clip
    elif adapter_checkpoint is None and model is None:
        clip = clip or registry.DEFAULT_CLIP
    if clip_checkpoint is None and clip is not None and not (model and model.includes_clip):
        needed.append(registry.get("clip", clip))
    files = [m.file.name for m in needed if m.file is not None]
    paths = resolve_weights(files, weights_dir=weights_dir, offline=offline, progress=progress)
    if model is not None and model.random:
        return Classifier(*build_tiny_classifier(with_adapter, model.name), None, None)
    if model is not None and model.file is not None:
        adapter_checkpoint = paths[model.file.name]
    used: list[Path] = []

    def clip_file(name: str) -> Path | None:
        path = clip_checkpoint or model_file(
            registry.get("clip", name), weights_dir, offline, progress
        )
        used.extend([path] if path is not None else [])
        return path

    backbone, head = build_classifier_models(clip, adapter_checkpoint, clip_file)
    return Classifier(backbone, head, adapter_checkpoint, used[0] if used else None)


def build_proposer(
    sam: str,
    checkpoint: Path | None,
    amg: AmgSettings,
    device: torch.device,
    precision: str = "fp32",
    runtime: str = "torch",
    two_pass: bool = False,
) -> Proposer:
    """SAM's or SAM 2's automatic mask generator with its weights, on ``device``.

    Raises:
        Sam2MissingError: a SAM 2 model without the ``sam2`` package.
        CheckpointError: the file does not fit the architecture.
    """
    entry = registry.get("sam", sam)
    _check_sam2(entry)
    if entry.kind == "sam2":
        return Sam2Proposer(build_sam_model(sam, checkpoint).to(device), amg)
    # The decoder is compiled from the second image on (CPU; SAMADAPTER_COMPILE=0: never). Not
    # for a test model: compiling costs seconds there and saves nothing.
    options = GeneratorOptions(
        compile=device.type == "cpu" and not entry.random,
        dtype=precision_dtype(precision),
        two_pass=two_pass,
    )
    model: Any = build_sam_model(sam, checkpoint).to(device)
    encoder = None
    if runtime == "openvino":
        image_encoder: nn.Module = model.image_encoder
        size = int(model.image_encoder.img_size)
        encoder = OpenVinoEncoder(
            image_encoder,
            f"sam-{sam}",
            (1, 3, size, size),
            dynamic=False,
            precision=precision,
            cache_dir=default_weights_dir() / "runtime",
        )
    return SamProposer(model, amg, options, encoder=encoder)


class LazyProposer:
    """A proposer built on first use, so that naming given masks never needs SAM's file.

    Args:
        load: builds the real proposer (finds its weights, loads them).
        settings: its :class:`AmgSettings` (shared with the real proposer once built).
    """

    def __init__(self, load: Callable[[], Proposer], settings: AmgSettings) -> None:
        self._load = load
        self._proposer: Proposer | None = None
        self.settings = settings

    @property
    def loaded(self) -> bool:
        """Whether SAM has been built."""
        return self._proposer is not None

    def load(self) -> Proposer:
        """The real proposer, built now if it was not yet."""
        if self._proposer is None:
            self._proposer = self._load()
        return self._proposer

    def __call__(self, image: np.ndarray) -> Proposals:
        """SAM's masks of ``image`` (``[H, W, 3]`` uint8 RGB); builds SAM on the first call."""
        return self.load()(image)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.load(), name)


def load_segmenter(
    preset: str = "auto",
    *,
    config: RunConfig | None = None,
    amg: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    progress: bool = True,
    with_proposer: bool = True,
    text_cache: bool = True,
    eager_proposer: bool = False,
    **models: Any,
) -> Segmenter:
    """A ready :class:`~samadapter.pipeline.Segmenter` from a preset (or a configuration) plus
    overrides.

    Missing weights are downloaded (unless offline); if any cannot be had, ONE
    :class:`~samadapter.errors.WeightsError` names them all with their URLs and target paths.
    The adapter named by the preset is loaded for ``mask-pooling`` too (its file carries the CLIP
    weights); ``adapter="none"`` loads no adapter and takes CLIP from open_clip's file.

    Args:
        preset: ``auto``, ``fast``, ``accurate`` or ``tiny-random`` (see :mod:`samadapter.presets`);
            ignored when ``config`` is given.
        config: the whole configuration (:class:`~samadapter.config.RunConfig`, e.g. from
            :func:`~samadapter.presets.preset_config`); default: the preset's.
        amg: :class:`~samadapter.config.AmgSettings` fields overriding the configuration's
            (``None`` values are ignored).
        settings: :class:`~samadapter.config.PipelineSettings` fields overriding the
            configuration's (``None`` values are ignored); ``precision`` defaults to the models'.
        progress: show download progress bars.
        with_proposer: give the segmenter SAM (``False`` for naming given masks only).
        text_cache: keep text embeddings on disk under ``$SAMADAPTER_HOME/text``.
        eager_proposer: resolve and load SAM now, with the other weights (one error names
            every missing file). By default SAM's file is looked for, and SAM built, only when
            masks are first generated, so :meth:`Segmenter.classify` never needs a SAM file.
        **models: :class:`~samadapter.config.ModelConfig` fields overriding the configuration's
            (``sam=``, ``adapter=``, ``sam_checkpoint=``, ``device=``, ``weights_dir=``,
            ``precision=``, ``runtime=``, ``two_pass=`` ...; ``None`` values are ignored).
            ``precision="auto"`` and ``runtime="auto"`` are ``fp32`` and ``torch`` for the
            ``tiny-random`` preset, so test outputs do not depend on the CPU.

    Raises:
        ConfigError, WeightsError, CheckpointError: with a message naming the fix; a key that
            is no setting is a ConfigError naming the nearest one.
    """
    # Settings first: bad values fail before any weights are read.
    if config is None:
        device = override(ModelConfig(), models, "load_segmenter keyword").device
        config = preset_config(preset, resolve_device(device).type)
    m = override(config.models, models, "load_segmenter keyword")
    amg_settings = override(config.amg, amg, "amg")
    pipe_settings = override(config.pipeline, settings, "settings")
    dev = resolve_device(m.device)
    preset_name = resolve_preset(m.preset, dev.type)
    p = PRESETS[preset_name]
    test_preset = registry.get("sam", p.sam).random  # fp32 and torch: CPU-independent
    precision = resolve_precision(
        "fp32" if m.precision == "auto" and test_preset else m.precision, dev, p.cpu_bf16
    )
    runtime = resolve_runtime("torch" if m.runtime == "auto" and test_preset else m.runtime, dev)
    if pipe_settings.precision == "auto":
        pipe_settings = dataclasses.replace(pipe_settings, precision=precision)
    sam_model = registry.get("sam", m.sam or p.sam)
    adapter = m.adapter or p.adapter
    load_sam_now = with_proposer and eager_proposer
    if load_sam_now:
        _check_sam2(sam_model)  # before any file is downloaded
    loaded = load_classifier(
        adapter,
        m.clip,
        adapter_checkpoint=m.adapter_checkpoint,
        clip_checkpoint=m.clip_checkpoint,
        weights_dir=m.weights_dir,
        offline=m.offline,
        progress=progress,
        with_adapter=pipe_settings.classifier == "mask-adapter",
        also=[sam_model] if load_sam_now and m.sam_checkpoint is None else [],
    )
    proposer: Proposer | None = None
    info: dict[str, Any] = {"preset": preset_name, "device": str(dev)}
    if with_proposer:
        info["sam"] = {"arch": sam_model.name}
        info["amg"] = amg_settings.record()
        sam_info: dict[str, Any] = info["sam"]

        def load_sam() -> Proposer:
            _check_sam2(sam_model)
            checkpoint = m.sam_checkpoint or model_file(
                sam_model, m.weights_dir, m.offline, progress
            )
            built = build_proposer(
                sam_model.name, checkpoint, amg_settings, dev, precision, runtime, m.two_pass
            )
            sam_info.update(_file_info(checkpoint))
            return built

        lazy = LazyProposer(load_sam, amg_settings)
        if load_sam_now:
            lazy.load()
        proposer = lazy
    backbone, adapter_model = loaded.backbone, loaded.adapter
    info["adapter"] = {"name": adapter, **_file_info(loaded.adapter_file)}
    clip_source = loaded.clip_file or loaded.adapter_file
    info["clip"] = {"arch": backbone.arch.name, **_file_info(clip_source)}
    info["pipeline"] = to_json(pipe_settings)
    info["runtime"] = runtime
    if m.two_pass:
        info["two_pass"] = True
    if runtime == "openvino":
        backbone.dense_runner = OpenVinoEncoder(
            backbone.model.visual.trunk,
            f"clip-{backbone.arch.name}",
            (1, 3, pipe_settings.clip_size, pipe_settings.clip_size),
            dynamic=True,
            precision=pipe_settings.precision,
            cache_dir=default_weights_dir() / "runtime",
            method="forward_features",
            progress=progress,
        )
    info["method"] = pipe_settings.describe()
    store = None
    if text_cache:
        text_id = f"{backbone.arch.name}:{info['clip'].get('sha256', 'random-seed0')}"
        store = TextEmbeddingCache(
            default_weights_dir() / "text", text_id, dim=backbone.arch.embed_dim
        )
    return Segmenter(
        backbone=backbone.to(dev),
        adapter=adapter_model.to(dev) if adapter_model is not None else None,
        proposer=proposer,
        settings=pipe_settings,
        device=dev,
        text_store=store,
        info=info,
    )


def _file_info(path: Path | None) -> dict[str, Any]:
    """``{"file": name, "sha256": digest}`` of a weights file (empty for random models)."""
    if path is None:
        return {}
    return {"file": Path(path).name, "sha256": file_checksum(path)}

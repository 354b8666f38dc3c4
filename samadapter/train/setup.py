"""Models for training: the frozen CLIP and the adapter to train, and SAM for proposals.

Where the weights come from (:func:`build_training_models`):

* ``clip="tiny-random"`` with no adapter file: the seeded tiny test models;
* an adapter file (official detectron2 / demo layout, or a file written by ``samadapter train``,
  e.g. stage 1's ``model_final.pth`` to start stage 2): adapter and, when the file has them, CLIP
  weights from it (else from ``clip_checkpoint`` / the registry);
* no adapter file: CLIP from ``clip_checkpoint`` or the registry, the adapter freshly initialised
  (seeded), as the paper trains it.

``from_scratch=True`` re-initialises a loaded adapter (keeping the CLIP weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from samadapter.checkpoint import load_checkpoint_file, split_adapter_state_dict
from samadapter.config import to_json
from samadapter.errors import ConfigError
from samadapter.modeling.clip_backbone import CLIP_ARCHS, ClipBackbone
from samadapter.modeling.mask_adapter import MaskAdapter
from samadapter.modeling.proposer import SAM_ARCHS, AmgSettings, SamProposer
from samadapter.models import (
    TINY,
    build_classifier_models,
    build_sam_model,
    build_tiny_classifier,
    clip_arch_of,
)
from samadapter.weights import get_spec, resolve_weights


@dataclass
class TrainingModels:
    """The models of a training run.

    Attributes:
        backbone: the CLIP (to be frozen).
        adapter: the Mask-Adapter to train.
        clip_name: CLIP architecture name.
        clip_in_checkpoints: whether checkpoints should carry ``backbone.clip_model.*`` (True
            unless the CLIP came from a separate open_clip file).
        source: a line saying where the weights came from.
    """

    backbone: ClipBackbone
    adapter: MaskAdapter
    clip_name: str
    clip_in_checkpoints: bool
    source: str


def infer_clip_arch(adapter_file: Path) -> str:
    """The CLIP architecture an adapter file belongs to, from its embedding width.

    Raises:
        ConfigError: no architecture has that width.
    """
    return clip_arch_of(split_adapter_state_dict(load_checkpoint_file(adapter_file)), adapter_file)


def _reinit(adapter: MaskAdapter, seed: int) -> MaskAdapter:
    """A fresh adapter head and void; a MAFT+ adapter's cdt (part of MAFT+, never trained
    here) is kept."""
    head = adapter.mask_adapter
    hidden = head.fuse.out_channels
    clip_dim = head.fuse.in_channels
    norm_update = adapter.cdt.norm_update if adapter.cdt is not None else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = MaskAdapter(clip_dim, hidden_dim=hidden, cdt_norm_update=norm_update)
    if adapter.cdt is not None and fresh.cdt is not None:
        fresh.cdt.load_state_dict(adapter.cdt.state_dict())
    return fresh


def build_training_models(
    *,
    clip: str | None = None,
    adapter: str | None = None,
    adapter_checkpoint: Path | None = None,
    clip_checkpoint: Path | None = None,
    weights_dir: Path | None = None,
    offline: bool | None = None,
    from_scratch: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> TrainingModels:
    """Build (and load) the CLIP and the adapter to train (see the module docstring).

    Args:
        clip: CLIP architecture (default: the adapter file's, else ``convnext_large_d_320``).
        adapter: an adapter registry name to start from (e.g. ``fcclip_convnext_large``).
        adapter_checkpoint: an adapter file to start from (wins over ``adapter``).
        clip_checkpoint: an open_clip weights file.
        weights_dir: where registry weights are looked for / downloaded to.
        offline: never download.
        from_scratch: re-initialise the adapter after loading.
        seed: seed of a fresh adapter.
        progress: download progress bars.

    Returns:
        the models (CPU, eval mode).

    Raises:
        ConfigError, WeightsError, CheckpointError: with a message naming the fix.
    """
    if clip is not None and clip not in CLIP_ARCHS:
        raise ConfigError(
            f"unknown CLIP model '{clip}'", hint=f"use one of {', '.join(CLIP_ARCHS)}"
        )
    if adapter_checkpoint is None and adapter is not None:
        spec = get_spec(adapter)
        if spec.kind != "adapter":
            raise ConfigError(f"'{adapter}' is a {spec.kind} model, not a Mask-Adapter")
        found = resolve_weights(
            [spec.name], weights_dir=weights_dir, offline=offline, progress=progress
        )[spec.name]
        adapter_checkpoint = found
        clip = clip or str(spec.config.get("clip", "")) or None
    if adapter_checkpoint is None and (clip or TINY) == TINY:
        backbone, tiny = build_tiny_classifier()
        assert tiny is not None
        model = _reinit(tiny, seed) if from_scratch else tiny
        return TrainingModels(backbone, model, TINY, True, "tiny-random (seeded test models)")
    if adapter_checkpoint is not None:
        clip = clip or infer_clip_arch(adapter_checkpoint)
    clip = clip or "convnext_large_d_320"
    used_clip_file = False

    def clip_file(arch: str) -> Path:
        nonlocal used_clip_file
        used_clip_file = True
        if clip_checkpoint is not None:
            return clip_checkpoint
        path = resolve_weights([arch], weights_dir=weights_dir, offline=offline, progress=progress)[
            arch
        ]
        if path is None:
            raise ConfigError(f"no weights for CLIP {arch}", hint="give --clip-checkpoint")
        return path

    if adapter_checkpoint is not None:
        backbone, loaded = build_classifier_models(clip, adapter_checkpoint, clip_file)
        assert loaded is not None
        model = _reinit(loaded, seed) if from_scratch else loaded
        source = f"adapter from {adapter_checkpoint}" + (
            " (re-initialised)" if from_scratch else ""
        )
    else:
        backbone, _ = build_classifier_models(clip, None, clip_file)
        model = _reinit(MaskAdapter(CLIP_ARCHS[clip].embed_dim), seed)
        source = "new adapter (random init)"
    source += f"; CLIP {clip} from " + ("its own file" if used_clip_file else "the adapter file")
    return TrainingModels(backbone, model.eval(), clip, not used_clip_file, source)


def build_proposer(
    sam: str,
    sam_checkpoint: Path | None,
    amg: AmgSettings,
    weights_dir: Path | None = None,
    offline: bool | None = None,
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> tuple[SamProposer, str]:
    """SAM's automatic mask generator for mixed-mask training, and its cache key.

    Args:
        sam: SAM architecture (``vit_b``, ``vit_l``, ``vit_h``, ``tiny-random``).
        sam_checkpoint: explicit SAM file (else the registry's).
        amg: generator settings.
        weights_dir: where registry weights are looked for.
        offline: never download.
        progress: download progress bars.
        device: where SAM runs.

    Returns:
        ``(proposer, key)``; the key names the model file and every setting.
    """
    if sam not in SAM_ARCHS:
        raise ConfigError(f"unknown SAM model '{sam}'", hint=f"use one of {', '.join(SAM_ARCHS)}")
    if sam != TINY and sam_checkpoint is None:
        sam_checkpoint = resolve_weights(
            [f"sam_{sam}"], weights_dir=weights_dir, offline=offline, progress=progress
        )[f"sam_{sam}"]
    model = build_sam_model(sam, sam_checkpoint).to(device)
    settings = ",".join(f"{k}={v}" for k, v in to_json(amg, outputs_only=True).items())
    key = f"{sam}:{sam_checkpoint.name if sam_checkpoint else 'random'}:{settings}"
    return SamProposer(model, amg), key


__all__ = ["TrainingModels", "build_proposer", "build_training_models", "infer_clip_arch"]

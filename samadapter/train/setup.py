"""Models for training: the frozen CLIP and the adapter to train, and SAM for proposals.

Where the weights come from (:func:`build_training_models`):

* a test CLIP (``clip="tiny-random"``) with no adapter: the registry's seeded test models;
* an adapter file or registry name (official detectron2 / demo layout, or a file written by
  ``samadapter train``, e.g. stage 1's ``model_final.pth`` to start stage 2): adapter and, when
  the file has them, CLIP weights from it (else from ``clip_checkpoint`` / the registry);
* no adapter: CLIP from ``clip_checkpoint`` or the registry, the adapter freshly initialised
  (seeded), as the paper trains it.

The models are built by :mod:`samadapter.models`, as for inference.

``from_scratch=True`` re-initialises a loaded adapter (keeping the CLIP weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from samadapter import models, registry
from samadapter.checkpoint import load_checkpoint_file, split_adapter_state_dict
from samadapter.config import to_json
from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.mask_adapter import MaskAdapter
from samadapter.models import clip_arch_of, load_classifier, model_file
from samadapter.pipeline import Proposer
from samadapter.train.config import ModelSettings


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
        clip: CLIP registry name (default: the adapter's, else the registry's default CLIP).
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
    if clip is not None and registry.get("clip", clip).random and adapter is None:
        # A test CLIP starts from its test adapter (the registry's model of that CLIP).
        adapter = next(m.name for m in registry.models("adapter") if m.random and m.clip == clip)
    loaded = load_classifier(
        adapter,
        clip,
        adapter_checkpoint=adapter_checkpoint,
        clip_checkpoint=clip_checkpoint,
        weights_dir=weights_dir,
        offline=offline,
        progress=progress,
    )
    backbone, head = loaded.backbone, loaded.adapter
    clip = backbone.arch.name
    if head is None:
        model, source = (
            _reinit(MaskAdapter(backbone.arch.embed_dim), seed),
            "new adapter (random init)",
        )
    else:
        model = _reinit(head, seed) if from_scratch else head
        source = f"adapter from {loaded.adapter_file}" + (
            " (re-initialised)" if from_scratch else ""
        )
    used_clip_file = loaded.clip_file is not None
    source += f"; CLIP {clip} from " + ("its own file" if used_clip_file else "the adapter file")
    if head is not None and loaded.adapter_file is None:
        source = f"{adapter} (seeded test models)"
    return TrainingModels(backbone, model.eval(), clip, not used_clip_file, source)


def build_proposer(
    settings: ModelSettings, progress: bool = True, device: torch.device | str = "cpu"
) -> tuple[Proposer, str]:
    """SAM's automatic mask generator for mixed-mask training, and its cache key.

    Args:
        settings: the run's models: ``sam`` (registry name: ``vit_b``, ``vit_l``, ``vit_h``,
            ``tiny-random`` ...), ``sam_checkpoint`` (explicit SAM file, else the registry's),
            ``amg`` (generator settings), ``weights_dir`` (where registry weights are looked
            for), ``offline`` (never download).
        progress: download progress bars.
        device: where SAM runs.

    Returns:
        ``(proposer, key)``; the key names the model file and every setting.
    """
    sam, amg, model = settings.sam, settings.amg, registry.get("sam", settings.sam)
    file = settings.sam_checkpoint or model_file(
        model, settings.weights_dir, settings.offline, progress
    )
    proposer = models.build_proposer(sam, file, amg, torch.device(device))
    values = ",".join(f"{k}={v}" for k, v in to_json(amg, outputs_only=True).items())
    key = f"{sam}:{file.name if file else 'random'}:{values}"
    return proposer, key


__all__ = ["TrainingModels", "build_proposer", "build_training_models", "infer_clip_arch"]

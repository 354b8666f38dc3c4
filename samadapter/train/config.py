"""Settings of a training run and its learning-rate schedule (docs/architecture.md, Training).

:class:`TrainConfig` holds the loop's hyper-parameters (defaults: the paper's where it gives them)
and the schedule they define; :class:`TrainRunConfig` is everything ``samadapter train`` needs,
built once from the command line: data, models, features, the hyper-parameters and the run
folder. A resumed run must keep every setting of :class:`TrainConfig` that changes outputs, but
``steps`` and ``amp``; it is told apart with the run configuration's fingerprint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from samadapter.config import AmgSettings, fingerprint, setting, to_json
from samadapter.errors import ConfigError

STAGES = ("warmup", "mixed")
SCHEDULES = ("poly", "cosine", "constant")
# Settings that change outputs, yet a resumed run may change them: more steps stretch the
# schedule; amp is a precision choice. The output-neutral ones (``setting(output=False)``: the
# logging / checkpoint / validation cadence) may change too.
RESUMABLE = ("steps", "amp")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a training run.

    Attributes:
        stage: ``warmup`` (ground-truth masks) or ``mixed`` (ground-truth + matched SAM masks).
        steps: optimiser steps in all.
        batch_size: images per step.
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay (not applied to norm layers and the void embedding).
        grad_clip: max gradient norm (``<= 0``: no clipping).
        schedule: ``poly``, ``cosine`` or ``constant`` after the warm-up.
        warmup_steps: linear learning-rate warm-up length.
        warmup_factor: learning-rate factor at step 0 of the warm-up.
        poly_power: exponent of the poly decay.
        max_gt_masks: ground-truth masks per image in the warm-up stage.
        max_masks: masks per image in the mixed stage.
        max_pairs: most predicted/ground-truth pairs per image in the mixed stage.
        iou_thresh: IoU a predicted mask must exceed to be paired.
        ce_weight: cross-entropy weight (default: 1.0 warm-up, 2.0 mixed).
        consistency_weight: consistency-loss weight (mixed stage).
        seed: seeds every random choice.
        log_every: steps between log records.
        checkpoint_every: steps between checkpoints (``<= 0``: only at the end).
        keep_checkpoints: periodic checkpoints kept (``<= 0``: all).
        val_every: steps between validations (default: ``checkpoint_every``; ``<= 0``: only at
            the end).
        val_mask_batch: masks per forward pass in validation.
        amp: bfloat16 autocast on CUDA.
    """

    stage: str = "warmup"
    steps: int = 10000
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    schedule: str = "poly"
    warmup_steps: int = 100
    warmup_factor: float = 1e-3
    poly_power: float = 0.9
    max_gt_masks: int = 32
    max_masks: int = 32
    max_pairs: int = 8
    iou_thresh: float = 0.7
    ce_weight: float | None = None
    consistency_weight: float = 5.0
    seed: int = 0
    log_every: int = setting(10, output=False)
    checkpoint_every: int = setting(1000, output=False)
    keep_checkpoints: int = setting(3, output=False)
    val_every: int | None = setting(None, output=False)
    val_mask_batch: int = setting(32, output=False)
    amp: bool = True

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"unknown stage '{self.stage}'", hint="use warmup or mixed")
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown schedule '{self.schedule}'", hint=f"use one of {', '.join(SCHEDULES)}"
            )
        for name in ("steps", "batch_size", "max_gt_masks", "max_masks", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.val_mask_batch < 1:
            raise ConfigError(f"val-mask-batch must be >= 1, got {self.val_mask_batch}")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_steps < 0 or self.max_pairs < 0:
            raise ConfigError("lr must be > 0; weight-decay, warmup-steps and max-pairs >= 0")
        if not 0.0 <= self.iou_thresh < 1.0:
            raise ConfigError(f"iou-thresh must be in [0, 1), got {self.iou_thresh}")
        if not 0.0 < self.warmup_factor <= 1.0:
            raise ConfigError(f"warmup-factor must be in (0, 1], got {self.warmup_factor}")

    @property
    def effective_ce_weight(self) -> float:
        """The cross-entropy weight in use (1.0 warm-up, 2.0 mixed unless set)."""
        if self.ce_weight is not None:
            return self.ce_weight
        return 2.0 if self.stage == "mixed" else 1.0

    @property
    def effective_val_every(self) -> int:
        """Steps between validations (0: only at the end)."""
        return max(0, self.checkpoint_every if self.val_every is None else self.val_every)

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier at ``step`` (0-based): linear warm-up, then the decay.

        Args:
            step: optimiser steps done.

        Returns:
            the factor applied to :attr:`lr`.
        """
        warm = 1.0
        if step < self.warmup_steps:
            alpha = step / self.warmup_steps
            warm = self.warmup_factor * (1 - alpha) + alpha
        progress = min(1.0, step / self.steps)
        if self.schedule == "poly":
            return warm * (1.0 - progress) ** self.poly_power
        if self.schedule == "cosine":
            return warm * 0.5 * (1.0 + math.cos(math.pi * progress))
        return warm

    def resume_differences(self, saved: TrainConfig) -> list[str]:
        """What makes this a different run from ``saved``: ``name: saved X, now Y`` for each
        setting that differs, none when the two fingerprints (:func:`samadapter.config.
        fingerprint`, :data:`RESUMABLE` left out) agree."""
        now, then = self._identity(), saved._identity()
        if fingerprint(now) == fingerprint(then):
            return []
        return [f"{k}: saved {then[k]!r}, now {v!r}" for k, v in now.items() if then[k] != v]

    def _identity(self) -> dict[str, Any]:
        return {k: v for k, v in to_json(self, outputs_only=True).items() if k not in RESUMABLE}


RegionMode = Literal["connected", "class"]
REGION_MODES: tuple[str, ...] = ("connected", "class")


@dataclass(frozen=True)
class RegionSettings:
    """How ground-truth masks are cut from a label map.

    Attributes:
        mode: ``connected`` (one mask per connected class region) or ``class`` (one per class).
        min_area: regions with fewer pixels are dropped (instances too).
        connectivity: 4 or 8, for ``connected``.
    """

    mode: RegionMode = "connected"
    min_area: int = 16
    connectivity: int = 8

    def __post_init__(self) -> None:
        if self.mode not in REGION_MODES:
            raise ValueError(f"region mode must be one of {REGION_MODES}, got {self.mode!r}")
        if self.connectivity not in (4, 8):
            raise ValueError(f"connectivity must be 4 or 8, got {self.connectivity}")
        if self.min_area < 1:
            raise ValueError(f"min_area must be >= 1, got {self.min_area}")

    def key(self) -> str:
        """A short string naming these settings (for cache folder names)."""
        return f"{self.mode}-a{self.min_area}-c{self.connectivity}"


# The sections below hold ``samadapter train``'s options, each field named as its option
# (``--data-root`` is ``data.data_root``); ``samadapter train --help`` describes them.


@dataclass(frozen=True)
class DataSettings:
    """What training learns from: the dataset, its splits and how masks are cut from labels."""

    dataset: str
    data_root: Path | None = None
    split: str | None = None
    classes_file: Path | None = None
    ignore_index: int = 255
    label_offset: int = 0
    val_split: str | None = None
    val_images: int = 200
    synthetic_images: int = 64
    regions: RegionSettings = field(default_factory=RegionSettings)


@dataclass(frozen=True)
class ModelSettings:
    """The CLIP and the adapter training starts from, and SAM for the mixed stage."""

    clip: str | None = None
    clip_checkpoint: Path | None = None
    adapter: str | None = None
    adapter_checkpoint: Path | None = None
    from_scratch: bool = False
    sam: str = "vit_h"
    sam_checkpoint: Path | None = None
    amg: AmgSettings = field(default_factory=lambda: AmgSettings(min_mask_region_area=100))
    weights_dir: Path | None = None
    offline: bool | None = None
    device: str = "auto"


@dataclass(frozen=True)
class FeatureSettings:
    """How the frozen models' features are computed and cached."""

    clip_size: int = 896
    cache_dir: Path | None = None
    no_cache: bool = False
    cache_in_memory: bool = False


@dataclass(frozen=True)
class RunSettings:
    """The run folder and what goes into it, and how the run reports."""

    output: Path
    resume: bool = False
    save_clip: bool | None = None
    tensorboard: bool | None = None
    threads: int | None = None
    quiet: bool = False


@dataclass(frozen=True)
class TrainRunConfig:
    """Everything ``samadapter train`` needs, built once from its options."""

    data: DataSettings
    models: ModelSettings
    features: FeatureSettings
    train: TrainConfig
    run: RunSettings


__all__ = [
    "REGION_MODES",
    "RESUMABLE",
    "SCHEDULES",
    "STAGES",
    "DataSettings",
    "FeatureSettings",
    "ModelSettings",
    "RegionSettings",
    "RunSettings",
    "TrainConfig",
    "TrainRunConfig",
]

"""Named presets: which models and settings a run uses. Data, not code paths.

Every value can be overridden by its own CLI flag / keyword argument. ``auto`` picks ``fast`` on a
CPU and ``accurate`` on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from samadapter.config import AmgSettings, ModelConfig, PipelineSettings, RunConfig
from samadapter.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """Models and settings of a preset.

    Attributes:
        sam: SAM architecture (``vit_b``, ``vit_l``, ``vit_h``, a SAM 2.1 name such as
            ``sam2.1_hiera_large``, or ``tiny-random``).
        adapter: Mask-Adapter weights name in the registry (or ``tiny-random``).
        clip: CLIP architecture; ``None`` takes the adapter's.
        points_per_side: SAM prompt grid.
        pred_iou_thresh: SAM's predicted-IoU filter.
        stability_score_thresh: SAM's stability filter.
        min_mask_region_area: SAM's small-region clean-up (pixels).
        clip_size: CLIP input size ``S`` (the official test resize at ``S``: long side ``S`` for
            any non-square photo; see :class:`~samadapter.config.PipelineSettings`).
        keep_ratio: the official demo's keep rule (0.8); 0 keeps every mask.
        score_thresh: opt-in absolute threshold on the best class probability (0 = off).
        description: one line for ``--help``.
        cpu_bf16: ``--precision auto`` is bfloat16 on a CPU with native bfloat16 (speed over
            the last bits of fidelity; see :mod:`samadapter.runtime`).
    """

    sam: str
    adapter: str
    clip: str | None
    points_per_side: int
    pred_iou_thresh: float
    stability_score_thresh: float
    min_mask_region_area: int
    clip_size: int
    score_thresh: float
    description: str
    keep_ratio: float = 0.8
    cpu_bf16: bool = False


PRESETS: dict[str, Preset] = {
    "fast": Preset(
        "vit_b",
        "fcclip_convnext_large",
        None,
        12,
        0.86,
        0.92,
        100,
        640,
        0.0,
        "SAM ViT-B, 12x12 points, CLIP at 640 px; bfloat16 on a CPU that has it",
        cpu_bf16=True,
    ),
    "accurate": Preset(
        "vit_h",
        "maftp_convnext_large",
        None,
        32,
        0.88,
        0.95,
        100,
        896,
        0.0,
        "SAM ViT-H, 32x32 points, MAFTP-L + Mask-Adapter (the best published "
        "file), CLIP at 896 px (the paper's test size)",
    ),
    "demo": Preset(
        "sam2.1_hiera_large",
        "demo",
        None,
        32,
        0.8,
        0.7,
        100,
        896,
        0.0,
        "the official demo's pairing: SAM 2.1 Hiera-L (needs samadapter[sam2]), the "
        "demo adapter, stability 0.7, min region 100, keep ratio 0.8",
    ),
    "tiny-random": Preset(
        "tiny-random",
        "tiny-random",
        "tiny-random",
        4,
        0.0,
        0.0,
        0,
        64,
        0.0,
        "TEST ONLY: tiny random-weight models, meaningless labels, no downloads",
    ),
}


def resolve_preset(name: str, device_type: str) -> str:
    """The name of the preset ``name`` stands for (``auto``: ``fast`` on a CPU, ``accurate``
    elsewhere).

    Raises:
        ConfigError: unknown name.
    """
    if name == "auto":
        name = "fast" if device_type == "cpu" else "accurate"
    if name not in PRESETS:
        raise ConfigError(
            f"unknown preset '{name}'", hint=f"choose one of auto, {', '.join(PRESETS)}"
        )
    return name


def preset_config(name: str, device_type: str) -> RunConfig:
    """The run configuration a preset starts from (``models.preset`` resolved for the device).

    Raises:
        ConfigError: unknown name.
    """
    name = resolve_preset(name, device_type)
    p = PRESETS[name]
    return RunConfig(
        models=ModelConfig(preset=name, sam=p.sam, adapter=p.adapter, clip=p.clip),
        amg=AmgSettings(
            points_per_side=p.points_per_side,
            pred_iou_thresh=p.pred_iou_thresh,
            stability_score_thresh=p.stability_score_thresh,
            min_mask_region_area=p.min_mask_region_area,
        ),
        pipeline=PipelineSettings(
            clip_size=p.clip_size, score_thresh=p.score_thresh, keep_ratio=p.keep_ratio
        ),
    )

"""How the models compute: numeric precision and (for the image encoders) the inference runtime.

``--precision auto|fp32|bf16``: ``auto`` is bfloat16 on a CUDA GPU and on CPUs with native
bfloat16 instructions (AVX512-BF16 or AMX on x86, detected through torch), float32 elsewhere.
bfloat16 applies to the SAM image encoder and mask decoder, the CLIP image encoder and the
Mask-Adapter (autocast); SAM's mask post-processing and all scores stay in float32.
"""

from __future__ import annotations

import torch

from samadapter.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")
"""Values of ``--precision``."""


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles), per torch."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # a probe that cannot run means: not supported
            continue
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``fp32`` or ``bf16`` for ``precision`` on ``device``.

    Args:
        precision: ``auto``, ``fp32`` or ``bf16``.
        device: where the models run.

    Raises:
        ConfigError: an unknown value, or ``bf16`` on a device without bfloat16 autocast (MPS).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown --precision '{precision}'",
                          hint=f"use one of {', '.join(PRECISIONS)}")
    kind = torch.device(device).type
    if precision == "auto":
        return "bf16" if kind == "cuda" or (kind == "cpu" and cpu_has_bf16()) else "fp32"
    if precision == "bf16" and kind not in ("cpu", "cuda"):
        raise ConfigError(f"--precision bf16 is not supported on {kind}",
                          hint="use --precision fp32")
    return precision


def precision_dtype(precision: str) -> torch.dtype:
    """``torch.bfloat16`` for ``bf16``, else ``torch.float32``."""
    return torch.bfloat16 if precision == "bf16" else torch.float32

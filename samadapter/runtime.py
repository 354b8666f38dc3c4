"""How the models compute: numeric precision and (for the image encoders) the inference runtime.

``--precision auto|fp32|bf16``: ``auto`` is bfloat16 on a CUDA GPU; on a CPU with native
bfloat16 (AVX512-BF16 or AMX) it is bfloat16 only for a preset that trades fidelity for speed
(the ``fast`` preset: ``Preset.cpu_bf16``), float32 for the others (``accurate``, ``demo``) and
everywhere else. bfloat16 moves SAM's masks (mean IoU about 0.995 on the same prompts) and class
probabilities slightly (docs/architecture.md, "Precision"); ``--precision fp32`` always gives the
float32 path. bfloat16 applies to the SAM image encoder and mask decoder, the CLIP image encoder
and the Mask-Adapter (autocast, or OpenVINO's bf16 hint); SAM's mask post-processing and all
scores stay in float32.

``--runtime auto|torch|openvino``: the two image encoders (SAM's ViT and CLIP's ConvNeXt) can run
under OpenVINO on a CPU (``pip install samadapter[cpu]``): each is converted once per weights and
input-shape policy and cached under ``$SAMADAPTER_HOME/runtime``. ONNX Runtime is not wired.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samadapter.config import PRECISIONS, RUNTIMES, one_of
from samadapter.errors import ConfigError


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


def resolve_precision(precision: str, device: torch.device | str, cpu_bf16: bool = False) -> str:
    """``fp32`` or ``bf16`` for ``precision`` on ``device``.

    Args:
        precision: ``auto``, ``fp32`` or ``bf16``.
        device: where the models run.
        cpu_bf16: ``auto`` means bfloat16 on a CPU with native bfloat16 (the preset's
            :attr:`~samadapter.presets.Preset.cpu_bf16`).

    Raises:
        ConfigError: an unknown value, or ``bf16`` on a device without bfloat16 autocast (MPS).
    """
    one_of("--precision", precision, PRECISIONS)
    kind = torch.device(device).type
    if precision == "auto":
        native = kind == "cuda" or (kind == "cpu" and cpu_bf16 and cpu_has_bf16())
        return "bf16" if native else "fp32"
    if precision == "bf16" and kind not in ("cpu", "cuda"):
        raise ConfigError(
            f"--precision bf16 is not supported on {kind}", hint="use --precision fp32"
        )
    return precision


def precision_dtype(precision: str) -> torch.dtype:
    """``torch.bfloat16`` for ``bf16``, else ``torch.float32``."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


# ---------------------------------------------------------------------------------------------
# CPU inference runtimes for the two image encoders

RUNTIME_ENV = "SAMADAPTER_RUNTIME"
"""Environment variable: what ``--runtime auto`` means (``torch`` or ``openvino``)."""
CPU_INSTALL_HINT = "pip install samadapter[cpu] (or pip install openvino), or use --runtime torch"


def openvino_available() -> bool:
    """Whether the ``openvino`` package can be imported."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_runtime(runtime: str, device: torch.device | str) -> str:
    """``torch`` or ``openvino`` for ``runtime`` on ``device``.

    ``auto`` is ``$SAMADAPTER_RUNTIME`` when set, else OpenVINO on a CPU when it is installed,
    torch otherwise (and always on a GPU).

    Raises:
        ConfigError: an unknown value; OpenVINO asked for but not installed, or on a GPU.
    """
    one_of("--runtime", runtime, RUNTIMES)
    kind = torch.device(device).type
    if runtime == "auto":
        chosen = os.environ.get(RUNTIME_ENV, "").strip().lower()
        if chosen in ("torch", "openvino"):
            return resolve_runtime(chosen, device)
        return "openvino" if kind == "cpu" and openvino_available() else "torch"
    if runtime == "openvino":
        if kind != "cpu":
            raise ConfigError(
                f"--runtime openvino runs on the CPU, not on {kind}",
                hint="use --device cpu or --runtime torch",
            )
        if not openvino_available():
            raise ConfigError(
                "--runtime openvino needs the openvino package", hint=CPU_INSTALL_HINT
            )
    return runtime


def weights_digest(module: torch.nn.Module) -> str:
    """A short hash of a module's parameters and buffers (names, shapes, dtypes, values)."""
    h = hashlib.blake2b(digest_size=12)
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class _Forward(torch.nn.Module):
    """Wraps a callable of one tensor as a module for tracing."""

    def __init__(self, module: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.inner = module
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.inner, self.method)(x)


class OpenVinoEncoder:
    """An image encoder converted to OpenVINO once and cached on disk.

    The converted model (float32 weights) is stored under ``cache_dir/<name>-<digest>-<shape>``,
    keyed by a hash of the module's weights and the input shape policy: ``static`` (one input
    size, e.g. SAM's 1024x1024) or ``dynamic`` (any height and width, e.g. CLIP). The precision
    is applied when the model is compiled for the CPU (``f32`` or ``bf16`` inference hint).
    Conversion happens on the first call, with one line on stderr.

    Args:
        module: the torch module; ``method`` of it maps ``[1, 3, H, W]`` to one tensor.
        name: a short name for the cache folder and messages (``sam-vit_b``).
        example_shape: ``(1, 3, H, W)`` used to trace the module.
        dynamic: let height and width vary.
        precision: ``fp32`` or ``bf16``.
        cache_dir: where converted models are kept (``$SAMADAPTER_HOME/runtime``).
        method: the module's method to convert (``forward``).
        progress: print the conversion line.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        name: str,
        example_shape: tuple[int, ...],
        dynamic: bool,
        precision: str,
        cache_dir: Path,
        method: str = "forward",
        progress: bool = True,
    ) -> None:
        self.module = module
        self.name = name
        self.example_shape = tuple(example_shape)
        self.dynamic = dynamic
        self.precision = precision
        self.cache_dir = Path(cache_dir)
        self.method = method
        self.progress = progress
        self._compiled: Any = None

    def folder(self) -> Path:
        """The cache folder of this module's converted model."""
        shape = "dynamic" if self.dynamic else "x".join(str(s) for s in self.example_shape)
        return self.cache_dir / f"{self.name}-{weights_digest(self.module)}-{shape}"

    def _convert(self, folder: Path) -> None:
        import openvino as ov

        t0 = time.perf_counter()
        if self.progress:
            print(
                f"converting {self.name} to OpenVINO once (cached in {folder}) ...",
                file=sys.stderr,
                flush=True,
            )
        example = torch.zeros(self.example_shape)
        inputs = (
            [ov.PartialShape([self.example_shape[0], self.example_shape[1], -1, -1])]
            if self.dynamic
            else None
        )
        grads = [p.requires_grad for p in self.module.parameters()]
        try:
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")
                self.module.requires_grad_(False)  # tracing keeps weights as constants
                model = ov.convert_model(
                    _Forward(self.module, self.method).eval(), example_input=example, input=inputs
                )
        finally:
            for p, g in zip(self.module.parameters(), grads, strict=True):
                p.requires_grad_(g)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if self.progress:
            print(
                f"converted {self.name} in {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    def load(self) -> Any:
        """The compiled OpenVINO model (converting and caching it first if needed)."""
        if self._compiled is not None:
            return self._compiled
        import openvino as ov

        folder = self.folder()
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32"}
        for attempt in (0, 1):
            if not (folder / "model.xml").is_file():
                self._convert(folder)
            try:
                self._compiled = core.compile_model(
                    core.read_model(str(folder / "model.xml")), "CPU", config
                )
                break
            except Exception:  # a damaged cache entry: convert again, once
                if attempt:
                    raise
                shutil.rmtree(folder, ignore_errors=True)
        return self._compiled

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run the converted model.

        Args:
            x: ``[1, 3, H, W]`` float tensor (on the CPU).

        Returns:
            the module's output as a float32 torch tensor.
        """
        compiled = self.load()
        out = compiled(np.ascontiguousarray(x.detach().float().cpu().numpy()))[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32).copy())

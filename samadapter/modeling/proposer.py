"""Class-agnostic mask proposals from SAM's (or SAM 2's) automatic mask generator.

The only module of samadapter that imports ``segment_anything`` and ``sam2``. Pure torch: building a
model here never reads a weights file; weights are loaded by :mod:`samadapter.models`.

SAM 2 is optional (``pip install samadapter[sam2]``): ``sam2`` is imported only inside the functions
that need it, so this module imports without it, and those functions raise
:class:`Sam2MissingError` with the install command when it is missing. SAM 2's compiled CUDA
extension is optional too: without it SAM 2 skips its own hole / sprinkle clean-up of low-res
masks (samadapter silences that warning); ``min_mask_region_area`` still removes small regions.
"""

from __future__ import annotations

import importlib
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from samadapter import registry
from samadapter.config import AmgSettings, one_of
from samadapter.errors import ConfigError
from samadapter.modeling.mask_generator import GeneratorOptions, MaskGenerator, Proposals
from samadapter.registry import SamArch


def build_sam(arch: str | SamArch) -> Sam:
    """A SAM model with random weights (same module layout as segment-anything's builders).

    Args:
        arch: a SAM registry name (``vit_b``, ``vit_l``, ``vit_h``, ``tiny-random``) or an
            encoder size.

    Returns:
        the ``Sam`` module in eval mode; its ``state_dict`` keys match the official ``.pth`` files.

    Raises:
        ConfigError: an unknown name, or a SAM 2 model's.
    """
    a = arch if isinstance(arch, SamArch) else registry.get("sam", arch).sam
    if a is None:
        raise ConfigError(f"'{arch}' is a SAM 2 model", hint="build it with build_sam2")
    patch = 16
    grid = a.img_size // patch
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=a.depth,
            embed_dim=a.embed_dim,
            img_size=a.img_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=a.num_heads,
            patch_size=patch,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=a.global_attn_indexes,
            window_size=a.window_size,
            out_chans=a.prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=a.prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(a.img_size, a.img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=a.decoder_depth,
                embedding_dim=a.prompt_dim,
                mlp_dim=a.decoder_mlp_dim,
                num_heads=a.decoder_heads,
            ),
            transformer_dim=a.prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


ENGINES = ("samadapter", "segment-anything")
"""Mask generators for SAM: samadapter's own (default) or segment-anything's."""


class _TimedGenerator:
    """Times an image encoder's forward passes (hooks) around an automatic mask generator."""

    def _time_encoder(self, encoder: torch.nn.Module) -> None:
        self._encoder_seconds = 0.0
        self._t0 = 0.0
        encoder.register_forward_pre_hook(self._start_encoder)
        encoder.register_forward_hook(self._stop_encoder)

    def _start_encoder(self, *_: Any) -> None:
        self._t0 = time.perf_counter()

    def _stop_encoder(self, encoder: torch.nn.Module, *_: Any) -> None:
        if not encoder.training and torch.cuda.is_available():
            torch.cuda.synchronize()
        self._encoder_seconds += time.perf_counter() - self._t0

    def _timed(
        self, generate: Callable[[], list[dict[str, Any]]], image_size: tuple[int, int]
    ) -> Proposals:
        """:func:`proposals_from_records` of ``generate()``, timed: ``sam_encoder`` (the
        encoder's passes) and ``sam_decoder`` (the rest)."""
        self._encoder_seconds = 0.0
        t0 = time.perf_counter()
        records = generate()
        rest = time.perf_counter() - t0 - self._encoder_seconds
        return proposals_from_records(
            records, image_size, {"sam_encoder": self._encoder_seconds, "sam_decoder": rest}
        )


class SamProposer(_TimedGenerator):
    """Runs automatic mask generation with a SAM model on an image.

    By default the masks come from :class:`~samadapter.modeling.mask_generator.MaskGenerator`
    (the same masks as segment-anything's generator, computed faster); segment-anything's own
    ``SamAutomaticMaskGenerator`` runs for what that generator does not implement (image crops,
    ``crop_n_layers > 0``) or when ``engine="segment-anything"``.

    Args:
        sam: a ``Sam`` model (weights loaded, on its device).
        settings: the generator's knobs.
        options: how :class:`MaskGenerator` computes (compile, dtype, prompt batch).
        engine: ``samadapter`` (default) or ``segment-anything``.
        encoder: replaces ``sam.image_encoder`` in :class:`MaskGenerator` (e.g. an OpenVINO
            model): ``[1, 3, S, S]`` pixels to the ``[1, C, h, w]`` embedding.

    Attributes:
        cuda_autocast: ``None``: segment-anything's generator converts its tensors to numpy,
            which has no bfloat16, so it is not run under autocast; :class:`MaskGenerator`
            applies its own compute dtype and post-processes in float32.
    """

    cuda_autocast: torch.dtype | None = None

    def __init__(
        self,
        sam: Sam,
        settings: AmgSettings,
        options: GeneratorOptions | None = None,
        engine: str = "samadapter",
        encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        one_of("mask generator", engine, ENGINES)
        self.sam = sam
        self.settings = settings
        self.options = options or GeneratorOptions()
        self.engine = engine
        self.encoder = encoder
        self._generator: MaskGenerator | None = None
        self._time_encoder(self.sam.image_encoder)

    def generator(self) -> SamAutomaticMaskGenerator:
        """segment-anything's generator configured with :attr:`settings`."""
        return SamAutomaticMaskGenerator(
            self.sam, **self.settings.generator_kwargs(), output_mode="binary_mask"
        )

    @property
    def uses_own_generator(self) -> bool:
        """Whether :class:`MaskGenerator` makes the masks (else segment-anything's generator)."""
        return self.engine == "samadapter" and self.settings.crop_n_layers == 0

    def own_generator(self) -> MaskGenerator:
        """The :class:`MaskGenerator` (kept between images: it holds the compiled decoder)."""
        g = self._generator
        if g is None or g.settings is not self.settings:
            g = MaskGenerator(self.sam, self.settings, self.options, encoder=self.encoder)
            self._generator = g
        return g

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> Proposals:
        """Propose masks.

        Args:
            image: ``[H, W, 3]`` uint8 RGB.

        Returns:
            :class:`Proposals`, masks sorted by area, largest first.
        """
        if self.uses_own_generator:
            return self.own_generator().generate(image)
        return self._timed(lambda: self.generator().generate(image), image.shape[:2])


def proposals_from_records(
    records: list[dict[str, Any]], image_size: tuple[int, int], timings: dict[str, float]
) -> Proposals:
    """:class:`Proposals` from an automatic mask generator's records (SAM's or SAM 2's).

    Args:
        records: dicts with ``segmentation`` (``[H, W]`` bool), ``area``, ``predicted_iou``,
            ``stability_score``, ``point_coords`` (``[[x, y]]``) and ``crop_box`` (XYWH).
        image_size: ``(H, W)``, for the empty case.
        timings: stored as :attr:`Proposals.timings`.

    Returns:
        Masks sorted by area, largest first.
    """
    h, w = image_size
    records = sorted(records, key=lambda r: -int(r["area"]))
    n = len(records)
    masks = (
        np.stack([np.asarray(r["segmentation"]) for r in records])
        if n
        else np.zeros((0, h, w), dtype=bool)
    )
    return Proposals(
        masks=masks.astype(bool),
        predicted_iou=np.array([r["predicted_iou"] for r in records], dtype=np.float32),
        stability_score=np.array([r["stability_score"] for r in records], dtype=np.float32),
        point_coords=np.array([r["point_coords"][0] for r in records], dtype=np.float32).reshape(
            n, 2
        ),
        crop_box=np.array([r["crop_box"] for r in records], dtype=np.float32).reshape(n, 4),
        timings=dict(timings),
    )


# ---------------------------------------------------------------------------------------------
# SAM 2 (optional: the ``sam2`` package)

SAM2_INSTALL_HINT = "pip install samadapter[sam2] (or pip install sam2)"


class Sam2MissingError(ConfigError, ImportError):
    """SAM 2 was asked for but the ``sam2`` package cannot be imported."""


def _import_sam2(what: str) -> Any:
    """Import ``sam2`` and ``what`` (a submodule), or raise :class:`Sam2MissingError`."""
    try:
        importlib.import_module("sam2")
        return importlib.import_module(what)
    except ImportError as e:
        raise Sam2MissingError(
            f"SAM 2 proposals need the sam2 package, which cannot be imported ({e})",
            hint=SAM2_INSTALL_HINT,
        ) from e


def sam2_available() -> bool:
    """Whether the ``sam2`` package can be imported (without raising)."""
    try:
        _import_sam2("sam2.build_sam")
    except Sam2MissingError:
        return False
    return True


@contextmanager
def _quiet_sam2() -> Iterator[None]:
    """Silence SAM 2's warnings about its optional CUDA extension and torch.jit.script."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*cannot import name '_C'.*")
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated.*")
        yield


def build_sam2(arch: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A SAM 2.1 model with random weights, built from the ``sam2`` package's config.

    Args:
        arch: a SAM 2 registry name (``sam2.1_hiera_large``, ``tiny-random`` ...).
        device: where to build it.

    Returns:
        ``SAM2Base`` in eval mode; its ``state_dict`` keys match the official checkpoints'
        ``"model"`` entry (load with ``torch.load(path, weights_only=True)["model"]``, strictly).

    Raises:
        ConfigError: an unknown ``arch``.
        Sam2MissingError: ``sam2`` is not installed.
    """
    entry = registry.get("sam2", arch)
    build_sam = _import_sam2("sam2.build_sam")
    with _quiet_sam2():
        model = build_sam.build_sam2(
            entry.sam2_config,
            ckpt_path=None,
            device=str(device),
            mode="eval",
            hydra_overrides_extra=[f"++model.{o}" for o in entry.sam2_overrides.split()],
        )
    return model.eval()


class Sam2Proposer(_TimedGenerator):
    """Runs SAM 2's automatic mask generator (``SAM2AutomaticMaskGenerator``) on an image.

    Args:
        model: a ``SAM2Base`` model (weights loaded, on its device), e.g. from :func:`build_sam2`.
        settings: the generator's knobs (the same names as SAM's).
        use_m2m: SAM 2's optional one-step refinement of each mask with its own previous mask.
        multimask_output: let each point prompt give three masks (SAM 2's default).

    Raises:
        Sam2MissingError: ``sam2`` is not installed (checked here, before any image).
    """

    cuda_autocast: torch.dtype | None = torch.bfloat16
    """SAM 2 runs under bfloat16 autocast on a GPU, as its own examples do."""

    def __init__(
        self,
        model: torch.nn.Module,
        settings: AmgSettings,
        *,
        use_m2m: bool = False,
        multimask_output: bool = True,
    ) -> None:
        self._amg = _import_sam2("sam2.automatic_mask_generator")
        self.model = model
        self.settings = settings
        self.use_m2m = use_m2m
        self.multimask_output = multimask_output
        encoder = model.image_encoder
        assert isinstance(encoder, torch.nn.Module)
        self._time_encoder(encoder)

    def generator(self) -> Any:
        """sam2's ``SAM2AutomaticMaskGenerator`` configured with :attr:`settings`."""
        with _quiet_sam2():
            return self._amg.SAM2AutomaticMaskGenerator(
                self.model,
                **self.settings.generator_kwargs(),
                output_mode="binary_mask",
                use_m2m=self.use_m2m,
                multimask_output=self.multimask_output,
            )

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> Proposals:
        """Propose masks.

        Args:
            image: ``[H, W, 3]`` uint8 RGB.

        Returns:
            :class:`Proposals` (same fields as SAM's), masks sorted by area, largest first.
        """

        def generate() -> list[dict[str, Any]]:
            generator = self.generator()
            with _quiet_sam2():
                return list(generator.generate(np.ascontiguousarray(image)))

        return self._timed(generate, image.shape[:2])

"""The model registry: every model samadapter builds, as data (docs/architecture.md).

One :class:`Model` per model a user can name (``--sam``, ``--clip``, ``--adapter``): its kind, what
:mod:`samadapter.modeling` builds its architecture from, and its weights file
(:class:`WeightSpec`: official URL, size and checksum where known). A test model (``tiny-random``)
is an entry like the others, whose weights come from a seed instead of a file.

Torch-free and without I/O at import (``--help`` stays instant). CLIP embedding widths are not
copied here: they are read, when first asked for, from the model config JSON open_clip ships.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from samadapter.errors import ConfigError

Kind = Literal["sam", "sam2", "clip", "adapter"]

TINY = "tiny-random"
"""The test models' name (every kind has one; ``--preset tiny-random`` pairs them)."""


@dataclass(frozen=True)
class WeightSpec:
    """One downloadable model file.

    Attributes:
        name: name in ``samadapter weights``, e.g. ``"sam_vit_b"``.
        kind: ``"sam"``, ``"sam2"``, ``"clip"`` or ``"adapter"``.
        filename: file name on disk, e.g. ``"sam_vit_b_01ec64.pth"``.
        url: default download URL (overridable with ``SAMADAPTER_URL_<NAME>``), or None.
        sha256: full sha256 hex digest when known for certain, else None.
        md5_prefix: leading hex digits of the file's md5 when known (SAM names carry 6), else None.
        size_bytes: approximate size, for display only.
        supported: False for files samadapter knows of but cannot load yet.
        note: free text shown in ``samadapter weights list`` (why unsupported, caveats).
    """

    name: str
    kind: Kind
    filename: str
    url: str | None
    sha256: str | None = None
    md5_prefix: str | None = None
    size_bytes: int | None = None
    supported: bool = True
    note: str = ""


@dataclass(frozen=True)
class SamArch:
    """A SAM image-encoder size (the prompt encoder and mask decoder are the same for all)."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    img_size: int = 1024
    prompt_dim: int = 256
    window_size: int = 14
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8


@dataclass(frozen=True)
class ClipArch:
    """Architecture of a CLIP ConvNeXt.

    Attributes:
        name: the registry name (an open_clip model name, or ``tiny-random``).
        embed_dim: projected embedding size ``C`` (768 large, 640 base).
        dense_dim: trunk output channels ``D`` at stride 32 (1536 large, 1024 base).
    """

    name: str
    embed_dim: int
    dense_dim: int


@dataclass(frozen=True)
class Model:
    """One model samadapter can build. Fields after ``seed`` apply to one kind each.

    Attributes:
        name: what users type (``vit_b``, ``sam2.1_hiera_large``, ``convnext_large_d_320``,
            ``demo``, ``tiny-random``).
        kind: ``sam``, ``sam2``, ``clip`` or ``adapter``.
        file: its weights file; None for a test model, whose weights come from ``seed``.
        seed: the torch seed a test model's random weights are drawn with.
        sam: (SAM) the encoder size.
        sam2_config: (SAM 2) the Hydra config of the ``sam2`` package it is built from.
        sam2_overrides: (SAM 2) ``key=value`` settings of its ``model`` replacing the config's,
            separated by spaces.
        open_clip_config: (CLIP) the open_clip model config; None: open_clip's own config of
            ``name``.
        dense_dim: (CLIP) trunk output channels at stride 32 (not in open_clip's config: the
            width of timm's last ConvNeXt stage).
        tokenizer: (CLIP) open_clip model whose tokenizer it uses ("": its own).
        pretrained: (CLIP) open_clip's tag of its weights file.
        cdt_norm_update: (CLIP) residual form of MAFT+'s cdt in the official config of this
            CLIP size (see :class:`~samadapter.modeling.cdt.ContentDependentTransfer`): the
            MAFTP-Large config sets ``PANOPTIC_ON: True`` (``t + LayerNorm(MLP(a))``), MAFTP-Base
            False (``LayerNorm(t + MLP(a))``).
        clip: (adapter) the CLIP model it belongs to.
        includes_clip: (adapter) its file carries that CLIP's weights too.
        layout: (adapter) its file's checkpoint layout: ``detectron2`` or ``demo``.
        hidden_dim: (adapter, test model) width of the random adapter head.
    """

    name: str
    kind: Kind
    file: WeightSpec | None = None
    seed: int = 0
    sam: SamArch | None = None
    sam2_config: str = ""
    sam2_overrides: str = ""
    open_clip_config: Mapping[str, Any] | None = None
    dense_dim: int = 0
    tokenizer: str = ""
    pretrained: str = ""
    cdt_norm_update: bool = False
    clip: str = ""
    includes_clip: bool = False
    layout: str = ""
    hidden_dim: int = 0

    @property
    def random(self) -> bool:
        """A test model: random weights drawn with :attr:`seed`, no file."""
        return self.file is None

    def clip_arch(self) -> ClipArch:
        """(CLIP) name and widths; the embedding width comes from the open_clip config."""
        config = self.open_clip_config or _packaged_open_clip_config(self.name)
        return ClipArch(self.name, int(config["embed_dim"]), self.dense_dim)


@functools.cache
def _packaged_open_clip_config(name: str) -> Mapping[str, Any]:
    """open_clip's own model config ``open_clip/model_configs/<name>.json`` (read without
    importing open_clip, which imports torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise ConfigError("CLIP models need the open_clip_torch package", hint="pip install it")
    path = Path(spec.origin).parent / "model_configs" / f"{name}.json"
    try:
        return MappingProxyType(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read open_clip's config of {name}: {exc}") from None


_CLIP_L = "convnext_large_d_320"
_CLIP_B = "convnext_base_w_320"
DEFAULT_CLIP = _CLIP_L
"""The CLIP used when neither ``--clip`` nor an adapter names one."""


def _sam(name: str, file: str, md5_prefix: str, size: int, arch: SamArch) -> Model:
    filename = f"{file}_{md5_prefix}.pth"
    url = f"https://dl.fbaipublicfiles.com/segment_anything/{filename}"
    spec = WeightSpec(file, "sam", filename, url, md5_prefix=md5_prefix, size_bytes=size)
    return Model(name, "sam", spec, sam=arch)


def _sam2(name: str, config: str, size: int) -> Model:
    url = f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/{name}.pt"
    note = "SAM 2.1 (needs the optional sam2 package: pip install samadapter[sam2])"
    spec = WeightSpec(name, "sam2", f"{name}.pt", url, size_bytes=size, note=note)
    return Model(name, "sam2", spec, sam2_config=config)


def _clip(name: str, tag: str, hf_repo: str, dense: int, size: int, norm_update: bool) -> Model:
    url = f"https://huggingface.co/{hf_repo}/resolve/main/open_clip_pytorch_model.bin"
    note = f"open_clip {name} / {tag}"
    spec = WeightSpec(name, "clip", f"open_clip_{name}_{tag}.bin", url, size_bytes=size, note=note)
    return Model(name, "clip", spec, pretrained=tag, dense_dim=dense, cdt_norm_update=norm_update)


def _adapter(
    name: str, url: str, clip: str, layout: str, note: str, size: int | None = None
) -> Model:
    spec = WeightSpec(name, "adapter", url.rsplit("/", 1)[1], url, size_bytes=size, note=note)
    # A detectron2-layout file is the whole FC-CLIP / MAFT+ model; the demo's, the head alone.
    includes_clip = layout == "detectron2"
    return Model(name, "adapter", spec, clip=clip, includes_clip=includes_clip, layout=layout)


_MASK_ADAPTER_HF = "https://huggingface.co/owl10/Mask-Adapter/resolve/main"
_MAFTP = "whole MAFT+ model: adapter, MAFT+'s cdt text refinement and its CLIP ConvNeXt"
_TINY_SAM2_OVERRIDES = (
    # Image encoder: a 4-stage Hiera with 5 blocks and 8 channels; the neck at 32 channels.
    "image_encoder.trunk.embed_dim=8 image_encoder.trunk.num_heads=1 "
    "image_encoder.trunk.stages=[1,1,2,1] image_encoder.trunk.global_att_blocks=[3] "
    "image_encoder.trunk.window_spec=[8,4,4,4] "
    "image_encoder.neck.backbone_channel_list=[64,32,16,8] image_encoder.neck.d_model=32 "
    "image_encoder.neck.position_encoding.num_pos_feats=32 "
    # Video memory modules (unused for images, but built): shrunk to match.
    "memory_attention.d_model=32 memory_attention.num_layers=1 "
    "memory_attention.layer.d_model=32 memory_attention.layer.dim_feedforward=32 "
    "memory_attention.layer.self_attention.embedding_dim=32 "
    "memory_attention.layer.cross_attention.embedding_dim=32 "
    "memory_attention.layer.cross_attention.kv_in_dim=16 memory_encoder.out_dim=16 "
    "memory_encoder.in_dim=32 memory_encoder.position_encoding.num_pos_feats=16 "
    "memory_encoder.mask_downsampler.embed_dim=32 memory_encoder.fuser.layer.dim=32 "
    "memory_encoder.fuser.num_layers=1"
)
_TINY_OPEN_CLIP_CONFIG = (  # an open_clip model config, like those it ships as JSON
    '{"embed_dim": 32, "vision_cfg": {"timm_model_name": "convnext_atto", "timm_model_pretrained"'
    ': false, "timm_pool": "", "timm_proj": "mlp", "image_size": 64}, "text_cfg": '
    '{"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}'
)

MODELS: tuple[Model, ...] = (
    _sam("vit_b", "sam_vit_b", "01ec64", 375_042_383, SamArch(768, 12, 12, (2, 5, 8, 11))),
    _sam("vit_l", "sam_vit_l", "0b3195", 1_249_524_607, SamArch(1024, 24, 16, (5, 11, 17, 23))),
    _sam("vit_h", "sam_vit_h", "4b8939", 2_564_550_879, SamArch(1280, 32, 16, (7, 15, 23, 31))),
    # A few thousand parameters, 128 px input; random weights give random masks.
    Model(TINY, "sam", sam=SamArch(32, 2, 2, (1,), 128, 32, 4, 1, 64, 2)),
    _sam2("sam2.1_hiera_tiny", "configs/sam2.1/sam2.1_hiera_t.yaml", 156_000_000),
    _sam2("sam2.1_hiera_small", "configs/sam2.1/sam2.1_hiera_s.yaml", 184_000_000),
    _sam2("sam2.1_hiera_base_plus", "configs/sam2.1/sam2.1_hiera_b+.yaml", 324_000_000),
    _sam2("sam2.1_hiera_large", "configs/sam2.1/sam2.1_hiera_l.yaml", 898_000_000),
    # SAM 2.1 tiny's config shrunk to ~0.6 M parameters (build_sam2 only: --sam means SAM's).
    Model(
        TINY,
        "sam2",
        sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml",
        sam2_overrides=_TINY_SAM2_OVERRIDES,
    ),
    _clip(
        _CLIP_L,
        "laion2b_s29b_b131k_ft_soup",
        f"laion/CLIP-{_CLIP_L}.laion2B-s29B-b131K-ft-soup",
        1536,
        1_410_000_000,
        True,
    ),
    _clip(
        _CLIP_B,
        "laion_aesthetic_s13b_b82k_augreg",
        f"laion/CLIP-{_CLIP_B}-laion_aesthetic-s13B-b82K-augreg",
        1024,
        720_000_000,
        False,
    ),
    Model(
        TINY,
        "clip",
        open_clip_config=MappingProxyType(json.loads(_TINY_OPEN_CLIP_CONFIG)),
        dense_dim=320,
        tokenizer=_CLIP_L,
    ),
    _adapter(
        "fcclip_convnext_large",
        f"{_MASK_ADAPTER_HF}/fcclip_convnext_large_maskadapter.pth",
        _CLIP_L,
        "detectron2",
        "FC-CLIP + Mask-Adapter (whole FC-CLIP model; its CLIP weights are used too)",
        1_670_000_000,
    ),
    _adapter(
        "demo",
        "https://huggingface.co/spaces/wondervictor/Mask-Adapter/resolve/main/"
        "model_0279999_with_sem_new.pth",
        _CLIP_L,
        "demo",
        "adapter of the official demo (HF Space wondervictor/Mask-Adapter); the exact path "
        "in the Space is unverified: override with SAMADAPTER_URL_DEMO",
        59_600_000,
    ),
    _adapter(
        "maftp_convnext_large",
        f"{_MASK_ADAPTER_HF}/maftp_convnext_large_maskadapter.pth",
        _CLIP_L,
        "detectron2",
        f"MAFTP-Large + Mask-Adapter ({_MAFTP}-L); published mIoU A-847 16.2, A-150 38.2, "
        "PC-459 22.7, PC-59 60.4",
    ),
    _adapter(
        "maftp_convnext_base",
        f"{_MASK_ADAPTER_HF}/maftp_convnext_base_maskadapter.pth",
        _CLIP_B,
        "detectron2",
        f"MAFTP-Base + Mask-Adapter ({_MAFTP}-B); published mIoU A-847 14.2, A-150 35.6, "
        "PC-459 17.9, PC-59 58.4",
    ),
    Model(TINY, "adapter", clip=TINY, includes_clip=True, hidden_dim=32),
)
"""Every model, real ones first within each kind (the order of help texts and lists)."""

_LABELS = {"sam": "SAM model", "sam2": "SAM 2 model", "clip": "CLIP model", "adapter": "adapter"}


def models(kind: Kind) -> list[Model]:
    """The models of a kind; for ``sam`` (what ``--sam`` takes): SAM's, then SAM 2's."""
    kinds = ("sam", "sam2") if kind == "sam" else (kind,)
    return [m for k in kinds for m in MODELS if m.kind == k]


def names(kind: Kind) -> list[str]:
    """The names users can give for ``kind`` (as :func:`models`): supported real models."""
    return [m.name for m in models(kind) if m.file is not None and m.file.supported]


def find(kind: Kind, name: str) -> Model | None:
    """The model called ``name`` of ``kind`` (``sam``: a SAM, else a SAM 2 model), or None."""
    return next((m for m in models(kind) if m.name == name), None)


def get(kind: Kind, name: str) -> Model:
    """The model called ``name`` of ``kind`` (``sam``: a SAM, else a SAM 2 model).

    Raises:
        ConfigError: no such model; the message lists the valid names (and says which kind a
            weights name of another kind is, e.g. ``--adapter sam_vit_b``).
    """
    model = find(kind, name)
    if model is not None:
        return model
    other = next((m for m in MODELS if m.file is not None and m.file.name == name), None)
    if other is not None and kind == "adapter":
        raise ConfigError(
            f"'{name}' is a {other.kind} model, not a Mask-Adapter",
            hint="see `samadapter weights list` for adapter names",
        )
    raise ConfigError(
        f"unknown {_LABELS[kind]} '{name}'", hint=f"choose one of {', '.join(names(kind))}"
    )

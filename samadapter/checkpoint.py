"""Reading and writing the official Mask-Adapter checkpoint layouts (docs/architecture.md).

Two layouts exist:

* **detectron2** (``fcclip_convnext_large_maskadapter.pth`` and the MAFT+ files): ``{"model": sd}``
  with ``mask_adapter.*`` adapter tensors, ``void_embedding.weight`` and
  ``backbone.clip_model.*`` (open_clip ConvNeXt) tensors, plus modules we do not use
  (``sem_seg_head.*``, ``criterion.*`` ...), which are ignored.
* **demo** (``model_0279999_with_sem_new.pth``): the same adapter tensors without the
  ``mask_adapter.`` prefix, plus ``void_embedding.weight``.

:func:`split_adapter_state_dict` turns either into a :class:`SplitCheckpoint` whose adapter keys
are the adapter module's own keys and whose CLIP keys are open_clip's own keys;
:func:`to_detectron2_state_dict` and :func:`to_demo_state_dict` go back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from samadapter.errors import CheckpointError, OutputError
from samadapter.io.atomic import atomic_path

ADAPTER_PREFIX = "mask_adapter."
"""Prefix of the adapter tensors in the detectron2 layout."""
CLIP_PREFIX = "backbone.clip_model."
"""Prefix of the open_clip model tensors in the detectron2 layout."""
VOID_KEY = "void_embedding.weight"
"""Key of the learned "no object" class embedding ``[1, C]`` (both layouts)."""
CDT_PREFIX = "cdt."
"""Prefix of MAFT+'s content-dependent transfer tensors (the ``maftp_*`` files only)."""
ADAPTER_MODULES = ("mask_downscaling", "fuse", "cnext1", "cnext2", "cnext3", "norm", "final")
"""Top-level submodules of the Mask-Adapter head (the demo layout's top-level key names)."""

MAX_LISTED = 10
"""How many keys of each kind a mismatch report lists before ``(+N more)``."""

Layout = Literal["detectron2", "demo"]


@dataclass
class SplitCheckpoint:
    """A Mask-Adapter checkpoint split into the parts samadapter loads.

    Attributes:
        adapter: adapter tensors with the module's own keys (``fuse.weight``,
            ``cnext1.dwconv.weight`` ...), without any ``mask_adapter.`` prefix.
        void: the ``void_embedding.weight`` tensor ``[1, C]``, or None when absent.
        clip: open_clip state dict (``backbone.clip_model.`` stripped), or None when the
            checkpoint has no CLIP tensors.
        ignored: full keys of the other tensors (``sem_seg_head.*``, ``criterion.*`` ...), sorted.
        layout: ``"detectron2"`` or ``"demo"``.
        cdt: MAFT+'s ``cdt.*`` tensors with the prefix kept (a MAFT+ checkpoint), or None.
    """

    adapter: dict[str, torch.Tensor]
    void: torch.Tensor | None
    clip: dict[str, torch.Tensor] | None
    ignored: list[str] = field(default_factory=list)
    layout: Layout = "detectron2"
    cdt: dict[str, torch.Tensor] | None = None

    def ignored_prefixes(self) -> dict[str, int]:
        """Count the ignored tensors by their first key component, e.g. ``{"sem_seg_head": 12}``."""
        counts: dict[str, int] = {}
        for key in self.ignored:
            top = key.split(".", 1)[0]
            counts[top] = counts.get(top, 0) + 1
        return dict(sorted(counts.items()))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0].strip() if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _redownload_hint(file: Path) -> str:
    """How to get a good copy of ``file``: the registry's download command when it is one of
    the registry's files, else what kind of file is expected."""
    from samadapter.weights import REGISTRY

    names = [spec.name for spec in REGISTRY.values() if spec.filename == file.name]
    if names:
        return f"delete it and run `samadapter weights download {names[0]}`"
    return "give the .pth / .bin file of the weights, as torch.save wrote it"


def checkpoint_read_error(
    file: Path, exc: BaseException, what: str = "checkpoint", hint: str | None = None
) -> CheckpointError:
    """The one-line error for a file ``torch.load(weights_only=True)`` could not read.

    torch's own message is not passed on: it is many lines long and may advise loading with
    ``weights_only=False``, which would let the file run code.

    Args:
        file: the file.
        exc: what ``torch.load`` raised.
        what: what the file was meant to be, for the message.
        hint: how to get a good file (default: the registry's download command for its files).
    """
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if found:
        return CheckpointError(
            f"cannot read {what} {file}: it holds pickled Python objects ({found.group(1)}), "
            "not just tensors, and samadapter reads tensors only (so that no file can run code)",
            hint="save the model's state_dict() rather than the model object",
        )
    return CheckpointError(
        f"cannot read {what} {file}: not a PyTorch checkpoint, or corrupt "
        "(truncated, or another kind of file)",
        hint=hint or _redownload_hint(file),
    )


def load_checkpoint_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a checkpoint's state dict safely (``weights_only=True``) onto the CPU.

    ``{"model": sd}`` (detectron2) and ``{"state_dict": sd}`` wrappers are unwrapped. Entries
    that are not tensors (e.g. an iteration counter) are dropped.

    Args:
        path: ``.pth`` / ``.bin`` file.

    Returns:
        ``{key: tensor}``.

    Raises:
        CheckpointError: the file is missing, a folder, unreadable, truncated, not a torch
            checkpoint, holds objects ``weights_only`` refuses, or holds no tensors. The message
            is one line (see :func:`checkpoint_read_error`).
    """
    file = Path(path)
    if file.is_dir():
        raise CheckpointError(
            f"checkpoint {file} is a folder, not a file", hint="give the .pth / .bin file inside it"
        )
    if not file.is_file():
        raise CheckpointError(f"checkpoint not found: {file}", hint="check the path")
    try:
        obj: Any = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, EOF...).
        raise checkpoint_read_error(file, exc) from None
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {file} holds a {type(obj).__name__}, not a state dict")
    state = {str(key): value for key, value in obj.items() if isinstance(value, torch.Tensor)}
    if not state:
        raise CheckpointError(f"checkpoint {file} holds no tensors")
    return state


def _prefixes(keys: list[str]) -> str:
    tops = sorted({key.split(".", 1)[0] for key in keys})
    shown = ", ".join(tops[:MAX_LISTED])
    return shown + (f" (+{len(tops) - MAX_LISTED} more)" if len(tops) > MAX_LISTED else "")


def split_adapter_state_dict(sd: Mapping[str, torch.Tensor]) -> SplitCheckpoint:
    """Split an official Mask-Adapter state dict (either layout) into its parts.

    The layout is detectron2 when any key starts with :data:`ADAPTER_PREFIX`, else demo (adapter
    keys start with one of :data:`ADAPTER_MODULES`). ``backbone.clip_model.*`` tensors go to
    ``clip`` in both layouts, MAFT+'s ``cdt.*`` tensors to ``cdt`` (both layouts: a demo-layout
    file ``samadapter train`` writes for a MAFT+ adapter carries them too).

    Args:
        sd: a state dict as :func:`load_checkpoint_file` returns it.

    Returns:
        The split checkpoint.

    Raises:
        CheckpointError: no adapter tensors at all (the message lists the prefixes found).
    """
    detectron2 = any(key.startswith(ADAPTER_PREFIX) for key in sd)
    adapter: dict[str, torch.Tensor] = {}
    clip: dict[str, torch.Tensor] = {}
    void: torch.Tensor | None = None
    cdt: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, value in sd.items():
        if key == VOID_KEY:
            void = value
        elif key.startswith(CLIP_PREFIX):
            clip[key[len(CLIP_PREFIX) :]] = value
        elif key.startswith(CDT_PREFIX):
            cdt[key] = value
        elif detectron2 and key.startswith(ADAPTER_PREFIX):
            adapter[key[len(ADAPTER_PREFIX) :]] = value
        elif not detectron2 and key.split(".", 1)[0] in ADAPTER_MODULES:
            adapter[key] = value
        else:
            ignored.append(key)
    if not adapter:
        found = _prefixes(list(sd)) or "none"
        raise CheckpointError(
            f"not a Mask-Adapter checkpoint: no '{ADAPTER_PREFIX}*' or demo-layout adapter "
            f"tensors; found prefixes {found}"
        )
    return SplitCheckpoint(
        adapter=adapter,
        void=void,
        clip=clip or None,
        ignored=sorted(ignored),
        layout="detectron2" if detectron2 else "demo",
        cdt=cdt or None,
    )


def _shape(value: torch.Size | tuple[int, ...] | torch.Tensor) -> list[int]:
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    return [int(v) for v in value]


def _listed(label: str, items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return f"{len(items)} {label}: {shown}{more}"


def check_state_dict(
    expected: Mapping[str, torch.Size | tuple[int, ...]],
    given: Mapping[str, torch.Tensor],
    what: str,
    path: str | os.PathLike[str] | None,
) -> None:
    """Compare a checkpoint's tensors with a model's, strictly.

    Args:
        expected: ``{key: shape}`` the model needs (e.g. ``{k: v.shape for k, v in
            module.state_dict().items()}``).
        given: the checkpoint's tensors under the same key names.
        what: what is being loaded, e.g. ``"the Mask-Adapter head"``; used in the message.
        path: the checkpoint file, for the message.

    Raises:
        CheckpointError: any key missing, unexpected, or of the wrong shape. The one-line
            message lists up to :data:`MAX_LISTED` of each kind with counts, ``; ``-separated,
            and asks whether this is the right checkpoint for ``what``.
    """
    missing = sorted(key for key in expected if key not in given)
    unexpected = sorted(key for key in given if key not in expected)
    mismatched = []
    for key in sorted(expected):
        if key in given:
            want, got = _shape(expected[key]), _shape(given[key])
            if want != got:
                mismatched.append(f"{key}: checkpoint {got} vs model {want}")
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(_listed("missing keys", missing))
    if unexpected:
        parts.append(_listed("unexpected keys", unexpected))
    if mismatched:
        parts.append(_listed("shape mismatches", mismatched))
    source = f"checkpoint {path}" if path is not None else "checkpoint"
    raise CheckpointError(
        f"{source} does not match {what}: " + "; ".join(parts),
        hint=f"is this the right checkpoint for {what}?",
    )


def to_detectron2_state_dict(
    adapter_sd: Mapping[str, torch.Tensor],
    void: torch.Tensor | None,
    clip_sd: Mapping[str, torch.Tensor] | None = None,
    cdt_sd: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Build a detectron2-layout state dict (inverse of :func:`split_adapter_state_dict`).

    Save it as ``{"model": sd}`` to match the official files.

    Args:
        adapter_sd: adapter tensors with the module's own keys.
        void: ``void_embedding.weight`` or None.
        clip_sd: open_clip state dict or None.
        cdt_sd: MAFT+'s ``cdt.*`` tensors (prefix included) or None.

    Returns:
        ``mask_adapter.*``, ``void_embedding.weight``, ``cdt.*`` and ``backbone.clip_model.*``
        tensors.
    """
    out = {ADAPTER_PREFIX + key: value for key, value in adapter_sd.items()}
    if void is not None:
        out[VOID_KEY] = void
    if cdt_sd is not None:
        out.update(cdt_sd)
    if clip_sd is not None:
        out.update({CLIP_PREFIX + key: value for key, value in clip_sd.items()})
    return out


def to_demo_state_dict(
    adapter_sd: Mapping[str, torch.Tensor],
    void: torch.Tensor | None,
    cdt_sd: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Build a demo-layout state dict: adapter keys unprefixed, plus ``void_embedding.weight``
    (and, for a MAFT+ adapter, its ``cdt.*`` tensors, which the official demo file has not).

    Args:
        adapter_sd: adapter tensors with the module's own keys.
        void: ``void_embedding.weight`` or None.
        cdt_sd: MAFT+'s ``cdt.*`` tensors (prefix included) or None.

    Returns:
        The state dict.

    Raises:
        CheckpointError: a key that the demo layout could not tell apart from other modules
            (its first component is not one of :data:`ADAPTER_MODULES`).
    """
    stray = sorted(key for key in adapter_sd if key.split(".", 1)[0] not in ADAPTER_MODULES)
    if stray:
        raise CheckpointError(
            "cannot write demo layout: " + _listed("keys outside the adapter modules", stray)
        )
    out = dict(adapter_sd)
    if void is not None:
        out[VOID_KEY] = void
    if cdt_sd is not None:
        out.update(cdt_sd)
    return out


def save_checkpoint_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (:func:`~samadapter.io.atomic.atomic_path`).

    A failed write leaves any previous file at ``path`` untouched and no temporary file behind.

    Args:
        obj: what to save (e.g. ``{"model": sd}``).
        path: destination; its folder is created if missing.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the folder or file cannot be written (permissions, disk full).
    """
    dest = Path(path)
    try:
        with atomic_path(dest) as tmp:
            torch.save(obj, tmp)
    except (OutputError, RuntimeError) as exc:  # an OutputError's cause is the OSError
        reason = _one_line(exc.__cause__ or exc)
        raise OutputError(f"cannot write checkpoint {dest}: {reason}") from None
    return dest

"""Training checkpoints: model files in the official layouts, and a resumable training state.

Written into the output folder, every file atomically (temporary file + rename):

* ``model_<step:07d>.pth`` / ``model_final.pth``: detectron2 layout ``{"model": sd, "iteration":
  step}`` with ``mask_adapter.*``, ``void_embedding.weight`` and, when CLIP was not loaded from a
  separate open_clip file, ``backbone.clip_model.*`` (docs/architecture.md), so that ``segment
  --adapter-checkpoint`` and ``benchmark`` load it stand-alone (and the official code could too);
* ``model_<step:07d>_demo.pth`` / ``model_final_demo.pth``: the demo layout (adapter tensors
  unprefixed plus ``void_embedding.weight``);
* ``training_state.pth``: adapter, optimiser, scheduler, step, RNG states and config, read by
  ``--resume`` (loaded with ``weights_only=True``);
* ``last_checkpoint``: the name of the newest model file (detectron2's convention).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samadapter.checkpoint import (
    checkpoint_read_error,
    save_checkpoint_atomic,
    to_demo_state_dict,
    to_detectron2_state_dict,
)
from samadapter.errors import CheckpointError
from samadapter.io.atomic import write_bytes_atomic
from samadapter.modeling.mask_adapter import MaskAdapter

STATE_FILE = "training_state.pth"
LAST_FILE = "last_checkpoint"
FINAL_STEM = "model_final"
STATE_FORMAT = 1
_PERIODIC = re.compile(r"^model_(\d{7})\.pth$")


def _cpu(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in sd.items()}


def save_model_files(
    out_dir: Path,
    stem: str,
    adapter: MaskAdapter,
    clip_state: Mapping[str, torch.Tensor] | None,
    step: int,
) -> tuple[Path, Path]:
    """Write ``<stem>.pth`` (detectron2 layout) and ``<stem>_demo.pth`` (demo layout).

    Args:
        out_dir: output folder.
        stem: file stem, e.g. ``model_0001000`` or ``model_final``.
        adapter: the adapter to save.
        clip_state: open_clip state dict stored under ``backbone.clip_model.``, or ``None``.
        step: training iterations done (stored as ``iteration``).

    Returns:
        the two paths.
    """
    head = _cpu(adapter.mask_adapter.state_dict())  # the head's own keys; void: [1, C]
    void = adapter.void_embedding.weight.detach().to("cpu", copy=True)
    clip = _cpu(clip_state) if clip_state is not None else None
    # A MAFT+ adapter keeps its (frozen) cdt, so the files load as MAFT+ ones again.
    cdt = (
        _cpu({f"cdt.{k}": v for k, v in adapter.cdt.state_dict().items()})
        if adapter.cdt is not None
        else None
    )
    d2 = save_checkpoint_atomic(
        {"model": to_detectron2_state_dict(head, void, clip, cdt), "iteration": int(step)},
        out_dir / f"{stem}.pth",
    )
    demo = save_checkpoint_atomic(to_demo_state_dict(head, void, cdt), out_dir / f"{stem}_demo.pth")
    write_bytes_atomic(out_dir / LAST_FILE, f"{stem}.pth".encode())
    return d2, demo


def prune_periodic(out_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` periodic model files (and their demo twins).

    Args:
        out_dir: output folder.
        keep: how many periodic checkpoints to keep (``<= 0`` keeps all).

    Returns:
        the deleted files.
    """
    if keep <= 0:
        return []
    found = sorted(
        (int(m.group(1)), p) for p in out_dir.iterdir() if (m := _PERIODIC.match(p.name))
    )
    deleted = []
    for _, path in found[:-keep]:
        for p in (path, path.with_name(path.stem + "_demo.pth")):
            if p.exists():
                p.unlink()
                deleted.append(p)
    return deleted


def capture_rng() -> dict[str, Any]:
    """The global RNG states (torch CPU, CUDA, numpy, python) as ``weights_only``-safe objects."""
    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }


def restore_rng(state: Mapping[str, Any]) -> None:
    """Restore what :func:`capture_rng` captured."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


def save_training_state(out_dir: Path, state: dict[str, Any]) -> Path:
    """Write the resumable training state atomically to ``out_dir/training_state.pth``."""
    return save_checkpoint_atomic({"format": STATE_FORMAT, **state}, out_dir / STATE_FILE)


def load_training_state(out_dir: Path) -> dict[str, Any]:
    """Read ``out_dir/training_state.pth`` (``weights_only=True``).

    Raises:
        CheckpointError: no state file, or an unreadable / foreign one.
    """
    path = out_dir / STATE_FILE
    if not path.is_file():
        raise CheckpointError(
            f"nothing to resume: no {STATE_FILE} in {out_dir}",
            hint="drop --resume to start a new run, or give the --output "
            "folder of the run to continue",
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on bad files
        raise checkpoint_read_error(
            path,
            exc,
            "training state",
            hint="resume from an intact copy, or start again with a new --output",
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a samadapter training state (format {STATE_FORMAT})")
    return state


__all__ = [
    "FINAL_STEM",
    "LAST_FILE",
    "STATE_FILE",
    "capture_rng",
    "load_training_state",
    "prune_periodic",
    "restore_rng",
    "save_model_files",
    "save_training_state",
]

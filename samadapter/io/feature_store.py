"""On-disk cache of what is expensive per image: SAM's masks and CLIP's dense features.

One ``.npz`` per image (zip-compressed): the raw stride-32 CLIP features as float16, the canvas
geometry, SAM's masks as COCO RLE with their per-mask fields, and a small JSON ``meta`` dict
(models, settings fingerprint). With a MAFT+ adapter also the image's cdt context (float32: the
features MAFT+'s cdt refines the text with, so a relabel's text matches the first run's). With
it, an image can be re-classified with another vocabulary, or used for adapter training, without
running SAM or the CLIP image encoder again.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samadapter.errors import OutputError
from samadapter.io.atomic import atomic_path
from samadapter.modeling.embeddings import ImageFeatures
from samadapter.modeling.mask_generator import Proposals
from samadapter.structures import masks_to_rle, rle_to_masks

FORMAT_VERSION = 1
# What a missing, truncated or tampered .npz raises from np.load / its members.
_READ_ERRORS = (
    OSError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    EOFError,
    zipfile.BadZipFile,
    json.JSONDecodeError,
)


def _read_error(path: Path, err: BaseException) -> OutputError:
    """One line for a cached-feature file that cannot be used."""
    if isinstance(err, FileNotFoundError):
        return OutputError(
            f"cached features {path} are missing", hint="run segment with --cache-features again"
        )
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "pickle" in reason.lower():  # numpy's text suggests loading it unsafely: never relay that
        reason = "not an .npz archive of arrays"
    return OutputError(
        f"cached features {path} are unreadable or corrupt ({reason})",
        hint="delete it and run segment with --cache-features again",
    )


def save_features(
    path: str | Path,
    features: ImageFeatures,
    proposals: Proposals | None,
    meta: dict[str, Any] | None = None,
    embeddings: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write an image's features (and proposals) atomically.

    Args:
        path: target ``.npz`` file.
        features: from :meth:`samadapter.pipeline.Segmenter.image_features`.
        proposals: SAM's masks and fields, or ``None``.
        meta: JSON-serialisable facts to store beside (models, settings).
        embeddings: per classifier (``mask-adapter`` / ``mask-pooling``), the ``[N, C]`` mask
            embeddings of the proposals (float32, so a relabel scores exactly as the first run).

    Returns:
        the path written.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "raw": features.raw.detach().float().cpu().numpy().astype(np.float16),
        "geometry": np.array(
            [*features.resized, *features.canvas, *features.image_size], dtype=np.int64
        ),
        "meta": np.array(json.dumps({"version": FORMAT_VERSION, **(meta or {})})),
    }
    if proposals is not None:
        arrays["rle"] = np.array(json.dumps(masks_to_rle(proposals.masks)))
        arrays["num_masks"] = np.array(len(proposals))
        arrays["predicted_iou"] = proposals.predicted_iou
        arrays["stability_score"] = proposals.stability_score
        arrays["point_coords"] = proposals.point_coords
        arrays["crop_box"] = proposals.crop_box
    for name, emb in (embeddings or {}).items():
        arrays[f"embeddings:{name}"] = np.asarray(emb, dtype=np.float32)
    if features.cdt_context is not None:
        arrays["cdt_context"] = features.cdt_context.detach().float().cpu().numpy()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    return path


def load_features(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[ImageFeatures, Proposals | None, dict[str, Any]]:
    """Read what :func:`save_features` wrote (see :func:`load_embeddings` for embeddings).

    Args:
        path: the ``.npz`` file.
        device: where to put the feature tensor.

    Returns:
        ``(features, proposals or None, meta)``; features are float32 (stored as float16).

    Raises:
        OutputError: the file is missing or unreadable (say which, and to recompute it).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            g = data["geometry"].tolist()
            feats = ImageFeatures(
                raw=torch.from_numpy(data["raw"].astype(np.float32)).to(device),
                resized=(g[0], g[1]),
                canvas=(g[2], g[3]),
                image_size=(g[4], g[5]),
            )
            if "cdt_context" in data.files:
                feats.cdt_context = _context(data, feats.raw.shape).to(device)
            meta = json.loads(str(data["meta"]))
            proposals = _proposals(data, (g[4], g[5]))
    except _READ_ERRORS as e:
        raise _read_error(path, e) from None
    return feats, proposals, meta


def _proposals(data: Any, image_size: tuple[int, int]) -> Proposals | None:
    if "rle" not in data:
        return None
    n = int(data["num_masks"])
    masks = (
        rle_to_masks(json.loads(str(data["rle"]))) if n else np.zeros((0, *image_size), dtype=bool)
    )
    size = (int(image_size[0]), int(image_size[1]))
    original = size if tuple(masks.shape[1:]) != size else None  # kept at a working resolution
    return Proposals(
        masks,
        data["predicted_iou"],
        data["stability_score"],
        data["point_coords"].reshape(n, 2),
        data["crop_box"].reshape(n, 4),
        original_size=original,
    )


def load_proposals(path: str | Path) -> tuple[Proposals | None, dict[str, np.ndarray]]:
    """Only the cached masks and mask embeddings (the dense features are not decompressed).

    Returns:
        ``(proposals or None, {classifier: [N, C] embeddings})``.

    Raises:
        OutputError: the file is missing or unreadable.
    """
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            g = data["geometry"].tolist()
            return _proposals(data, (g[4], g[5])), _embeddings(data)
    except _READ_ERRORS as e:
        raise _read_error(Path(path), e) from None


def _embeddings(data: Any) -> dict[str, np.ndarray]:
    prefix = "embeddings:"
    return {key[len(prefix) :]: data[key] for key in data.files if key.startswith(prefix)}


def _context(data: Any, raw_shape: tuple[int, ...] | torch.Size | None) -> torch.Tensor:
    context = np.asarray(data["cdt_context"])
    ok = context.ndim == 4 and context.shape[0] == 1 and context.dtype == np.float32
    if ok and raw_shape is not None:
        ok = tuple(context.shape[2:]) == tuple(raw_shape[2:])
    if not ok:
        raise ValueError(f"cdt_context has shape {context.shape} and type {context.dtype}")
    return torch.from_numpy(context.copy())


def load_cdt_context(path: str | Path) -> torch.Tensor | None:
    """The cached MAFT+ cdt context ``[1, C, h, w]`` (float32), or None when none was stored
    (the run's adapter was not a MAFT+ one, or the cache predates it).

    Raises:
        OutputError: the file is missing or unreadable, or the array is malformed.
    """
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            return _context(data, None) if "cdt_context" in data.files else None
    except (OSError, ValueError) as e:
        raise OutputError(
            f"cannot read cached features {path}: {e}",
            hint="delete it and run segment with --cache-features again",
        ) from None


def load_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """The cached mask embeddings per classifier (empty when none were stored).

    Raises:
        OutputError: the file is missing or unreadable.
    """
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            return _embeddings(data)
    except _READ_ERRORS as e:
        raise _read_error(Path(path), e) from None

"""Disk cache of vocabulary text embeddings.

Encoding 150 classes x 14 templates costs about a minute on a CPU; the result depends only on the
text model, its weights, the templates and the names, so it is stored once under
``<cache dir>/text/<key>.npy`` and reused by every later run with the same vocabulary.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from samadapter.io.atomic import atomic_path


def text_cache_key(model_id: str, templates: Sequence[str], names: Sequence[str]) -> str:
    """A hex key naming exactly what the embeddings depend on.

    Args:
        model_id: text model name plus a checksum of its weights.
        templates: the prompt templates.
        names: every class name / synonym, in order.
    """
    blob = json.dumps([model_id, list(templates), list(names)], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def load_text_embeddings(
    cache_dir: Path, key: str, rows: int | None = None, dim: int | None = None
) -> torch.Tensor | None:
    """The cached ``[T, C]`` float32 embeddings, or ``None`` when there is no usable entry.

    The cache is a file on disk like any other: an entry that is unreadable, not a 2-D float
    array, of another shape than ``[rows, dim]`` (when given) or holding NaN / inf is treated as
    missing, so the caller recomputes (and overwrites) it.

    Args:
        cache_dir: the cache folder.
        key: the entry's key (:func:`text_cache_key`).
        rows: ``T``, the number of names the entry must cover.
        dim: ``C``, the text model's embedding width.
    """
    path = cache_dir / f"{key}.npy"
    try:
        array = np.load(path, allow_pickle=False)
    except Exception:  # missing, truncated, foreign: all mean "not cached"
        return None
    if (
        not isinstance(array, np.ndarray)
        or array.ndim != 2
        or not np.issubdtype(array.dtype, np.floating)
        or (rows is not None and array.shape[0] != rows)
        or (dim is not None and array.shape[1] != dim)
        or not np.isfinite(array).all()
    ):
        return None
    return torch.from_numpy(array.astype(np.float32, copy=False))


def save_text_embeddings(cache_dir: Path, key: str, embeddings: torch.Tensor) -> None:
    """Store ``[T, C]`` embeddings atomically; a cache that cannot be written is skipped."""
    try:
        with atomic_path(cache_dir / f"{key}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, embeddings.detach().float().cpu().numpy())
    except Exception:
        return


class TextEmbeddingCache:
    """The disk cache for one text model.

    Args:
        directory: where the ``.npy`` files live (e.g. ``~/.cache/samadapter/text``).
        model_id: text model name plus a checksum of its weights.
        dim: the text model's embedding width ``C``; entries of another width are misses.
    """

    def __init__(self, directory: Path, model_id: str, dim: int | None = None) -> None:
        self.directory = Path(directory)
        self.model_id = model_id
        self.dim = dim

    def key(self, templates: Sequence[str], names: Sequence[str]) -> str:
        """The file key of these templates and names."""
        return text_cache_key(self.model_id, templates, names)

    def get(self, templates: Sequence[str], names: Sequence[str]) -> torch.Tensor | None:
        """Cached ``[len(names), C]`` embeddings, or ``None`` on a miss (or a bad entry)."""
        return load_text_embeddings(
            self.directory, self.key(templates, names), len(names), self.dim
        )

    def put(self, templates: Sequence[str], names: Sequence[str], embeddings: torch.Tensor) -> None:
        """Store embeddings (silently skipped when the folder is not writable)."""
        save_text_embeddings(self.directory, self.key(templates, names), embeddings)

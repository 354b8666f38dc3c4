"""Mask PNGs: one binary PNG per class, and a semantic label map PNG.

Semantic PNG format (:func:`write_semantic_png`): pixel value = category id = class index + 1, the
same ids as the COCO JSON's categories, 0 = no mask.

* Up to 255 categories (``len(result.class_names) <= 255``): an 8-bit **paletted** PNG (mode
  ``P``); palette index 0 is black and index ``i`` the overlay colour of category ``i``, so the file
  looks like the overlay's colours in any viewer while its values stay the ids.
* More categories (e.g. LVIS' 1203): a **16-bit grayscale** PNG (values are still the ids; it
  looks black in viewers).

Either way ``np.array(PIL.Image.open(path))`` gives the ids.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from samadapter.errors import OutputError
from samadapter.io.atomic import atomic_path, atomic_write, output_error
from samadapter.io.overlay import class_color
from samadapter.structures import SegmentationResult

MAX_PALETTE_CATEGORIES = 255
"""Most categories a paletted (8-bit) semantic PNG holds; more switch to 16-bit grayscale."""

_MAX_NAME_BYTES = 120
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"com{i}" for i in range(1, 10)}
    | {f"lpt{i}" for i in range(1, 10)}
)
_UNSAFE = re.compile(r"[^\w.\-]+")


def safe_class_filename(name: str, taken: set[str]) -> str:
    """A file-system-safe, unique file stem for a class name.

    Letters and digits (any script), ``.``, ``-`` and ``_`` are kept; whitespace and anything else
    (``/``, ``\\``, ``:``, ``*``...) become ``_`` (runs collapsed); leading / trailing ``._-`` are
    stripped so no hidden or dot-only names arise; Windows device names (``con``, ``nul``...) get a
    trailing ``_``; long names are cut to 120 UTF-8 bytes. A name that is still taken gets ``_2``,
    ``_3``... Names are compared case-insensitively, as on macOS and Windows.

    Args:
        name: class display name, e.g. ``"traffic light"`` -> ``"traffic_light"``, ``"a/b"`` ->
            ``"a_b"``.
        taken: case-folded stems already used; the returned stem is added to it (case-folded).

    Returns:
        The stem, without a suffix.
    """
    stem = unicodedata.normalize("NFC", name)
    stem = _UNSAFE.sub("_", stem)
    stem = re.sub(r"_{2,}", "_", stem).strip("._-")
    stem = _truncate_utf8(stem, _MAX_NAME_BYTES).strip("._-") or "class"
    if stem.casefold() in _WINDOWS_RESERVED:
        stem += "_"
    candidate, k = stem, 2
    while candidate.casefold() in taken:
        candidate = f"{stem}_{k}"
        k += 1
    taken.add(candidate.casefold())
    return candidate


def _truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes without splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def class_union_masks(result: SegmentationResult) -> dict[int, np.ndarray]:
    """Union of each present class's masks, at the masks' (working) resolution.

    Returns:
        ``{class index: [h, w] bool}`` for every class with at least one mask, in class order
        (``result.upsample`` brings one to the image's size).
    """
    unions: dict[int, np.ndarray] = {}
    for c in np.unique(result.class_ids.astype(np.int64)):
        unions[int(c)] = result.masks[result.class_ids == c].any(axis=0)
    return unions


def class_file_names(class_names: Sequence[str]) -> list[str]:
    """The PNG file name of every class: :func:`safe_class_filename` of its name, made unique
    over the **whole** list in class order (``["a/b", "a_b"]`` -> ``["a_b.png",
    "a_b_2.png"]``).

    The names depend only on the vocabulary (plus ``unknown``, which comes last), never on which
    classes an image happens to have, so a class's file is called the same in every image; the
    COCO JSON records it per category (``mask_file``).
    """
    taken: set[str] = set()
    return [f"{safe_class_filename(name, taken)}.png" for name in class_names]


def class_mask_paths(
    result: SegmentationResult, directory: str | os.PathLike[str]
) -> dict[str, Path]:
    """Where :func:`write_class_masks` puts each present class's PNG.

    Returns:
        ``{class name: directory / class_file_names(...)[class]}`` in class order, for the
        classes that have masks.
    """
    folder = Path(directory)
    files = class_file_names(result.class_names)
    return {
        result.class_names[int(c)]: folder / files[int(c)]
        for c in np.unique(result.class_ids.astype(np.int64))
    }


def write_class_masks(
    result: SegmentationResult, directory: str | os.PathLike[str]
) -> dict[str, Path]:
    """Write one binary PNG per class present: the union of that class's masks.

    Files are named by :func:`class_file_names` (``traffic light`` -> ``traffic_light.png``),
    8-bit grayscale (mode ``L``), 255 inside the class's masks and 0 elsewhere, each written
    atomically. Classes without masks get no file. Each union is made at the masks' resolution
    and upsampled to the image's size one class at a time.

    Args:
        result: the named masks (``[N, H, W]``).
        directory: folder to write into (created if missing).

    Returns:
        ``{class name: path}`` in class order.

    Raises:
        OutputError: a file cannot be written.
    """
    paths = class_mask_paths(result, directory)
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(e, directory) from e
    for c, union in class_union_masks(result).items():
        with atomic_path(paths[result.class_names[c]]) as tmp:
            Image.fromarray(result.upsample(union.astype(np.uint8) * np.uint8(255))).save(tmp)
    return paths


def semantic_png_array(result: SegmentationResult) -> np.ndarray:
    """Category id of each pixel: ``result.semantic_map() + 1``, 0 where no mask lies.

    Built at the masks' resolution and upsampled once in its final dtype, so a large image
    costs one or two bytes per pixel here.

    Returns:
        ``[H, W]`` uint8 when there are at most 255 categories (``len(result.class_names)``), else
        uint16.

    Raises:
        OutputError: more than 65535 categories (no PNG holds them).
    """
    n_categories = len(result.class_names)
    if n_categories > 0xFFFF:
        raise OutputError(
            f"{n_categories} classes do not fit a 16-bit semantic PNG",
            hint="use at most 65535 classes, or skip the semantic PNG",
        )
    dtype = np.uint8 if n_categories <= MAX_PALETTE_CATEGORIES else np.uint16
    ids = (result.semantic_map(full_size=False).astype(np.int64) + 1).astype(dtype)
    return result.upsample(ids)


def semantic_palette(class_names: list[str]) -> list[int]:
    """Flat 768-entry RGB palette: index 0 black, index ``i`` the colour of ``class_names[i-1]``.

    Args:
        class_names: at most 255 names.
    """
    palette = [0, 0, 0]
    for name in class_names[:MAX_PALETTE_CATEGORIES]:
        palette.extend(class_color(name))
    palette.extend([0] * (768 - len(palette)))
    return palette


def write_semantic_png(result: SegmentationResult, path: str | os.PathLike[str]) -> Path:
    """Write the semantic label map as a PNG of category ids, atomically.

    Paletted 8-bit for at most 255 categories, else 16-bit grayscale (see the module docstring).

    Args:
        result: the named masks.
        path: destination, normally ``<stem>.semantic.png``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the file cannot be written.
    """
    ids = semantic_png_array(result)
    if ids.dtype == np.uint8:
        img = Image.fromarray(ids)  # mode L
        img.putpalette(semantic_palette(result.class_names))  # -> mode P, values unchanged
    else:
        img = Image.fromarray(ids)  # mode I;16
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))

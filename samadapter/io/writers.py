"""All outputs of one image, written safely.

For an image named ``<stem>`` in ``out_dir`` (a batch passes the file name with its extension,
``photo.jpg``, so ``photo.jpg`` and ``photo.png`` never share an output):

* ``<stem>.overlay.png``: the image with coloured masks, outlines and labels (:mod:`.overlay`);
* ``<stem>.semantic.png``: category id per pixel (:mod:`.masks`);
* ``<stem>.masks/<class>.png``: one binary PNG per class present (:mod:`.masks`);
* ``<stem>.json``: COCO JSON (:mod:`.coco`).

:func:`write_all` checks for existing outputs before writing anything (refusing without
``overwrite``), writes each file atomically, builds the class-PNG folder under a temporary name and
renames it into place, and writes the JSON **last**: when ``<stem>.json`` exists, the other outputs
of that image are complete, so an interrupted batch can be resumed by skipping images whose JSON
exists. On overwrite, the old JSON is deleted first so that marker never vouches for a mix of old
and new files.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from samadapter.errors import ConfigError, OutputError
from samadapter.io.atomic import atomic_path, output_error, write_json_atomic
from samadapter.io.coco import to_coco
from samadapter.io.masks import class_mask_paths, write_class_masks, write_semantic_png
from samadapter.io.overlay import render_overlay
from samadapter.io.per_mask import PER_MASK_DIR, write_per_mask_pngs
from samadapter.structures import SegmentationResult

FORMATS: tuple[str, ...] = ("overlay", "semantic", "masks", "coco")
"""Output formats :func:`write_all` knows, in the order it writes them (``coco`` last)."""

FORMAT_KEYS: dict[str, str] = {
    "overlay": "overlay",
    "semantic": "semantic",
    "masks": "masks_dir",
    "coco": "coco",
}
"""Format name -> key of :func:`output_paths`."""


def output_paths(
    out_dir: str | os.PathLike[str], stem: str, result: SegmentationResult | None = None
) -> dict[str, Path]:
    """Where the outputs of one image go.

    Args:
        out_dir: output folder.
        stem: the name the outputs are built from; a batch passes the image's whole file name
            (``"IMG_0001.jpg"``), so images differing only in their extension never collide.
        result: if given, the class PNGs' paths are added as ``"mask:<class name>"`` keys.

    Returns:
        ``{"overlay": <stem>.overlay.png, "coco": <stem>.json, "semantic": <stem>.semantic.png,
        "masks_dir": <stem>.masks/}`` under ``out_dir`` (plus the ``mask:`` keys).

    Raises:
        ValueError: ``stem`` is empty, ``.``/``..`` or contains a path separator.
    """
    if (
        not stem
        or stem in (".", "..")
        or "/" in stem
        or (os.altsep and os.altsep in stem)
        or os.sep in stem
    ):
        raise ValueError(f"output stem must be a plain file name, got {stem!r}")
    folder = Path(out_dir)
    paths = {
        "overlay": folder / f"{stem}.overlay.png",
        "coco": folder / f"{stem}.json",
        "semantic": folder / f"{stem}.semantic.png",
        "masks_dir": folder / f"{stem}.masks",
    }
    if result is not None:
        for name, path in class_mask_paths(result, paths["masks_dir"]).items():
            paths[f"mask:{name}"] = path
    return paths


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """Validate format names; returns them de-duplicated in :data:`FORMATS` order.

    Raises:
        ConfigError: an unknown format name, or none at all.
    """
    wanted = [f.strip().lower() for f in formats]
    unknown = sorted(set(wanted) - set(FORMATS))
    if unknown:
        raise ConfigError(
            f"unknown output format(s): {', '.join(unknown)}",
            hint=f"choose from {', '.join(FORMATS)}",
        )
    if not wanted:
        raise ConfigError("no output format chosen", hint=f"choose from {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in wanted)


def write_all(
    image: np.ndarray,
    result: SegmentationResult,
    out_dir: str | os.PathLike[str],
    stem: str,
    overwrite: bool = False,
    formats: Iterable[str] = FORMATS,
    *,
    alpha: float = 0.5,
    image_id: int = 1,
    file_name: str | None = None,
    replace_incomplete: bool = False,
    info: Mapping[str, Any] | None = None,
    per_mask: bool = False,
) -> dict[str, Path]:
    """Write the chosen outputs of one image (see the module docstring for names and order).

    Nothing is written when an output exists and ``overwrite`` is false, or when the inputs are
    inconsistent (the overlay and COCO dict are built in memory first).

    Args:
        image: ``[H, W, 3]`` uint8 RGB, the image the result was computed on.
        result: the named masks (``[N, H, W]``).
        out_dir: output folder (created if missing).
        stem: output file stem, normally the image's name without suffix.
        overwrite: replace existing outputs.
        formats: subset of :data:`FORMATS`.
        alpha: overlay mask opacity.
        image_id: COCO image id.
        file_name: COCO ``file_name``; defaults to ``result.file_name``.
        replace_incomplete: when ``coco`` is among ``formats`` and ``<stem>.json`` does not exist,
            treat existing other outputs as left over by an interrupted write and replace them
            (for resuming a batch); the JSON itself is never replaced without ``overwrite``.
        info: extra entries for the COCO JSON's ``info`` (see :func:`~samadapter.io.coco.to_coco`).
        per_mask: with ``masks``, also one PNG per mask and a ``metadata.csv`` in
            ``<stem>.masks/per-mask/`` (segment-anything amg.py's layout, :mod:`.per_mask`).

    Returns:
        ``{output_paths key: path}`` of the outputs written.

    Raises:
        OutputError: an output exists and ``overwrite`` is false (hint ``--overwrite``), or a file
            cannot be written (disk full, permissions).
        ConfigError: an unknown format.
        ValueError: ``image`` does not match the result's size.
    """
    chosen = check_formats(formats)
    paths = output_paths(out_dir, stem)
    targets = {f: paths[FORMAT_KEYS[f]] for f in chosen}
    existing = [p for p in targets.values() if os.path.lexists(p)]
    if replace_incomplete and "coco" in chosen and not os.path.lexists(targets["coco"]):
        existing = []  # no completeness marker: the others are an interrupted write's leftovers
    if existing and not overwrite:
        more = f" and {len(existing) - 1} other output(s)" if len(existing) > 1 else ""
        raise OutputError(
            f"{existing[0]}{more} already exist(s)",
            hint="pass --overwrite to replace them, or choose another --output",
        )

    overlay = render_overlay(image, result, alpha) if "overlay" in chosen else None
    coco = (
        to_coco(result, image_id=image_id, file_name=file_name, info=info)
        if "coco" in chosen
        else None
    )

    if "masks" in chosen:
        _check_replaceable(targets["masks"])  # refused before anything of this image changes
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if coco is not None and os.path.lexists(targets["coco"]):
            targets["coco"].unlink()  # the completeness marker goes first
    except OSError as e:
        raise output_error(e, targets.get("coco", folder)) from e

    written: dict[str, Path] = {}
    if overlay is not None:
        with atomic_path(targets["overlay"]) as tmp:
            Image.fromarray(overlay).save(tmp, compress_level=1)  # photos: speed over size
        written["overlay"] = targets["overlay"]
    if "semantic" in chosen:
        written["semantic"] = write_semantic_png(result, targets["semantic"])
    if "masks" in chosen:

        def build_masks(tmp: Path) -> None:
            write_class_masks(result, tmp)
            if per_mask:
                write_per_mask_pngs(result, tmp / PER_MASK_DIR)

        replace_dir_atomic(targets["masks"], build_masks)
        written["masks_dir"] = targets["masks"]
    if coco is not None:
        written["coco"] = write_json_atomic(targets["coco"], coco)
    return written


def replace_dir_atomic(final: str | os.PathLike[str], build: Callable[[Path], Any]) -> Path:
    """Build a folder under a temporary name, then move it to ``final``.

    ``build(tmp)`` fills ``<parent>/.<name>.tmp-<hex>``. An existing ``final`` is renamed aside
    (``.<name>.old-<hex>``), the new folder renamed into place, then the old one deleted; if the
    rename fails, the old one is put back. An existing ``final`` that is a symbolic link, a file,
    or a folder holding sub-folders (so not a folder of masks this module wrote) is refused
    before anything is built, never deleted. Readers see the old or the new folder, never a partial
    one (except for the instant between the two renames, when there is none).

    Args:
        final: the folder's final path.
        build: writes the folder's content into the path it is given (which exists, empty).

    Returns:
        ``final`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the folder cannot be written or moved; the temporary folder is removed.
    """
    target = Path(final)
    _check_replaceable(target)
    tmp = _make_temp_dir(target)
    old: Path | None = None
    try:
        build(tmp)
        if os.path.lexists(target):
            old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            if old is not None:
                os.replace(old, target)
                old = None
            raise
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise output_error(e, target) from e
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                old.unlink()
    return target


def _check_replaceable(target: Path) -> None:
    """Raise :class:`OutputError` unless ``target`` is missing or a folder of files, with at most
    a folder of files named :data:`~samadapter.io.per_mask.PER_MASK_DIR` (what we write)."""
    if not os.path.lexists(target):
        return

    def files_only(folder: Path, allowed: tuple[str, ...]) -> bool:
        if not folder.is_dir() or folder.is_symlink():
            return False
        with os.scandir(folder) as entries:
            return all(
                not e.is_dir(follow_symlinks=False)
                or (e.name in allowed and files_only(Path(e.path), ()))
                for e in entries
            )

    try:
        flat = files_only(target, (PER_MASK_DIR,))
    except OSError as e:
        raise output_error(e, target) from e
    if not flat:
        raise OutputError(
            f"{target} exists and is not a folder of masks samadapter wrote; it is left as it is",
            hint="move it away or choose another --output",
        )


def _make_temp_dir(target: Path) -> Path:
    """Create an empty hidden folder next to ``target`` (mode from the umask)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            tmp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
            try:
                tmp.mkdir()
            except FileExistsError:
                continue
            return tmp
        raise FileExistsError(f"could not create a unique temporary folder next to {target}")
    except OSError as e:
        raise output_error(e, target) from e

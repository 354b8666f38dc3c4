"""Ultralytics YOLO segmentation labels: one ``.txt`` per image plus a ``data.yaml``.

Layout (what Ultralytics resolves): the image ``yolo/images/<rel>.<ext>`` has its labels in
``yolo/labels/<rel>.txt``. Ultralytics finds a label file by replacing the **last** ``/images/`` of
the image's path with ``/labels/``, so ``<rel>`` must not contain a folder called ``images``
itself (an input tree ``ds/images/train/p1.jpg`` would send the labels to a folder Ultralytics
never looks in): :func:`yolo_rel` renames such folders to ``_images``. The images are not copied
unless asked (``--yolo-copy-images``: hard links where the file system allows, else copies);
``data.yaml`` says where each goes.

Label file: one line per object, ``class x1 y1 x2 y2 ...`` with ``class`` the 0-based index into
``names`` and the polygon vertices normalised by the image width / height (6 decimals). Outlines
run a quarter pixel inside the pixel edges (:mod:`samadapter.io.polygons`), so Ultralytics'
``polygon2mask`` (truncate, fill with the boundary) gives back exactly a mask with one part and no
hole. Holes are cut in by zero-width bridges through the mask's own pixels. A mask with several
parts is one line (its parts bridged, Ultralytics' own convention) when the bridges cost little
under Ultralytics' fill (IoU with the mask at least :data:`JOIN_MIN_IOU`), otherwise one line per
part: a bridge between distant parts is painted as a one-pixel line across the background. Every
line (or a mask's lines together) therefore rasterises back under ``polygon2mask`` at IoU >= 0.98
when the holes' bridges cross no other hole, which is the measured and tested bound.

An image without masks gets an empty file (a background image for Ultralytics).

``data.yaml`` holds ``names`` (``{index: name}`` in class-id order, ``unknown`` included when
kept), ``nc`` and the ``train`` / ``val`` image folders relative to the YAML file. Names are YAML
double-quoted scalars (:func:`~samadapter.io.safe_text.yaml_quote`): every character survives.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from samadapter.errors import ConfigError
from samadapter.io.atomic import write_bytes_atomic
from samadapter.io.polygons import (
    bridge,
    mask_iou,
    mask_to_polygons,
    polygons_to_mask,
    truncating_fill,
)
from samadapter.io.safe_text import yaml_quote, yaml_unquote
from samadapter.structures import SegmentationResult

DECIMALS = 6
"""Decimals of the normalised coordinates (1e-6 of the side: well below a pixel)."""


JOIN_MIN_IOU = 0.98
"""A multi-part mask is one line when its joined polygon fills back at least this IoU."""


def yolo_rel(rel: PurePosixPath | str) -> PurePosixPath:
    """An output path with every ``images`` folder renamed ``_images`` (see the module docs).

    ``ds/images/train/p1`` -> ``ds/_images/train/p1``: below ``yolo/images/`` the last
    ``/images/`` is then always the dataset's own, as Ultralytics needs.
    """
    parts = PurePosixPath(rel).parts
    return PurePosixPath(*[("_images" if p == "images" else p) for p in parts[:-1]], parts[-1])


def mask_rings(
    mask: np.ndarray, join_parts: bool | None = None, tolerance: float = 0.0
) -> list[np.ndarray]:
    """The polygons of one mask as YOLO lines: one joined ring, or one ring per part.

    Args:
        mask: ``[H, W]`` bool.
        join_parts: ``True`` always joins the parts, ``False`` never; ``None`` (default) joins them
            when the joined ring filled by Ultralytics' rule keeps IoU >= :data:`JOIN_MIN_IOU`.
        tolerance: polygon simplification in pixels.

    Returns:
        ``[P, 2]`` pixel-coordinate rings (holes bridged in); ``[]`` for an empty mask.
    """
    rings = mask_to_polygons(mask, tolerance=tolerance)
    if len(rings) <= 1 or join_parts is False:
        return rings
    joined = rings[0]
    for ring in rings[1:]:
        joined = bridge(joined, ring)
    if join_parts:
        return [joined]
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    filled = truncating_fill([joined - np.array([x0, y0])], int(y1 - y0), int(x1 - x0))
    return [joined] if mask_iou(filled, mask[y0:y1, x0:x1]) >= JOIN_MIN_IOU else rings


def yolo_lines(
    result: SegmentationResult, tolerance: float = 0.0, join_parts: bool | None = None
) -> list[str]:
    """The label lines of one image.

    Args:
        result: the named masks (``[N, H, W]``).
        tolerance: polygon simplification in pixels (0: exact outline).
        join_parts: see :func:`mask_rings` (default: join when cheap).

    Returns:
        One ``"class x1 y1 ..."`` line per non-empty mask (or part), in mask order (no newline).
    """
    h, w = result.image_size
    scale = np.array([w, h], dtype=np.float64)
    lines = []
    for mask, class_id in zip(result.iter_full_masks(), result.class_ids, strict=True):
        for polygon in mask_rings(mask, join_parts, tolerance):
            xy = np.clip(polygon / scale, 0.0, 1.0).reshape(-1)
            coords = " ".join(f"{v:.{DECIMALS}f}" for v in xy)
            lines.append(f"{int(class_id)} {coords}")
    return lines


def write_yolo_labels(
    result: SegmentationResult,
    path: str | os.PathLike[str],
    tolerance: float = 0.0,
    join_parts: bool | None = None,
) -> Path:
    """Write the label file of one image atomically (empty when there are no masks).

    Args:
        result: the named masks.
        path: destination, normally ``<out>/labels/<stem>.txt``.
        tolerance: polygon simplification in pixels.
        join_parts: see :func:`yolo_lines`.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the file cannot be written.
    """
    lines = yolo_lines(result, tolerance, join_parts)
    text = "".join(line + "\n" for line in lines)
    return write_bytes_atomic(path, text.encode("utf-8"))


def yolo_data_yaml(
    class_names: Sequence[str],
    train: str = "images",
    val: str = "images",
    comments: Sequence[str] = (),
) -> str:
    """Text of an Ultralytics ``data.yaml`` for these classes.

    Args:
        class_names: names in class-index order.
        train: training image folder, relative to the YAML file.
        val: validation image folder, relative to the YAML file.
        comments: extra ``#`` comment lines (how to place the images), without the ``#``.
    """
    out = [
        "# Ultralytics YOLO segmentation dataset written by samadapter.",
        "# Labels are in labels/<path>.txt for the image images/<path>.<ext>.",
        *(f"# {line}" for line in comments),
        f"train: {yaml_quote(train)}",
        f"val: {yaml_quote(val)}",
        f"nc: {len(class_names)}",
        "names:",
    ]
    out += [f"  {i}: {yaml_quote(name)}" for i, name in enumerate(class_names)]
    return "\n".join(out) + "\n"


def write_yolo_data_yaml(
    path: str | os.PathLike[str],
    class_names: Sequence[str],
    train: str = "images",
    val: str = "images",
    comments: Sequence[str] = (),
) -> Path:
    """Write :func:`yolo_data_yaml` atomically; returns ``path``.

    Raises:
        OutputError: the file cannot be written.
    """
    text = yolo_data_yaml(class_names, train, val, comments)
    return write_bytes_atomic(path, text.encode("utf-8"))


def read_yolo_labels(
    path: str | os.PathLike[str], height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read a YOLO segmentation label file back into masks.

    Each line's polygon is filled with the centre rule (:func:`polygons_to_mask`).

    Args:
        path: the ``.txt`` file.
        height: ``H`` of the image.
        width: ``W`` of the image.

    Returns:
        ``(class_ids [N] int64, masks [N, H, W] bool)``.

    Raises:
        ConfigError: a line that is not ``class`` followed by at least three ``x y`` pairs.
    """
    ids: list[int] = []
    masks: list[np.ndarray] = []
    scale = np.array([width, height], dtype=np.float64)
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 7 or len(fields) % 2 == 0:
            raise ConfigError(f"{path}:{number}: expected 'class x1 y1 x2 y2 x3 y3 ...'")
        try:
            class_id = int(fields[0])
            xy = np.array([float(v) for v in fields[1:]], dtype=np.float64).reshape(-1, 2)
        except ValueError:
            raise ConfigError(f"{path}:{number}: not a number in {line[:60]!r}") from None
        ids.append(class_id)
        masks.append(polygons_to_mask([xy * scale], height, width))
    stacked = np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
    return np.array(ids, dtype=np.int64), stacked


_NAME_LINE = re.compile(r"^\s+(\d+)\s*:\s*(.+?)\s*$")


def read_yolo_names(path: str | os.PathLike[str]) -> list[str]:
    """Class names of a ``data.yaml`` written by :func:`write_yolo_data_yaml`.

    Reads the ``names:`` mapping (``index: name`` lines, names plain or YAML double-quoted); for
    any other YAML use a YAML parser.

    Raises:
        ConfigError: no ``names:`` block, or indices that are not ``0..K-1``.
    """
    names: dict[int, str] = {}
    in_names = False
    for line in Path(path).read_text(encoding="utf-8").split("\n"):
        if line.startswith("names:"):
            in_names = True
            continue
        if in_names:
            match = _NAME_LINE.match(line)
            if not match:
                break
            raw = match.group(2)
            try:
                names[int(match.group(1))] = yaml_unquote(raw) if raw.startswith('"') else raw
            except ValueError as e:
                raise ConfigError(f"{path}: {e}") from None
    if not in_names or sorted(names) != list(range(len(names))):
        raise ConfigError(f"{path} has no 'names:' block with indices 0..K-1")
    return [names[i] for i in range(len(names))]

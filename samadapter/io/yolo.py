"""Ultralytics YOLO segmentation labels: one ``.txt`` per image plus a ``data.yaml``.

Label file (``labels/<stem>.txt`` beside ``images/<stem>.jpg`` in an Ultralytics dataset): one line
per mask, ``class x1 y1 x2 y2 ...`` with ``class`` the 0-based index into ``names`` and the polygon
vertices normalised by the image width / height (6 decimals). One line is one object, so a mask
with several parts or holes is written as **one** polygon whose parts and holes are joined by
zero-width bridges (:func:`samadapter.io.polygons.mask_to_polygons` with ``join_parts=True``; the
same convention as Ultralytics' own COCO converter). Outlines run a quarter pixel inside the pixel
edges, so Ultralytics' ``polygon2mask`` (truncate, fill with the boundary) gives back exactly a
mask with one part and no hole. For the others it also paints each bridge as a line one pixel wide:
a hole's bridge runs through the mask's own pixels (nothing added, except where it crosses another
hole), but a bridge between two parts crosses the background between them. ``join_parts=False``
writes one line per part instead (no bridge lines, but each part becomes an object of its own).

An image without masks gets an empty file (a background image for Ultralytics).

``data.yaml`` holds ``names`` (``{index: name}`` in ``result.class_names`` order, ``unknown``
included when the result has it), ``nc`` and the ``train`` / ``val`` image folders relative to the
YAML file. Names are written as JSON strings, which YAML reads as-is.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from samadapter.errors import ConfigError
from samadapter.io.atomic import write_bytes_atomic
from samadapter.io.polygons import mask_to_polygons, polygons_to_mask
from samadapter.structures import SegmentationResult

DECIMALS = 6
"""Decimals of the normalised coordinates (1e-6 of the side: well below a pixel)."""


def yolo_lines(result: SegmentationResult, tolerance: float = 0.0, join_parts: bool = True
               ) -> list[str]:
    """The label lines of one image.

    Args:
        result: the named masks (``[N, H, W]``).
        tolerance: polygon simplification in pixels (0: exact outline).
        join_parts: one line per mask, its parts bridged (default); else one line per part.

    Returns:
        One ``"class x1 y1 ..."`` line per non-empty mask (or part), in mask order (no newline).
    """
    h, w = result.image_size
    scale = np.array([w, h], dtype=np.float64)
    lines = []
    for mask, class_id in zip(result.iter_full_masks(), result.class_ids, strict=True):
        for polygon in mask_to_polygons(mask, join_parts=join_parts, tolerance=tolerance):
            xy = np.clip(polygon / scale, 0.0, 1.0).reshape(-1)
            coords = " ".join(f"{v:.{DECIMALS}f}" for v in xy)
            lines.append(f"{int(class_id)} {coords}")
    return lines


def write_yolo_labels(result: SegmentationResult, path: str | os.PathLike[str],
                      tolerance: float = 0.0, join_parts: bool = True) -> Path:
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


def yolo_data_yaml(class_names: Sequence[str], train: str = "images", val: str = "images") -> str:
    """Text of an Ultralytics ``data.yaml`` for these classes.

    Args:
        class_names: names in class-index order.
        train: training image folder, relative to the YAML file.
        val: validation image folder, relative to the YAML file.
    """
    out = ["# Ultralytics YOLO segmentation dataset written by samadapter.",
           "# Images go in the folders below, label files in labels/ beside images/.",
           f"train: {json.dumps(train)}", f"val: {json.dumps(val)}",
           f"nc: {len(class_names)}", "names:"]
    out += [f"  {i}: {json.dumps(name, ensure_ascii=False)}" for i, name in enumerate(class_names)]
    return "\n".join(out) + "\n"


def write_yolo_data_yaml(path: str | os.PathLike[str], class_names: Sequence[str],
                         train: str = "images", val: str = "images") -> Path:
    """Write :func:`yolo_data_yaml` atomically; returns ``path``.

    Raises:
        OutputError: the file cannot be written.
    """
    return write_bytes_atomic(path, yolo_data_yaml(class_names, train, val).encode("utf-8"))


def read_yolo_labels(path: str | os.PathLike[str], height: int, width: int
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

    Reads the ``names:`` mapping (``index: name`` lines, names plain or JSON-quoted); for any other
    YAML use a YAML parser.

    Raises:
        ConfigError: no ``names:`` block, or indices that are not ``0..K-1``.
    """
    names: dict[int, str] = {}
    in_names = False
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("names:"):
            in_names = True
            continue
        if in_names:
            match = _NAME_LINE.match(line)
            if not match:
                break
            raw = match.group(2)
            names[int(match.group(1))] = json.loads(raw) if raw.startswith('"') else raw
    if not in_names or sorted(names) != list(range(len(names))):
        raise ConfigError(f"{path} has no 'names:' block with indices 0..K-1")
    return [names[i] for i in range(len(names))]

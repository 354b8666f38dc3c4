"""One PNG per mask plus a ``metadata.csv``, the layout of segment-anything's ``scripts/amg.py``.

``segment --per-mask-png`` writes, for an image with stem ``<stem>``, the folder
``<stem>.masks/per-mask/`` beside the per-class PNGs of ``<stem>.masks/``:

* ``<i>.png`` for ``i = 0..N-1``, in the order of the image's COCO annotations (annotation id
  ``i + 1``): 8-bit grayscale, 255 inside mask ``i`` and 0 elsewhere;
* ``metadata.csv``: one row per mask with amg.py's columns ``id, area, bbox_x0, bbox_y0, bbox_w,
  bbox_h, point_input_x, point_input_y, predicted_iou, stability_score, crop_box_x0,
  crop_box_y0, crop_box_w, crop_box_h``, then samadapter's ``class`` and ``score``.

The bounding box is the tight box in the COCO convention of the JSON (``bbox_w`` counts the
pixel columns; SAM's own records give one less). SAM's fields are ``nan`` for masks that did
not come from SAM (``classify``). The folder can be fed back as ``classify --masks``.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from samadapter.io.atomic import output_error, write_bytes_atomic
from samadapter.structures import SegmentationResult

PER_MASK_DIR = "per-mask"
"""Name of the per-mask folder inside an image's class-mask folder."""
METADATA_FILE = "metadata.csv"
METADATA_COLUMNS = (
    "id",
    "area",
    "bbox_x0",
    "bbox_y0",
    "bbox_w",
    "bbox_h",
    "point_input_x",
    "point_input_y",
    "predicted_iou",
    "stability_score",
    "crop_box_x0",
    "crop_box_y0",
    "crop_box_w",
    "crop_box_h",
    "class",
    "score",
)
"""amg.py's metadata columns, then the class name and its score."""


def _number(value: float) -> str:
    value = float(value)
    if not np.isfinite(value):
        return "nan"
    return str(int(value)) if value.is_integer() else repr(value)


def metadata_rows(result: SegmentationResult) -> list[list[str]]:
    """The rows of ``metadata.csv`` (without the header), one per mask, in result order."""
    boxes = result.boxes_xywh
    areas = result.areas
    labels = result.labels
    rows = []
    for i in range(len(result)):
        rows.append(
            [
                str(i),
                str(int(areas[i])),
                *(_number(v) for v in boxes[i]),
                *(_number(v) for v in result.point_coords[i]),
                _number(result.predicted_iou[i]),
                _number(result.stability_score[i]),
                *(_number(v) for v in result.crop_box[i]),
                labels[i],
                _number(result.scores[i]),
            ]
        )
    return rows


def write_per_mask_pngs(
    result: SegmentationResult, directory: str | os.PathLike[str]
) -> list[Path]:
    """Write ``<i>.png`` per mask and ``metadata.csv`` into ``directory`` (see the module doc).

    Args:
        result: the named masks (written at the image's size, upsampled one at a time when they
            are held at a working resolution).
        directory: the folder (created if missing), normally ``<stem>.masks/per-mask`` being
            built.

    Returns:
        the ``N`` PNG paths, in mask order.

    Raises:
        OutputError: a file cannot be written.
    """
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(len(result)):
            path = folder / f"{i}.png"
            mask = result.full_mask(i)  # at the image's size, one mask at a time
            Image.fromarray(mask.astype(np.uint8) * np.uint8(255)).save(path)
            paths.append(path)
    except OSError as e:
        raise output_error(e, folder) from e
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(METADATA_COLUMNS)
    writer.writerows(metadata_rows(result))
    write_bytes_atomic(folder / METADATA_FILE, text.getvalue().encode("utf-8"))
    return paths

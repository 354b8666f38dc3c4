"""COCO JSON of one image's result, loadable with ``pycocotools.coco.COCO``.

The file is a COCO *dataset* dict (``info``, ``images``, ``categories``, ``annotations``), so it can
be opened as ground truth, and its ``annotations`` list is also a valid results list for
``COCO.loadRes``. Each annotation carries the SAM fields of ``segment_anything``'s automatic mask
generator (``predicted_iou``, ``stability_score``, ``point_coords`` as ``[[x, y]]``, ``crop_box``
XYWH) besides the COCO ones. Values that are NaN (masks not from SAM) are written as ``null``.

Category ids are ``class index + 1`` (``1..K`` in vocabulary order, ``K + 1`` for ``unknown`` when
the result has it), the same values as the semantic PNG's pixels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from samadapter import __version__
from samadapter.io.atomic import write_json_atomic
from samadapter.structures import UNKNOWN_NAME, SegmentationResult

SUPERCATEGORY = "object"
"""``supercategory`` of the vocabulary's categories (the vocabularies have no hierarchy)."""


def _finite_or_none(value: Any) -> float | None:
    """``float(value)``, or ``None`` when it is NaN / inf."""
    f = float(value)
    return f if np.isfinite(f) else None


def _floats_or_none(values: np.ndarray) -> list[float] | None:
    """A list of floats, or ``None`` when any of them is NaN / inf."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return [float(v) for v in arr] if np.isfinite(arr).all() else None


def coco_categories(result: SegmentationResult) -> list[dict[str, Any]]:
    """COCO ``categories``: one per entry of ``result.class_names``, ids from 1.

    Returns:
        ``[{"id", "name", "synonyms", "supercategory", "mask_file"}, ...]``; ``unknown`` (when
        present) has no synonyms and supercategory ``"unknown"``. ``mask_file`` is the name of
        the class's binary PNG in the image's masks folder (written when the image has masks of
        the class); it depends only on the vocabulary, so it is the same in every image.
    """
    from samadapter.io.masks import class_file_names

    files = class_file_names(result.class_names)
    categories = []
    for index, name in enumerate(result.class_names):
        is_vocab = index < result.num_classes
        synonyms = list(result.synonyms[index]) if is_vocab else []
        supercategory = UNKNOWN_NAME if name == UNKNOWN_NAME and not is_vocab else SUPERCATEGORY
        categories.append(
            {
                "id": index + 1,
                "name": name,
                "synonyms": synonyms,
                "supercategory": supercategory,
                "mask_file": files[index],
            }
        )
    return categories


def coco_annotations(result: SegmentationResult, image_id: int = 1) -> list[dict[str, Any]]:
    """COCO ``annotations`` of a result, ids ``1..N`` in mask order.

    Each has ``id``, ``image_id``, ``category_id`` (class index + 1), ``segmentation`` (RLE, counts
    as str), ``area`` (int pixels), ``bbox`` (XYWH floats), ``score``, ``predicted_iou``,
    ``stability_score``, ``point_coords`` (``[[x, y]]``), ``crop_box`` (XYWH) and ``iscrowd: 0``.
    """
    rles = result.rles()  # one full-size mask at a time
    areas = result.areas
    boxes = result.boxes_xywh
    annotations = []
    for i in range(len(result)):
        point = _floats_or_none(result.point_coords[i])
        annotations.append(
            {
                "id": i + 1,
                "image_id": int(image_id),
                "category_id": int(result.class_ids[i]) + 1,
                "segmentation": rles[i],
                "area": int(areas[i]),
                "bbox": [float(v) for v in boxes[i]],
                "score": _finite_or_none(result.scores[i]),
                "predicted_iou": _finite_or_none(result.predicted_iou[i]),
                "stability_score": _finite_or_none(result.stability_score[i]),
                "point_coords": [point] if point is not None else None,
                "crop_box": _floats_or_none(result.crop_box[i]),
                "iscrowd": 0,
            }
        )
    return annotations


def to_coco(
    result: SegmentationResult,
    image_id: int = 1,
    file_name: str | None = None,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A COCO dataset dict of one image's result.

    Args:
        result: the named masks (at the image's size or a working resolution; the JSON is at
            the image's size).
        image_id: the ``images`` entry's id, used by every annotation.
        file_name: the image's file name for the ``images`` entry; defaults to
            ``result.file_name``.
        info: extra JSON-able entries for the ``info`` dict (e.g. the run's settings
            fingerprint, which lets a rerun recognise finished images).

    Returns:
        ``{"info", "licenses", "images", "categories", "annotations"}`` with only JSON types
        (no numpy), ready for :func:`json.dump`. Deterministic (no timestamps), so reruns diff
        cleanly.
    """
    h, w = result.image_size
    return {
        "info": {
            "description": "samadapter open-vocabulary segmentation",
            "version": __version__,
            **(info or {}),
        },
        "licenses": [],
        "images": [
            {
                "id": int(image_id),
                "file_name": result.file_name if file_name is None else file_name,
                "width": w,
                "height": h,
            }
        ],
        "categories": coco_categories(result),
        "annotations": coco_annotations(result, image_id),
    }


def write_coco(result: SegmentationResult, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Write :func:`to_coco` as compact JSON, atomically.

    Args:
        result: the named masks.
        path: destination, normally ``<stem>.json``.
        **kwargs: passed to :func:`to_coco` (``image_id``, ``file_name``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the file cannot be written.
    """
    return write_json_atomic(path, to_coco(result, **kwargs))

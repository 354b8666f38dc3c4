"""Label Studio pre-annotations: tasks whose ``predictions`` hold polygon regions.

Import the JSON file into a Label Studio project whose labeling config is
:func:`labelstudio_config` (an ``Image`` named ``image`` and ``PolygonLabels`` named ``label``):
each task shows the image with one polygon region per mask part, listed as a prediction of model
``model_version`` that annotators can accept or edit.

Per task::

    {"data": {"image": IMAGE_URL},
     "predictions": [{"model_version": "samadapter-0.1.0", "score": MEAN_SCORE,
                      "result": [{"id": "m0", "type": "polygonlabels",
                                  "from_name": "label", "to_name": "image",
                                  "original_width": W, "original_height": H, "image_rotation": 0,
                                  "value": {"points": [[x%, y%], ...], "closed": true,
                                            "polygonlabels": ["sofa"]},
                                  "score": 0.91}, ...]}]}

Points are percentages of the image width / height. Label Studio polygons have no holes: holes
are cut in by zero-width bridges (:mod:`samadapter.io.polygons`). A mask with several parts gives
one region per part, ids ``m<mask>p<part>`` (``m<mask>`` for single-part masks), each with the
mask's label and score; :func:`labelstudio_masks` joins them back by that id.

``IMAGE_URL`` is what Label Studio loads the image from. :func:`labelstudio_url` builds it from
the image's path relative to the folder Label Studio serves, percent-encoded (``my photo
ü#1.jpg`` -> ``my%20photo%20%C3%BC%231.jpg``: a bare ``#`` would start a URL fragment) and
appended to a root: by default ``/data/local-files/?d=`` (Label Studio's local-files storage, with
``LOCAL_FILES_SERVING_ENABLED=true`` and ``LOCAL_FILES_DOCUMENT_ROOT`` set to that folder, as Label
Studio's own converters assume), or any URL prefix (``https://host/photos/``, ``s3://bucket/``).

Class names pass through :func:`~samadapter.io.safe_text.xml_safe` in the config **and** in the
regions (characters XML cannot hold become visible ``\\xNN`` escapes), so the two always match.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np

from samadapter import __version__
from samadapter.errors import ConfigError
from samadapter.io.atomic import write_json_atomic
from samadapter.io.overlay import class_color
from samadapter.io.polygons import mask_to_polygons, polygons_to_mask
from samadapter.io.safe_text import xml_safe
from samadapter.structures import SegmentationResult

MODEL_VERSION = f"samadapter-{__version__}"
"""Default ``model_version`` of the predictions."""

DECIMALS = 4
"""Decimals of the percent coordinates (1e-4 % of the side: well below a pixel)."""

LOCAL_FILES_ROOT = "/data/local-files/?d="
"""Default URL root: Label Studio's local-files storage (what its own converters write)."""

_REGION_ID = re.compile(r"^m(\d+)(?:p\d+)?$")


def labelstudio_url(path: str, root: str = LOCAL_FILES_ROOT) -> str:
    """The URL Label Studio loads an image from: ``root`` + the percent-encoded ``path``.

    Args:
        path: the image's path relative to the folder that ``root`` serves, ``/``-separated.
        root: ``/data/local-files/?d=`` (default; a ``?d=`` root may already name a sub-folder,
            ``/data/local-files/?d=photos``), or a URL prefix such as ``https://host/images`` or
            ``s3://bucket/images/``.

    Returns:
        The URL. Every character but letters, digits, ``/`` and ``_.-~`` of ``path`` is
        percent-encoded (UTF-8), so ``#``, ``?``, ``&``, ``%``, ``+`` and spaces stay part of the
        name. A root ending in ``=`` is followed directly by the path, any other is joined to it
        with one ``/``.
    """
    # A name that is not valid UTF-8 (lone surrogates) is encoded as its original bytes.
    encoded = quote(path.lstrip("/"), safe="/", errors="surrogateescape")
    if not root or root.endswith("="):  # a relative URL, or a root ending in an empty value
        return root + encoded
    return f"{root.rstrip('/')}/{encoded}"


def labelstudio_task(
    result: SegmentationResult,
    image_url: str | None = None,
    *,
    model_version: str = MODEL_VERSION,
    from_name: str = "label",
    to_name: str = "image",
    image_key: str = "image",
    tolerance: float = 0.0,
) -> dict[str, Any]:
    """A Label Studio task with the result as one prediction.

    Args:
        result: the named masks (``[N, H, W]``).
        image_url: the task's image reference; defaults to ``result.file_name``.
        model_version: shown in Label Studio next to the prediction.
        from_name: the ``PolygonLabels`` tag's name in the labeling config.
        to_name: the ``Image`` tag's name.
        image_key: the task data key the ``Image`` tag reads (``value="$image"``).
        tolerance: polygon simplification in pixels (0: exact outline).

    Returns:
        ``{"data": {...}, "predictions": [{"model_version", "score", "result"}]}`` with JSON types
        only. The prediction's ``score`` is the mean mask score (0 without masks).
    """
    h, w = result.image_size
    scale = np.array([100.0 / w, 100.0 / h])
    regions: list[dict[str, Any]] = []
    for i, mask in enumerate(result.iter_full_masks()):  # one full-size mask at a time
        polygons = mask_to_polygons(mask, tolerance=tolerance)
        for j, polygon in enumerate(polygons):
            points = np.round(np.clip(polygon * scale, 0.0, 100.0), DECIMALS)
            score = float(result.scores[i])
            regions.append(
                {
                    "id": f"m{i}" if len(polygons) == 1 else f"m{i}p{j}",
                    "type": "polygonlabels",
                    "from_name": from_name,
                    "to_name": to_name,
                    "original_width": w,
                    "original_height": h,
                    "image_rotation": 0,
                    "value": {
                        "points": points.tolist(),
                        "closed": True,
                        "polygonlabels": [xml_safe(result.class_names[int(result.class_ids[i])])],
                    },
                    "score": score if np.isfinite(score) else None,
                }
            )
    scores = result.scores[np.isfinite(result.scores)]
    return {
        "data": {image_key: result.file_name if image_url is None else image_url},
        "predictions": [
            {
                "model_version": model_version,
                "score": float(scores.mean()) if len(scores) else 0.0,
                "result": regions,
            }
        ],
    }


def write_labelstudio(
    tasks: SegmentationResult | Iterable[dict[str, Any]],
    path: str | os.PathLike[str],
    **kwargs: Any,
) -> Path:
    """Write a Label Studio import file (a JSON list of tasks) atomically.

    Args:
        tasks: one result (turned into a task with ``kwargs``) or tasks from
            :func:`labelstudio_task` (several images in one file).
        path: destination, e.g. ``<stem>.labelstudio.json``.
        **kwargs: passed to :func:`labelstudio_task` for a single result.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the file cannot be written.
    """
    items = (
        [labelstudio_task(tasks, **kwargs)]
        if isinstance(tasks, SegmentationResult)
        else list(tasks)
    )
    return write_json_atomic(path, items)


def labelstudio_config(
    class_names: Sequence[str],
    from_name: str = "label",
    to_name: str = "image",
    image_key: str = "image",
) -> str:
    """A labeling config (XML) that the tasks of :func:`labelstudio_task` fit.

    Paste it into the project's *Labeling Interface* (code view) before importing the tasks.
    Label colours are the overlay's.
    """
    labels = []
    for name in dict.fromkeys(class_names):
        r, g, b = class_color(name)
        labels.append(
            f'    <Label value={quoteattr(xml_safe(name))} background="#{r:02x}{g:02x}{b:02x}"/>'
        )
    return (
        "\n".join(
            [
                "<View>",
                f"  <Image name={quoteattr(to_name)} value={quoteattr('$' + image_key)}/>",
                f"  <PolygonLabels name={quoteattr(from_name)} toName={quoteattr(to_name)}>",
                *labels,
                "  </PolygonLabels>",
                "</View>",
            ]
        )
        + "\n"
    )


@dataclass
class LabelStudioMasks:
    """Masks read back from one Label Studio task.

    Attributes:
        masks: ``[N, H, W]`` bool, one per object (parts ``m<i>p<j>`` joined).
        labels: ``N`` label names (the first of each region's ``polygonlabels``).
        scores: ``[N]`` float32 region scores (NaN where absent).
        region_ids: ``N`` lists of the region ids making up each object.
    """

    masks: np.ndarray
    labels: list[str]
    scores: np.ndarray
    region_ids: list[list[str]]


def read_labelstudio(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Tasks of a Label Studio JSON file (a list of tasks, or one task).

    Raises:
        ConfigError: the file is not JSON or holds neither a task nor a list of tasks.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read Label Studio file {path}: {e}") from None
    tasks = [data] if isinstance(data, dict) else data
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise ConfigError(f"{path} is not a Label Studio task list")
    return tasks


def labelstudio_masks(
    task: dict[str, Any], key: str = "predictions", index: int = 0
) -> LabelStudioMasks:
    """Rasterise the polygon regions of one prediction (or annotation) of a task.

    Regions whose ids are ``m<i>`` / ``m<i>p<j>`` are joined per ``i``; any other region is an
    object of its own. Sizes come from each region's ``original_width`` / ``original_height``.

    Args:
        task: one task dict.
        key: ``"predictions"`` or ``"annotations"``.
        index: which prediction / annotation of the task.

    Returns:
        the masks, in order of first appearance.

    Raises:
        ConfigError: the task has no such entry or regions lack their image size.
    """
    entries = task.get(key) or []
    if index >= len(entries):
        raise ConfigError(f"the task has no {key}[{index}]")
    regions = [r for r in entries[index].get("result", []) if r.get("type") == "polygonlabels"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for n, region in enumerate(regions):
        rid = str(region.get("id", f"region{n}"))
        match = _REGION_ID.match(rid)
        groups.setdefault(f"m{match.group(1)}" if match else rid, []).append(region)
    masks: list[np.ndarray] = []
    labels: list[str] = []
    scores: list[float] = []
    ids: list[list[str]] = []
    size: tuple[int, int] | None = None
    for members in groups.values():
        union = np.zeros((0, 0), dtype=bool)
        for k, region in enumerate(members):
            try:
                w, h = int(region["original_width"]), int(region["original_height"])
            except (KeyError, TypeError, ValueError):
                raise ConfigError(
                    f"region {region.get('id')} has no original_width / original_height"
                ) from None
            size = (h, w)
            points = np.asarray(region["value"]["points"], dtype=np.float64).reshape(-1, 2)
            filled = polygons_to_mask([points * np.array([w / 100.0, h / 100.0])], h, w)
            union = filled if k == 0 else union | filled
        first = members[0]
        masks.append(union)
        labels.append((first["value"].get("polygonlabels") or [""])[0])
        score = first.get("score")
        scores.append(np.nan if score is None else float(score))
        ids.append([str(r.get("id")) for r in members])
    stacked = np.stack(masks) if masks else np.zeros((0, *(size or (0, 0))), dtype=bool)
    return LabelStudioMasks(stacked, labels, np.array(scores, dtype=np.float32), ids)

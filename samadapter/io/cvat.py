"""CVAT for images 1.1 XML with polygons, for *Upload annotations* into a CVAT task.

::

    <annotations>
      <version>1.1</version>
      <meta><task><name>samadapter</name><size>1</size><mode>annotation</mode>
        <labels><label><name>sofa</name><color>#aa3311</color><attributes/></label>...</labels>
      </task></meta>
      <image id="0" name="living_room.jpg" width="60" height="40">
        <polygon label="sofa" source="auto" occluded="0" z_order="0"
                 points="2.25,5.25;2.25,29.75;39.75,29.75;39.75,5.25"/>
      </image>
    </annotations>

Points are pixel coordinates (``x,y`` pairs separated by ``;``, 2 decimals), outlines a quarter
pixel inside the pixel edges (:mod:`samadapter.io.polygons`). CVAT polygons have no holes: holes are
cut in by zero-width bridges. A mask with several parts gives one polygon per part, the parts of one
mask sharing a ``group_id`` (CVAT's grouping, shown with *Group* / ``G``). ``z_order`` puts smaller
masks above larger ones. The task's labels must carry the class names (the ``meta`` block lists
them with the overlay's colours); scores are not written, as CVAT attributes must be declared in the
task beforehand.

A run writes one document for all its images. Until then each image's shapes are kept as a small
JSON record (:func:`cvat_record`, text only: no masks), which :func:`cvat_document` turns into the
``<image>`` elements; CVAT's importer reads every ``*.xml`` of an uploaded ZIP, so no per-image XML
is ever written. Class and image names pass through :func:`~samadapter.io.safe_text.xml_safe`:
characters XML cannot hold become visible ``\\xNN`` escapes, the same in labels and shapes.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samadapter.errors import ConfigError
from samadapter.io.atomic import write_bytes_atomic
from samadapter.io.overlay import class_color
from samadapter.io.polygons import mask_to_polygons, polygons_to_mask
from samadapter.io.safe_text import xml_safe
from samadapter.structures import SegmentationResult

_NUMBER = r"-?\d+(?:\.\d+)?"
_POINTS = re.compile(rf"{_NUMBER},{_NUMBER}(?:;{_NUMBER},{_NUMBER})*")


def _points_text(polygon: np.ndarray) -> str:
    return ";".join(f"{x:.2f},{y:.2f}" for x, y in polygon)


def cvat_record(
    result: SegmentationResult, name: str | None = None, tolerance: float = 0.0
) -> dict[str, Any]:
    """One image's shapes as JSON types: what a run keeps per image until it writes the document.

    Args:
        result: the named masks (``[N, H, W]``).
        name: the image's name as uploaded to the CVAT task; default ``result.file_name``.
        tolerance: polygon simplification in pixels (0: exact outline).

    Returns:
        ``{"name", "width", "height", "polygons": [{"label", "points", "z_order", "group_id"}]}``
        with ``points`` in CVAT's ``x,y;x,y`` text and ``group_id`` 0 for one-part masks.
    """
    h, w = result.image_size
    areas = result.areas
    z_order = np.empty(len(areas), dtype=np.int64)
    z_order[np.argsort(-areas, kind="stable")] = np.arange(len(areas))
    group = 0
    polygons: list[dict[str, Any]] = []
    for i, mask in enumerate(result.iter_full_masks()):  # one full-size mask at a time
        rings = mask_to_polygons(mask, tolerance=tolerance)
        if len(rings) > 1:
            group += 1
        for ring in rings:
            polygons.append(
                {
                    "label": result.class_names[int(result.class_ids[i])],
                    "points": _points_text(ring),
                    "z_order": int(z_order[i]),
                    "group_id": group if len(rings) > 1 else 0,
                }
            )
    return {
        "name": result.file_name if name is None else name,
        "width": int(w),
        "height": int(h),
        "polygons": polygons,
    }


def _bad_record(why: str) -> ConfigError:
    return ConfigError(f"not a CVAT image record: {why}")


def image_element(record: Mapping[str, Any], image_id: int) -> ET.Element:
    """The ``<image>`` element of a :func:`cvat_record` (which may have been read back from disk).

    Raises:
        ConfigError: the record does not have the types and point syntax of :func:`cvat_record`.
    """
    name, width, height = record.get("name"), record.get("width"), record.get("height")
    polygons = record.get("polygons")
    if not isinstance(name, str) or not isinstance(polygons, list):
        raise _bad_record("'name' must be a string and 'polygons' a list")
    if not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**31 for v in (width, height)
    ):
        raise _bad_record("'width' and 'height' must be positive integers")
    image = ET.Element(
        "image",
        {"id": str(image_id), "name": xml_safe(name), "width": str(width), "height": str(height)},
    )
    for shape in polygons:
        if not isinstance(shape, dict):
            raise _bad_record("each polygon must be an object")
        label, points = shape.get("label"), shape.get("points")
        z_order, group = shape.get("z_order", 0), shape.get("group_id", 0)
        if (
            not isinstance(label, str)
            or not isinstance(points, str)
            or not _POINTS.fullmatch(points)
        ):
            raise _bad_record("a polygon needs a string 'label' and 'points' as 'x,y;x,y;...'")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (z_order, group)):
            raise _bad_record("'z_order' and 'group_id' must be integers")
        attrs = {
            "label": xml_safe(label),
            "source": "auto",
            "occluded": "0",
            "points": points,
            "z_order": str(z_order),
        }
        if group:
            attrs["group_id"] = str(group)
        ET.SubElement(image, "polygon", attrs)
    return image


def cvat_image(
    result: SegmentationResult, image_id: int = 0, name: str | None = None, tolerance: float = 0.0
) -> ET.Element:
    """The ``<image>`` element of one result, with one ``<polygon>`` per mask part.

    Args:
        result: the named masks (``[N, H, W]``).
        image_id: the element's ``id``.
        name: the image's name as uploaded to the CVAT task; default ``result.file_name``.
        tolerance: polygon simplification in pixels (0: exact outline).
    """
    return image_element(cvat_record(result, name, tolerance), image_id)


def cvat_document(
    images: Sequence[ET.Element], class_names: Sequence[str], task_name: str = "samadapter"
) -> str:
    """A CVAT for images 1.1 document from ``<image>`` elements (:func:`image_element`).

    Args:
        images: one element per image, ids ``0..`` (or as the task has them).
        class_names: the labels for the ``meta`` block (duplicates dropped).
        task_name: the ``meta/task/name`` value.

    Returns:
        The XML text with its declaration.
    """
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "name").text = xml_safe(task_name)
    ET.SubElement(task, "size").text = str(len(images))
    ET.SubElement(task, "mode").text = "annotation"
    labels_el = ET.SubElement(task, "labels")
    safe_names = {xml_safe(n): n for n in reversed(class_names)}  # the first original wins
    for safe in dict.fromkeys(xml_safe(n) for n in class_names):
        label = ET.SubElement(labels_el, "label")
        ET.SubElement(label, "name").text = safe
        color = class_color(safe_names[safe])
        ET.SubElement(label, "color").text = "#{:02x}{:02x}{:02x}".format(*color)
        ET.SubElement(label, "attributes")
    root.extend(images)
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="utf-8"?>\n{body}\n'


def cvat_xml(
    results: SegmentationResult | Sequence[SegmentationResult],
    image_names: Sequence[str] | None = None,
    task_name: str = "samadapter",
    tolerance: float = 0.0,
) -> str:
    """CVAT for images 1.1 XML of one or several images.

    Args:
        results: one result per image (``[N, H, W]`` masks each).
        image_names: the names CVAT knows the images by (as uploaded to the task); default each
            result's ``file_name``.
        task_name: the ``meta/task/name`` value.
        tolerance: polygon simplification in pixels (0: exact outline).

    Returns:
        The XML document (UTF-8 text with declaration). Image ids are ``0..`` in order; labels are
        the union of the results' class names in order of appearance.
    """
    items = [results] if isinstance(results, SegmentationResult) else list(results)
    names = [r.file_name for r in items] if image_names is None else list(image_names)
    if len(names) != len(items):
        raise ValueError(f"{len(names)} image names for {len(items)} results")
    images = [
        cvat_image(r, i, n, tolerance) for i, (r, n) in enumerate(zip(items, names, strict=True))
    ]
    return cvat_document(images, [c for r in items for c in r.class_names], task_name)


def write_cvat(
    results: SegmentationResult | Sequence[SegmentationResult],
    path: str | os.PathLike[str],
    image_names: Sequence[str] | None = None,
    task_name: str = "samadapter",
    tolerance: float = 0.0,
) -> Path:
    """Write :func:`cvat_xml` atomically.

    Args:
        results: one or several results.
        path: destination, e.g. ``<stem>.cvat.xml`` (CVAT also takes it zipped).
        image_names: as :func:`cvat_xml`.
        task_name: as :func:`cvat_xml`.
        tolerance: as :func:`cvat_xml`.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the file cannot be written.
    """
    text = cvat_xml(results, image_names, task_name, tolerance)
    return write_bytes_atomic(path, text.encode("utf-8"))


@dataclass
class CvatImage:
    """Polygons of one ``<image>`` read back as masks.

    Attributes:
        name: the image's name.
        masks: ``[N, H, W]`` bool, one per object: a polygon without ``group_id`` (or with 0) is
            one object, polygons sharing a ``group_id`` one object together.
        labels: ``N`` label names.
    """

    name: str
    masks: np.ndarray
    labels: list[str]


def _parse_points(text: str) -> np.ndarray:
    pairs = [p.split(",") for p in text.strip().split(";") if p]
    return np.array([[float(x), float(y)] for x, y in pairs], dtype=np.float64).reshape(-1, 2)


def read_cvat(path: str | os.PathLike[str]) -> list[CvatImage]:
    """Read the polygons of a CVAT for images 1.1 XML file back into masks.

    Polygons are filled with the centre rule (:func:`polygons_to_mask`); other shapes are ignored.

    Raises:
        ConfigError: the file is not CVAT XML or has malformed points.
    """
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise ConfigError(f"cannot read CVAT file {path}: {e}") from None
    if root.tag != "annotations":
        raise ConfigError(f"{path} is not CVAT for images XML (root <{root.tag}>)")
    images = []
    for image in root.iter("image"):
        h, w = int(image.get("height", 0)), int(image.get("width", 0))
        objects: dict[str, tuple[str, np.ndarray]] = {}
        for n, poly in enumerate(image.iter("polygon")):
            try:
                filled = polygons_to_mask([_parse_points(poly.get("points", ""))], h, w)
            except ValueError:
                raise ConfigError(
                    f"{path}: malformed points in image {image.get('name')!r}"
                ) from None
            group = poly.get("group_id", "0")
            key = f"g{group}" if group not in ("", "0") else f"p{n}"
            if key in objects:
                objects[key] = (objects[key][0], objects[key][1] | filled)
            else:
                objects[key] = (poly.get("label", ""), filled)
        masks = (
            np.stack([m for _, m in objects.values()])
            if objects
            else np.zeros((0, h, w), dtype=bool)
        )
        images.append(CvatImage(image.get("name", ""), masks, [lb for lb, _ in objects.values()]))
    return images

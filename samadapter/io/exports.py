"""Annotation-tool exports of a run: YOLO segmentation, Label Studio, CVAT.

Each format is written per image as the run goes (so a resumed run keeps the images it skips)
and gathered into one importable file per format at the end:

==============  =============================================  ===================================
format          per image                                      for the run
==============  =============================================  ===================================
``yolo-seg``    ``yolo/labels/<rel>.txt``                      ``yolo/data.yaml``
``labelstudio`` ``labelstudio/tasks/<rel>.json``               ``labelstudio/tasks.json``,
                                                               ``labelstudio/config.xml``
``cvat``        ``cvat/images/<rel>.xml``                      ``cvat/annotations.xml``
==============  =============================================  ===================================

``coco`` (the per-image JSON, PNGs and overlay, plus ``annotations.json``) is always written.
Class ids are the vocabulary's order in every format, with ``unknown`` last when kept.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from samadapter.errors import ConfigError
from samadapter.io.atomic import atomic_path, write_bytes_atomic, write_json_atomic
from samadapter.io.cvat import cvat_document, cvat_image
from samadapter.io.labelstudio import labelstudio_config, labelstudio_task
from samadapter.io.yolo import write_yolo_data_yaml, write_yolo_labels
from samadapter.structures import SegmentationResult

EXPORTS = ("coco", "yolo-seg", "labelstudio", "cvat")
"""Formats ``--format`` accepts (``coco`` is the default set of per-image outputs)."""


def check_exports(formats: Iterable[str]) -> tuple[str, ...]:
    """Validate ``--format`` values (a list, items may be comma-separated).

    Raises:
        ConfigError: an unknown format.
    """
    out: list[str] = []
    for item in formats:
        for name in (p.strip() for p in item.split(",")):
            if name not in EXPORTS:
                raise ConfigError(f"unknown --format '{name}'", hint=f"use {', '.join(EXPORTS)}")
            if name not in out:
                out.append(name)
    return tuple(out) or ("coco",)


EXPORT_DIRS = {"yolo-seg": "yolo", "labelstudio": "labelstudio", "cvat": "cvat"}
"""The top-level folder of the output folder each export format writes into (and owns)."""


def image_export_paths(out_dir: Path, rel: PurePosixPath, formats: Sequence[str]
                       ) -> dict[str, Path]:
    """The per-image files the chosen export formats write for the image at ``rel``.

    Args:
        out_dir: the run's output folder.
        rel: the image's path relative to the run's root, with its extension (``sub/a.jpg``).
        formats: from :func:`check_exports` (``coco`` has none here).
    """
    files = _image_files(out_dir, rel)
    return {fmt: files[fmt] for fmt in formats if fmt in files}


def _image_files(out_dir: Path, rel: PurePosixPath) -> dict[str, Path]:
    # YOLO finds labels by the image's stem (images/a.jpg -> labels/a.txt).
    return {"yolo-seg": out_dir / "yolo" / "labels" / rel.with_suffix(".txt"),
            "labelstudio": out_dir / "labelstudio" / "tasks" / f"{rel}.json",
            "cvat": out_dir / "cvat" / "images" / f"{rel}.xml"}


def write_image_exports(result: SegmentationResult, out_dir: Path, rel: PurePosixPath,
                        formats: Sequence[str], image_ref: str) -> None:
    """Write one image's files of every chosen export format (atomically).

    Args:
        result: the image's named masks.
        out_dir: the run's output folder.
        rel: the image's output path without suffix.
        formats: from :func:`check_exports`.
        image_ref: how tools find the image (its path relative to the input root).
    """
    files = _image_files(out_dir, rel)
    for fmt in formats:
        if fmt == "coco":
            continue
        path = files[fmt]
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "yolo-seg":
            write_yolo_labels(result, path)
        elif fmt == "labelstudio":
            write_json_atomic(path, labelstudio_task(result, image_url=image_ref))
        elif fmt == "cvat":
            element = cvat_image(result, name=image_ref)
            write_bytes_atomic(path, ET.tostring(element, encoding="utf-8"))


def write_run_exports(out_dir: Path, rels: Sequence[PurePosixPath], formats: Sequence[str],
                      class_names: Sequence[str]) -> list[Path]:
    """Gather the per-image export files that exist into one file per format.

    Args:
        out_dir: the run's output folder.
        rels: every image's output path, in input order.
        formats: from :func:`check_exports`.
        class_names: the category names in id order (``unknown`` last when kept).

    Returns:
        the files written.
    """
    written: list[Path] = []
    present = {fmt: [p for p in (_image_files(out_dir, r)[fmt] for r in rels) if p.exists()]
               for fmt in formats if fmt != "coco"}
    if "yolo-seg" in present:
        written.append(write_yolo_data_yaml(out_dir / "yolo" / "data.yaml", class_names))
    if "labelstudio" in present:
        tasks = [json.loads(p.read_text()) for p in present["labelstudio"]]
        written.append(write_json_atomic(out_dir / "labelstudio" / "tasks.json", tasks))
        written.append(write_bytes_atomic(out_dir / "labelstudio" / "config.xml",
                                          labelstudio_config(class_names).encode("utf-8")))
    if "cvat" in present:
        images = []
        for i, path in enumerate(present["cvat"]):
            element = ET.fromstring(path.read_bytes())
            element.set("id", str(i))
            images.append(element)
        target = out_dir / "cvat" / "annotations.xml"
        with atomic_path(target) as tmp:
            Path(tmp).write_text(cvat_document(images, class_names, task_name=out_dir.name),
                                 encoding="utf-8")
        written.append(target)
    return written


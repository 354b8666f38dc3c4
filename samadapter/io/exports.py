"""Annotation-tool exports of a run: YOLO segmentation, Label Studio, CVAT.

Each format is written per image as the run goes (so a resumed run keeps the images it skips)
and gathered into the files a tool imports at the end of every run:

==============  ===============================================  ================================
format          per image                                        for the run (what you import)
==============  ===============================================  ================================
``yolo-seg``    ``yolo/labels/<rel minus extension>.txt``        ``yolo/data.yaml`` (+ the images
                                                                 in ``yolo/images/`` with
                                                                 ``--yolo-copy-images``)
``labelstudio`` ``.exports/labelstudio/<rel>.json``              ``labelstudio/tasks.json``,
                                                                 ``labelstudio/config.xml``
``cvat``        ``.exports/cvat/<rel>.json``                     ``cvat/annotations.xml``
==============  ===============================================  ================================

``<rel>`` is the image's path relative to the run's root, extension included (``sub/a.jpg``); for
YOLO any ``images`` folder in it is renamed (:func:`samadapter.io.yolo.yolo_rel`). The per-image
Label Studio and CVAT files are JSON records kept outside the tool folders: ``labelstudio/`` and
``cvat/`` hold only what their tool imports (CVAT's importer parses every ``*.xml`` of an uploaded
ZIP, so no per-image XML exists).
Records are read back as untrusted input: a malformed one stops the gathering with one error
naming it.

``coco`` (the per-image JSON, PNGs and overlay, plus ``annotations.json``) is always written.
Class ids are the vocabulary's order in every format, with ``unknown`` last when kept.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from samadapter.errors import ConfigError, OutputError
from samadapter.io.atomic import atomic_path, write_bytes_atomic, write_json_atomic
from samadapter.io.cvat import cvat_document, cvat_record, image_element
from samadapter.io.labelstudio import (
    LOCAL_FILES_ROOT,
    labelstudio_config,
    labelstudio_task,
    labelstudio_url,
)
from samadapter.io.yolo import write_yolo_data_yaml, write_yolo_labels, yolo_rel
from samadapter.structures import SegmentationResult

EXPORTS = ("coco", "yolo-seg", "labelstudio", "cvat")
"""Formats ``--format`` accepts (``coco`` is the default set of per-image outputs)."""

RECORDS_DIR = ".exports"
"""Folder under the output folder holding the per-image Label Studio and CVAT records."""

YOLO_SOURCES = "image_sources.json"
"""File in ``yolo/`` mapping each ``images/...`` path the dataset expects to the input image."""


@dataclass(frozen=True)
class ExportOptions:
    """How the run-level export files are written (none of it changes the per-image records).

    Attributes:
        labelstudio_root: URL root of the Label Studio tasks' images
            (:func:`samadapter.io.labelstudio.labelstudio_url`).
        yolo_copy_images: put each image into ``yolo/images/`` (a hard link where possible,
            else a copy) so that ``yolo/`` is a complete Ultralytics dataset.
    """

    labelstudio_root: str = LOCAL_FILES_ROOT
    yolo_copy_images: bool = False


def export_options_from(data: object) -> ExportOptions:
    """The :class:`ExportOptions` recorded in a run's ``run.json`` (defaults for what is missing
    or of the wrong type: the file is read back as untrusted)."""
    fields = data if isinstance(data, dict) else {}
    root = fields.get("labelstudio_root")
    copy = fields.get("yolo_copy_images")
    return ExportOptions(
        labelstudio_root=root if isinstance(root, str) else LOCAL_FILES_ROOT,
        yolo_copy_images=copy if isinstance(copy, bool) else False,
    )


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


EXPORT_DIRS: dict[str, tuple[str, ...]] = {
    "yolo-seg": ("yolo",),
    "labelstudio": ("labelstudio", RECORDS_DIR),
    "cvat": ("cvat", RECORDS_DIR),
}
"""The top-level folders of the output folder each export format writes into (and owns)."""


def _image_files(out_dir: Path, rel: PurePosixPath) -> dict[str, Path]:
    # Ultralytics finds labels by the image's path (images/<x>.jpg -> labels/<x>.txt).
    return {
        "yolo-seg": out_dir / "yolo" / "labels" / yolo_rel(rel).with_suffix(".txt"),
        "labelstudio": out_dir / RECORDS_DIR / "labelstudio" / f"{rel}.json",
        "cvat": out_dir / RECORDS_DIR / "cvat" / f"{rel}.json",
    }


def image_export_paths(
    out_dir: Path, rel: PurePosixPath, formats: Sequence[str]
) -> dict[str, Path]:
    """The per-image files the chosen export formats write for the image at ``rel``.

    Args:
        out_dir: the run's output folder.
        rel: the image's path relative to the run's root, with its extension (``sub/a.jpg``).
        formats: from :func:`check_exports` (``coco`` has none here).
    """
    files = _image_files(out_dir, rel)
    return {fmt: files[fmt] for fmt in formats if fmt in files}


def write_image_exports(
    result: SegmentationResult,
    out_dir: Path,
    rel: PurePosixPath,
    formats: Sequence[str],
    image_ref: str,
) -> None:
    """Write one image's files of every chosen export format (atomically).

    Args:
        result: the image's named masks.
        out_dir: the run's output folder.
        rel: the image's path relative to the run's root, with its extension.
        formats: from :func:`check_exports`.
        image_ref: how tools find the image: its ``/``-separated path relative to the run's
            image root (the COCO ``file_name``).
    """
    files = _image_files(out_dir, rel)
    for fmt in formats:
        if fmt == "coco":
            continue
        path = files[fmt]
        if fmt == "yolo-seg":
            write_yolo_labels(result, path)
        elif fmt == "labelstudio":  # the URL is made from data.image when gathering
            write_json_atomic(path, labelstudio_task(result, image_url=image_ref))
        elif fmt == "cvat":
            write_json_atomic(path, cvat_record(result, name=image_ref))


def _read_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _bad_record(path, f"unreadable ({e})") from None
    if not isinstance(data, dict):
        raise _bad_record(path, "not a JSON object")
    return data


def _bad_record(path: Path, why: str) -> OutputError:
    return OutputError(
        f"export record {path} is {why}",
        hint="delete it and the image's .json, then rerun to redo that image",
    )


def _labelstudio_tasks(paths: Sequence[Path], root: str) -> list[dict[str, Any]]:
    tasks = []
    for path in paths:
        task = _read_record(path)
        data = task.get("data")
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("image"), str)
            or not isinstance(task.get("predictions"), list)
        ):
            raise _bad_record(path, "not a Label Studio task with data.image and predictions")
        task["data"] = {**data, "image": labelstudio_url(data["image"], root)}
        tasks.append(task)
    return tasks


def _cvat_text(paths: Sequence[Path], class_names: Sequence[str], task_name: str) -> str:
    images = []
    for i, path in enumerate(paths):
        try:
            images.append(image_element(_read_record(path), i))
        except ConfigError as e:
            raise _bad_record(path, e.message) from None
    return cvat_document(images, class_names, task_name=task_name)


def _place_image(source: Path, target: Path) -> None:
    """Hard-link (else copy) ``source`` to ``target`` atomically; keep a target already linked."""
    if target.exists() and os.path.samefile(source, target):
        return
    with atomic_path(target) as tmp:
        Path(tmp).unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copy2(source, tmp)


def _write_yolo(
    out_dir: Path,
    rels: Sequence[PurePosixPath],
    sources: Sequence[Path] | None,
    class_names: Sequence[str],
    copy_images: bool,
) -> list[Path]:
    folder = out_dir / "yolo"
    placed: dict[str, str] = {}
    for i, rel in enumerate(rels):
        label = _image_files(out_dir, rel)["yolo-seg"]
        if sources is None or not label.exists():
            continue
        source = Path(sources[i])
        target = f"images/{yolo_rel(rel)}"
        if target in placed:
            raise OutputError(
                f"two images map to yolo/{target} ({placed[target]} and {source})",
                hint="rename one of the input folders",
            )
        placed[target] = str(source.resolve())
        if copy_images:
            try:
                _place_image(source, folder / target)
            except OSError as e:
                raise OutputError(
                    f"cannot put {source} into {folder / 'images'}: {e}",
                    hint="check free space and permissions",
                ) from None
    written = [write_json_atomic(folder / YOLO_SOURCES, placed)]
    if copy_images:
        comments = ["The images are in images/ (hard links or copies of the inputs)."]
    else:
        comments = [
            "Put each image at images/<path>.<ext> beside labels/<path>.txt before",
            f"training: {YOLO_SOURCES} maps each images/... path to its input file,",
            "or rerun the same command with --yolo-copy-images to link/copy them.",
        ]
    written.insert(0, write_yolo_data_yaml(folder / "data.yaml", class_names, comments=comments))
    return written


def write_run_exports(
    out_dir: Path,
    rels: Sequence[PurePosixPath],
    formats: Sequence[str],
    class_names: Sequence[str],
    *,
    sources: Sequence[Path] | None = None,
    options: ExportOptions | None = None,
) -> list[Path]:
    """Gather the per-image export files that exist into the files each tool imports.

    Args:
        out_dir: the run's output folder.
        rels: every finished image's path relative to the run's root, in input order.
        formats: from :func:`check_exports`.
        class_names: the category names in id order (``unknown`` last when kept).
        sources: each image's input file, aligned with ``rels`` (for ``yolo-seg``'s
            ``image_sources.json`` and ``--yolo-copy-images``).
        options: Label Studio URL root, YOLO image copying.

    Returns:
        the files written.

    Raises:
        OutputError: a per-image record is malformed, or an image cannot be linked / copied.
    """
    opts = options or ExportOptions()
    written: list[Path] = []
    present = {
        fmt: [p for p in (_image_files(out_dir, r)[fmt] for r in rels) if p.exists()]
        for fmt in formats
        if fmt != "coco"
    }
    if "yolo-seg" in present:
        written += _write_yolo(out_dir, rels, sources, class_names, opts.yolo_copy_images)
    if "labelstudio" in present:
        tasks = _labelstudio_tasks(present["labelstudio"], opts.labelstudio_root)
        written.append(write_json_atomic(out_dir / "labelstudio" / "tasks.json", tasks))
        written.append(
            write_bytes_atomic(
                out_dir / "labelstudio" / "config.xml",
                labelstudio_config(class_names).encode("utf-8"),
            )
        )
    if "cvat" in present:
        target = out_dir / "cvat" / "annotations.xml"
        text = _cvat_text(present["cvat"], class_names, out_dir.name)
        written.append(write_bytes_atomic(target, text.encode("utf-8")))
    return written

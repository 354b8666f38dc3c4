"""COCO training sets in detectron2's layout: COCO-Stuff-164k (semantic) and COCO panoptic 2017.

Both live under one ``ROOT`` (detectron2's ``DETECTRON2_DATASETS``); ``ROOT`` may also be the
``coco`` folder itself. ``SPLIT`` is ``train2017`` or ``val2017``.

* **COCO-Stuff-164k** (171 classes, the ``coco-stuff`` vocabulary), converted by MaskFormer's
  ``datasets/prepare_coco_stuff_164k_sem_seg.py``::

      ROOT/coco/SPLIT/000000000139.jpg
      ROOT/coco/stuffthingmaps_detectron2/SPLIT/000000000139.png

  8-bit PNG, pixel value = *contiguous* class index ``0..170``: the position of the class among
  the 171 valid classes of ``coco_stuff.txt`` in file order (not the COCO id); ``255`` = ignore.

* **COCO panoptic 2017** (133 classes, the ``coco-panoptic`` vocabulary), as unzipped from
  cocodataset.org's ``panoptic_annotations_trainval2017.zip``::

      ROOT/coco/SPLIT/000000000139.jpg
      ROOT/coco/panoptic_SPLIT/000000000139.png
      ROOT/coco/annotations/panoptic_SPLIT.json

  RGB PNG, segment id = ``R + 256·G + 256²·B`` (``0`` = unlabelled); the JSON's
  ``annotations[i]`` names the PNG (``file_name``) and lists its segments (``segments_info``:
  ``id``, ``category_id`` = the COCO id, i.e. the vocabulary's class id, ``iscrowd``). A sample's
  ``label`` is the segment's class index, :data:`~samadapter.data.base.IGNORE` for crowd segments
  and unlabelled pixels; its ``instances`` number the non-crowd segments, things and stuff alike,
  ``1..S`` in ``segments_info`` order (``0`` = none), so training makes one mask per segment as
  the official panoptic data mappers do.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from samadapter.data.base import IGNORE, Sample
from samadapter.data.folder import FolderDataset, find_root
from samadapter.errors import ConfigError, DatasetError
from samadapter.io.images import load_image
from samadapter.vocab import Vocabulary, load_builtin

__all__ = [
    "COCO_SPLITS",
    "CocoPanopticDataset",
    "coco_split",
    "decode_panoptic_ids",
    "load_coco_panoptic",
    "load_coco_stuff",
]

COCO_SPLITS: dict[str, str] = {
    "train2017": "train2017",
    "train": "train2017",
    "training": "train2017",
    "val2017": "val2017",
    "val": "val2017",
    "validation": "val2017",
}
"""Accepted split names and the COCO folder each means."""

_IMAGES_HOW_TO_GET = (
    "download train2017.zip / val2017.zip from https://cocodataset.org and "
    "unzip them into ROOT/coco"
)
STUFF_HOW_TO_GET = (
    f"{_IMAGES_HOW_TO_GET}; download stuffthingmaps_trainval2017.zip "
    "(https://github.com/nightrome/cocostuff), unzip it into ROOT/coco/stuffthingmaps and run "
    "MaskFormer's datasets/prepare_coco_stuff_164k_sem_seg.py with DETECTRON2_DATASETS=ROOT "
    "(detectron2's dataset layout)"
)
"""How to get COCO-Stuff-164k, for errors."""
PANOPTIC_HOW_TO_GET = (
    f"{_IMAGES_HOW_TO_GET}; download panoptic_annotations_trainval2017.zip from "
    "https://cocodataset.org, unzip it into ROOT/coco and unzip its "
    "annotations/panoptic_{train2017,val2017}.zip into ROOT/coco (detectron2's dataset layout)"
)
"""How to get COCO panoptic 2017, for errors."""


def coco_split(split: str) -> str:
    """The COCO folder name of a split.

    Args:
        split: ``train2017`` / ``train`` / ``training`` or ``val2017`` / ``val`` /
            ``validation`` (case does not matter).

    Returns:
        ``train2017`` or ``val2017``.

    Raises:
        ConfigError: any other name.
    """
    key = split.strip().lower()
    if key not in COCO_SPLITS:
        raise ConfigError(
            f"unknown COCO split '{split}'", hint="use train2017 (train) or val2017 (val)"
        )
    return COCO_SPLITS[key]


# --------------------------------------------------------------------------------------------------
# COCO-Stuff-164k
# --------------------------------------------------------------------------------------------------


def load_coco_stuff(root: str | os.PathLike[str], split: str = "train2017") -> FolderDataset:
    """COCO-Stuff-164k in detectron2's layout as a :class:`~samadapter.data.folder.FolderDataset`.

    Args:
        root: the folder holding ``coco/`` (or ``coco/`` itself).
        split: ``train2017`` / ``train`` or ``val2017`` / ``val``.

    Returns:
        the dataset with the builtin ``coco-stuff`` vocabulary (171 classes); labels are class
        indices ``0..170`` (:data:`~samadapter.data.base.IGNORE` = ignore), names the image stems.

    Raises:
        DatasetError: missing or differently laid out data (the message says what was expected
            and how to get it), images without label maps, or label values above 170 but not 255
            (when a sample is read).
        ConfigError: an unknown split.
    """
    folder = coco_split(split)
    images, labels = folder, f"stuffthingmaps_detectron2/{folder}"
    folders = {images: "/", labels: "/"}
    top = find_root(root, "coco-stuff", "coco", folders, how_to_get=STUFF_HOW_TO_GET)
    try:
        return FolderDataset.from_folders(
            top / images,
            top / labels,
            load_builtin("coco-stuff"),
            ignore_index=255,
            contiguous=True,
            image_suffixes=(".jpg",),
            label_suffixes=(".png",),
            description=f"coco-stuff {folder} ({top})",
        )
    except DatasetError as e:
        raise DatasetError(f"coco-stuff: {e.message}", hint=e.hint or STUFF_HOW_TO_GET) from None


# --------------------------------------------------------------------------------------------------
# COCO panoptic
# --------------------------------------------------------------------------------------------------


def decode_panoptic_ids(rgb: np.ndarray) -> np.ndarray:
    """Segment ids of a COCO panoptic PNG.

    Args:
        rgb: ``[H, W, 3]`` uint8 RGB.

    Returns:
        ``[H, W]`` int32 ``R + 256·G + 256²·B`` (``0`` = unlabelled).
    """
    c = rgb.astype(np.int32)
    return c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]


@dataclass
class CocoPanopticDataset:
    """COCO panoptic images with semantic labels and per-segment instance ids.

    Build it with :func:`load_coco_panoptic`, which reads the JSON once; images and PNGs are read
    when a sample is.

    Attributes:
        vocab: the ``K`` classes (the ``coco-panoptic`` vocabulary); ``vocab.ids`` are COCO ids.
        image_paths: ``N`` image files, sorted by name.
        png_paths: the matching ``N`` panoptic PNGs.
        segments: ``N`` int64 arrays ``[S_i, 3]``: segment id, class index (:data:`IGNORE` for a
            crowd segment), instance id (``0`` for a crowd segment, else ``1..``).
        sample_names: ``N`` image stems, the samples' names.
        description: one line naming the data, for reports.
    """

    vocab: Vocabulary
    image_paths: list[Path]
    png_paths: list[Path]
    segments: list[np.ndarray]
    sample_names: list[str]
    description: str = "coco-panoptic"

    def __post_init__(self) -> None:
        n = len(self.image_paths)
        if not len(self.png_paths) == len(self.segments) == len(self.sample_names) == n:
            raise ValueError("image_paths, png_paths, segments and sample_names differ in length")

    def __len__(self) -> int:
        return len(self.image_paths)

    def names(self) -> list[str]:
        """The samples' names in index order."""
        return list(self.sample_names)

    def panoptic(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The ground truth of sample ``index`` without reading its image.

        Returns:
            ``(label, instances)``: ``[H, W]`` int32 class index ``0..K-1`` or :data:`IGNORE`
            (crowd, unlabelled), and ``[H, W]`` int32 instance id (``0`` = none).

        Raises:
            DatasetError: a missing or unreadable PNG, a PNG that is not RGB, or segment ids the
                JSON does not list.
        """
        path = self.png_paths[index]
        try:
            with Image.open(path) as img:
                if img.mode != "RGB":
                    raise DatasetError(
                        f"coco-panoptic: {path} is a {img.mode} image",
                        hint="COCO panoptic PNGs are RGB, segment id = R + 256·G + 256²·B",
                    )
                rgb = np.asarray(img)
        except FileNotFoundError:
            raise DatasetError(
                f"coco-panoptic: panoptic PNG not found: {path}", hint=PANOPTIC_HOW_TO_GET
            ) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DatasetError(f"coco-panoptic: cannot read {path}: {msg}") from None
        ids = decode_panoptic_ids(rgb)
        uniq, inverse = np.unique(ids, return_inverse=True)
        table = self.segments[index]
        known = {int(s): (int(c), int(i)) for s, c, i in table}
        known[0] = (IGNORE, 0)
        unknown = [int(u) for u in uniq if int(u) not in known]
        if unknown:
            shown = ", ".join(str(u) for u in unknown[:8]) + (", ..." if len(unknown) > 8 else "")
            raise DatasetError(
                f"coco-panoptic: {path} holds segment ids its JSON entry does not list: {shown}",
                hint="the PNGs and annotations/panoptic_*.json must come from the same download",
            )
        classes = np.array([known[int(u)][0] for u in uniq], dtype=np.int32)
        instances = np.array([known[int(u)][1] for u in uniq], dtype=np.int32)
        inverse = inverse.reshape(ids.shape)
        return classes[inverse], instances[inverse]

    def label(self, index: int) -> np.ndarray:
        """The class indices of sample ``index`` without reading its image.

        Returns:
            ``[H, W]`` int32 class index ``0..K-1`` or :data:`IGNORE` (crowd, unlabelled).

        Raises:
            DatasetError: see :meth:`panoptic`.
        """
        return self.panoptic(index)[0]

    def __getitem__(self, index: int) -> Sample:
        """Sample ``index``: RGB image, class-index labels and instance ids.

        Raises:
            IndexError: ``index`` out of range.
            DatasetError: see :meth:`panoptic`; or a PNG whose size differs from the image's.
            ImageError: unreadable image.
        """
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} of {len(self)}")
        image = load_image(self.image_paths[index])
        label, instances = self.panoptic(index)
        if label.shape != image.shape[:2]:
            raise DatasetError(
                f"coco-panoptic: {self.png_paths[index]} is {label.shape[1]}x"
                f"{label.shape[0]} but image {self.image_paths[index]} is "
                f"{image.shape[1]}x{image.shape[0]}",
                hint="each panoptic PNG must match its image's size",
            )
        return Sample(image=image, label=label, name=self.sample_names[index], instances=instances)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"coco-panoptic: cannot read {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"coco-panoptic: {path} is not valid JSON ({e})", hint=PANOPTIC_HOW_TO_GET
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DatasetError(
            f"coco-panoptic: {path} has no 'annotations' list",
            hint="expected COCO's panoptic_{train2017,val2017}.json",
        )
    return data


def _segment_table(segments: list[Any], class_of: dict[int, int], where: str) -> np.ndarray:
    """The ``[S, 3]`` int64 (segment id, class index, instance id) rows of one image.

    Args:
        segments: the annotation's ``segments_info``.
        class_of: class index of each COCO category id.
        where: the JSON and PNG, to start messages with.

    Raises:
        DatasetError: a malformed segment, an unknown category, a segment id 0 or given twice.
    """
    rows: list[tuple[int, int, int]] = []
    seen: set[int] = set()
    instance = 0
    for seg in segments:
        try:
            seg_id, category = int(seg["id"]), int(seg["category_id"])
            crowd = bool(seg.get("iscrowd", 0))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DatasetError(
                f"coco-panoptic: {where}: malformed segment {seg!r}",
                hint="segments_info entries need 'id' and 'category_id'",
            ) from None
        if category not in class_of:
            raise DatasetError(
                f"coco-panoptic: {where}: segment {seg_id} has category_id "
                f"{category}, which is no class of the coco-panoptic vocabulary",
                hint="expected the 133 COCO panoptic categories",
            )
        if seg_id == 0 or seg_id in seen:
            raise DatasetError(
                f"coco-panoptic: {where}: segment id {seg_id} "
                + ("given twice" if seg_id else "(0 means unlabelled)")
            )
        seen.add(seg_id)
        if crowd:
            rows.append((seg_id, IGNORE, 0))
        else:
            instance += 1
            rows.append((seg_id, class_of[category], instance))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _files(folder: Path) -> set[str]:
    with os.scandir(folder) as it:
        return {e.name for e in it}


def load_coco_panoptic(
    root: str | os.PathLike[str], split: str = "train2017"
) -> CocoPanopticDataset:
    """COCO panoptic 2017 in detectron2's layout (see the module docstring).

    Reads ``annotations/panoptic_SPLIT.json`` once and checks that every annotation has its image
    and PNG and that every category is a class; images without an annotation are left out.

    Args:
        root: the folder holding ``coco/`` (or ``coco/`` itself).
        split: ``train2017`` / ``train`` or ``val2017`` / ``val``.

    Returns:
        the dataset with the builtin ``coco-panoptic`` vocabulary (133 classes), samples sorted by
        name (the image stem).

    Raises:
        DatasetError: missing or differently laid out data (the message says what was expected
            and how to get it), an unreadable JSON, annotations without image or PNG, unknown
            category ids, or a segment id given twice in one image.
        ConfigError: an unknown split.
    """
    folder = coco_split(split)
    images_rel, pngs_rel = folder, f"panoptic_{folder}"
    json_rel = f"annotations/panoptic_{folder}.json"
    folders = {images_rel: "/", pngs_rel: "/"}
    top = find_root(
        root, "coco-panoptic", "coco", folders, (json_rel,), how_to_get=PANOPTIC_HOW_TO_GET
    )
    images_dir, pngs_dir, json_path = top / images_rel, top / pngs_rel, top / json_rel
    vocab = load_builtin("coco-panoptic")
    class_of = {class_id: k for k, class_id in enumerate(vocab.ids)}
    data = _read_json(json_path)
    image_files: dict[Any, str] = {
        entry["id"]: str(entry["file_name"])
        for entry in data.get("images") or []
        if isinstance(entry, dict) and "id" in entry and "file_name" in entry
    }
    annotations: list[Any] = data["annotations"]
    del data
    have_images, have_pngs = _files(images_dir), _files(pngs_dir)
    rows: dict[str, tuple[Path, Path, np.ndarray]] = {}
    missing: list[Path] = []
    for ann in annotations:
        if not isinstance(ann, dict) or "file_name" not in ann:
            raise DatasetError(
                f"coco-panoptic: {json_path} has an annotation without 'file_name'",
                hint="expected COCO's panoptic JSON",
            )
        png_name = str(ann["file_name"])
        image_name = image_files.get(ann.get("image_id"), f"{Path(png_name).stem}.jpg")
        name = Path(image_name).stem
        if name in rows:
            raise DatasetError(f"coco-panoptic: {json_path} annotates {image_name} twice")
        for have, where, fname in (
            (have_images, images_dir, image_name),
            (have_pngs, pngs_dir, png_name),
        ):
            if fname not in have:
                missing.append(where / fname)
        rows[name] = (
            images_dir / image_name,
            pngs_dir / png_name,
            _segment_table(ann.get("segments_info") or [], class_of, f"{json_path}: {png_name}"),
        )
    if missing:
        raise DatasetError(
            f"coco-panoptic: missing files named in {json_path}: {len(missing)}, e.g. {missing[0]}",
            hint=PANOPTIC_HOW_TO_GET,
        )
    if not rows:
        raise DatasetError(
            f"coco-panoptic: {json_path} annotates no image", hint=PANOPTIC_HOW_TO_GET
        )
    names = sorted(rows)
    return CocoPanopticDataset(
        vocab=vocab,
        image_paths=[rows[n][0] for n in names],
        png_paths=[rows[n][1] for n in names],
        segments=[rows[n][2] for n in names],
        sample_names=names,
        description=f"coco-panoptic {folder} ({top})",
    )

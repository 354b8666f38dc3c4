"""The one place a dataset name becomes a dataset: ``benchmark`` and ``train`` both use it."""

from __future__ import annotations

from pathlib import Path

from samadapter.data.ade20k import load_ade20k
from samadapter.data.base import SemanticDataset
from samadapter.data.coco import load_coco_panoptic, load_coco_stuff
from samadapter.data.folder import FolderDataset
from samadapter.data.synthetic import DEFAULT_CLASSES, SyntheticClass, SyntheticShapes
from samadapter.errors import ConfigError
from samadapter.vocab import Vocabulary

DATASETS = ("synthetic", "ade20k-150", "ade20k-847", "coco-stuff", "coco-panoptic", "folder")
"""The names :func:`open_dataset` knows."""
SYNTHETIC_SPLITS = {"train": 0, "val": 1, "validation": 1, "test": 2}
"""The synthetic dataset's splits and the seed of each."""


def open_dataset(
    name: str,
    root: Path | None,
    split: str | None = None,
    *,
    images: Path | None = None,
    labels: Path | None = None,
    vocab: Vocabulary | None = None,
    ignore_index: int | None = 255,
    label_offset: int = 0,
    image_name_suffix: str = "",
    label_name_suffix: str = "",
    synthetic_images: int = 64,
    synthetic_classes: tuple[SyntheticClass, ...] | None = None,
) -> SemanticDataset:
    """A labelled dataset by name.

    Args:
        name: one of :data:`DATASETS`.
        root: ADE20K: the folder holding ``ADEChallengeData2016`` (or ``ADE20K_2021_17_01``).
            COCO: the folder holding ``coco/`` (detectron2's layout, see
            :mod:`samadapter.data.coco`) or ``coco/`` itself. ``folder``: a folder with
            ``images/`` and ``labels/`` (label maps with the images' relative names), each
            optionally split into ``<split>/`` sub-folders; unused when ``images`` and ``labels``
            are given. ``synthetic``: unused.
        split: ``train`` / ``training`` (``None``) or ``val`` / ``validation``; COCO also
            ``train2017`` / ``val2017``; ``synthetic`` also ``test`` (each split has its seed).
        images: ``folder``: the images, instead of ``root/images``.
        labels: ``folder``: the label maps, instead of ``root/labels``.
        vocab: ``folder``: the classes the label values refer to.
        ignore_index: ``folder``: the label value that counts for nothing (``None``: none does).
        label_offset: ``folder``: class id = pixel value + offset.
        image_name_suffix: ``folder``: what image file names add to the shared name.
        label_name_suffix: ``folder``: what label file names add to the shared name.
        synthetic_images: ``synthetic``: images of the training split (held-out splits get a
            quarter, at least 8).
        synthetic_classes: ``synthetic``: the classes (default: coloured / textured shapes).

    Raises:
        ConfigError: an unknown name or synthetic split, or a folder or class list the name needs
            is missing.
        DatasetError: missing or differently laid out data (the message says what was expected).
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}'", hint=f"use one of {', '.join(DATASETS)}")
    if name == "synthetic":
        seed = SYNTHETIC_SPLITS.get((split or "train").lower())
        if seed is None:
            raise ConfigError(
                f"unknown synthetic split '{split}'",
                hint=f"use one of {', '.join(SYNTHETIC_SPLITS)}",
            )
        n = synthetic_images if seed == 0 else max(8, synthetic_images // 4)
        return SyntheticShapes(n, seed=seed, classes=synthetic_classes or DEFAULT_CLASSES)
    if name == "folder" and (images is None or labels is None) and root is not None:
        images, labels = root / "images", root / "labels"
        if split is not None:
            images, labels = images / split, labels / split
    if name == "folder" and images is not None and labels is not None and vocab is not None:
        return FolderDataset.from_folders(
            images,
            labels,
            vocab,
            ignore_index=ignore_index,
            label_offset=label_offset,
            image_name_suffix=image_name_suffix,
            label_name_suffix=label_name_suffix,
        )
    if root is None or name == "folder":
        raise ConfigError(
            f"dataset {name} needs {'its images, labels and classes' if root else 'its folder'}"
        )
    if name.startswith("ade20k"):
        ade_split = {None: "training", "train": "training", "val": "validation"}.get(split, split)
        return load_ade20k(root, name, split=str(ade_split))
    coco_split = {None: "train2017", "val": "val2017"}.get(split, split)
    load = load_coco_stuff if name == "coco-stuff" else load_coco_panoptic
    return load(root, split=str(coco_split))

"""ADE20K validation sets in their official layouts: ADE20K-150 and ADE20K-847 (full).

* **ADE20K-150** (``ADEChallengeData2016.zip``, as downloaded and unzipped)::

      ROOT/ADEChallengeData2016/images/validation/ADE_val_00000001.jpg
      ROOT/ADEChallengeData2016/annotations/validation/ADE_val_00000001.png

  8-bit PNG, pixel value = class id ``1..150`` of the ``ade150`` vocabulary, ``0`` = ignore.

* **ADE20K-847** (``ADE20K_2021_17_01`` converted by the ``prepare_ade20k_full_sem_seg.py``
  script of Mask2Former / FC-CLIP)::

      ROOT/ADE20K_2021_17_01/images_detectron2/validation/ADE_val_00000001.jpg
      ROOT/ADE20K_2021_17_01/annotations_detectron2/validation/ADE_val_00000001.tif

  16-bit TIFF, pixel value = class id − 1 (``0..846``) of the ``ade847`` vocabulary,
  ``65535`` = ignore.

``ROOT`` may also be the ``ADEChallengeData2016`` / ``ADE20K_2021_17_01`` folder itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from samadapter.data.folder import FolderDataset, find_root
from samadapter.errors import DatasetError
from samadapter.vocab import load_builtin

__all__ = ["ADE20K_LAYOUTS", "AdeLayout", "load_ade20k"]


@dataclass(frozen=True)
class AdeLayout:
    """Where one ADE20K variant keeps its files and how its pixel values map to classes.

    Attributes:
        name: ``ade20k-150`` or ``ade20k-847``.
        folder: the dataset's top folder inside ``--root``.
        images: image folder relative to ``folder``, ``{split}`` filled in.
        labels: label folder relative to ``folder``.
        image_suffix: suffix of the images.
        label_suffix: suffix of the label maps.
        vocab: builtin vocabulary name.
        ignore_index: pixel value meaning "unlabelled".
        label_offset: ``pixel value + label_offset = class id``.
        how_to_get: how to obtain the data, for errors.
    """

    name: str
    folder: str
    images: str
    labels: str
    image_suffix: str
    label_suffix: str
    vocab: str
    ignore_index: int
    label_offset: int
    how_to_get: str


ADE20K_LAYOUTS: dict[str, AdeLayout] = {
    "ade20k-150": AdeLayout(
        "ade20k-150",
        "ADEChallengeData2016",
        "images/{split}",
        "annotations/{split}",
        ".jpg",
        ".png",
        "ade150",
        0,
        0,
        "download http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip "
        "and unzip it into ROOT",
    ),
    "ade20k-847": AdeLayout(
        "ade20k-847",
        "ADE20K_2021_17_01",
        "images_detectron2/{split}",
        "annotations_detectron2/{split}",
        ".jpg",
        ".tif",
        "ade847",
        65535,
        1,
        "download ADE20K_2021_17_01 from https://ade20k.csail.mit.edu (free registration), "
        "unzip it into ROOT and run Mask2Former's / FC-CLIP's "
        "datasets/prepare_ade20k_full_sem_seg.py with DETECTRON2_DATASETS=ROOT",
    ),
}
"""The supported ADE20K variants, by ``--dataset`` name."""


def load_ade20k(
    root: str | os.PathLike[str], name: str = "ade20k-150", split: str = "validation"
) -> FolderDataset:
    """An ADE20K split as a :class:`~samadapter.data.folder.FolderDataset`.

    Args:
        root: the folder holding ``ADEChallengeData2016`` / ``ADE20K_2021_17_01`` (or that folder).
        name: ``ade20k-150`` or ``ade20k-847``.
        split: ``validation`` (the benchmark split) or ``training``.

    Returns:
        the dataset with the builtin ``ade150`` / ``ade847`` vocabulary; labels are class indices
        ``0..K-1`` (``-1`` = ignore).

    Raises:
        DatasetError: missing or differently laid out data (the message says what was expected
            and how to get it), or images without label maps.
        KeyError: an unknown ``name``.
    """
    if name not in ADE20K_LAYOUTS:
        raise KeyError(f"unknown ADE20K variant {name!r}; choose one of {list(ADE20K_LAYOUTS)}")
    layout = ADE20K_LAYOUTS[name]
    images, labels = layout.images.format(split=split), layout.labels.format(split=split)
    folders = {images: f"/*{layout.image_suffix}", labels: f"/*{layout.label_suffix}"}
    top = find_root(root, name, layout.folder, folders, how_to_get=layout.how_to_get)
    try:
        ds = FolderDataset.from_folders(
            top / images,
            top / labels,
            load_builtin(layout.vocab),
            ignore_index=layout.ignore_index,
            label_offset=layout.label_offset,
            image_suffixes=(layout.image_suffix,),
            label_suffixes=(layout.label_suffix,),
            description=f"{name} {split} ({top})",
        )
    except DatasetError as e:
        raise DatasetError(f"{name}: {e.message}", hint=e.hint or layout.how_to_get) from None
    return ds

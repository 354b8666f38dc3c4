"""Tiny synthetic datasets in each layout the benchmark reads (ADE-150, ADE-847, a folder).

Each writer returns the ground truth it wrote as class-index maps (``-1`` = ignore), so tests can
check that loaders read back exactly that. Import with :func:`load_synth` from other test folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

IGNORE = -1
SIZES = [(40, 56), (36, 48), (44, 60), (32, 40)]


@dataclass
class Written:
    """What a writer put on disk.

    Attributes:
        root: what to pass as ``--root`` (or the folder holding ``images`` / ``labels``).
        names: sample names, sorted.
        labels: class-index maps by name (``-1`` = ignore).
        images: the RGB images by name (JPEG ones are lossy on disk).
    """

    root: Path
    names: list[str]
    labels: dict[str, np.ndarray]
    images: dict[str, np.ndarray]


def make_label(h: int, w: int, classes: list[int], seed: int) -> np.ndarray:
    """A label map of rectangles: ``classes[0]`` as background, the others as blocks, one class
    twice (two separate segments), and an ignore strip on the right."""
    rng = np.random.default_rng(seed)
    label = np.full((h, w), classes[0], dtype=np.int32)
    for i, c in enumerate(classes[1:]):
        y0 = int(rng.integers(0, h // 2))
        x0 = int(rng.integers(0, w // 3))
        label[y0 : y0 + h // 3, x0 + i * 3 : x0 + i * 3 + w // 4] = c
    label[h - 6 : h - 2, 2:8] = classes[-1]  # a second, separate segment of the last class
    label[:, w - 3 :] = IGNORE
    return label


def image_for(label: np.ndarray, seed: int) -> np.ndarray:
    """An RGB image whose colour depends on the class, plus a little noise."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 255, size=(int(label.max()) + 2, 3))
    img = palette[label + 1].astype(np.int32) + rng.integers(-8, 8, size=(*label.shape, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _samples(n: int, class_sets: list[list[int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for i in range(n):
        h, w = SIZES[i % len(SIZES)]
        label = make_label(h, w, class_sets[i % len(class_sets)], seed=i)
        out.append((label, image_for(label, seed=100 + i)))
    return out


def write_ade150(root: Path, n: int = 3) -> Written:
    """``root/ADEChallengeData2016/{images,annotations}/validation``: JPEG + 8-bit PNG, pixel =
    class index + 1 (ids 1..150), 0 = ignore."""
    top = root / "ADEChallengeData2016"
    (top / "images" / "validation").mkdir(parents=True)
    (top / "annotations" / "validation").mkdir(parents=True)
    w = Written(root, [], {}, {})
    for i, (label, image) in enumerate(_samples(n, [[0, 2, 149], [5, 0, 12], [3, 7, 149]])):
        name = f"ADE_val_{i + 1:08d}"
        Image.fromarray(image).save(top / "images" / "validation" / f"{name}.jpg", quality=95)
        raw = np.where(label == IGNORE, 0, label + 1).astype(np.uint8)
        Image.fromarray(raw).save(top / "annotations" / "validation" / f"{name}.png")
        w.names.append(name)
        w.labels[name], w.images[name] = label, image
    return w


def write_ade847(root: Path, n: int = 3) -> Written:
    """``root/ADE20K_2021_17_01/{images,annotations}_detectron2/validation``: JPEG + 16-bit TIFF,
    pixel = class id − 1 = class index (ids 1..847), 65535 = ignore."""
    top = root / "ADE20K_2021_17_01"
    (top / "images_detectron2" / "validation").mkdir(parents=True)
    (top / "annotations_detectron2" / "validation").mkdir(parents=True)
    w = Written(root, [], {}, {})
    for i, (label, image) in enumerate(_samples(n, [[0, 300, 846], [1, 0, 511], [846, 2, 3]])):
        name = f"ADE_val_{i + 1:08d}"
        Image.fromarray(image).save(
            top / "images_detectron2" / "validation" / f"{name}.jpg", quality=95
        )
        raw = np.where(label == IGNORE, 65535, label).astype(np.uint16)
        tifffile.imwrite(top / "annotations_detectron2" / "validation" / f"{name}.tif", raw)
        w.names.append(name)
        w.labels[name], w.images[name] = label, image
    return w


FOLDER_CLASSES = ["sky", "road", "tree,trees", "car,automobile"]


def write_folder(
    root: Path, n: int = 3, ignore: int = 255, offset: int = 1, nested: bool = True
) -> Written:
    """``root/images/**.png`` + ``root/labels/**.png`` (8-bit, pixel = class index + 1 - offset:
    class ids 1..4 of ``root/classes.txt``) and ``root/classes.txt``; with ``nested`` the second
    image sits in a sub-folder."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(FOLDER_CLASSES) + "\n", encoding="utf-8")
    w = Written(root, [], {}, {})
    for i, (label, image) in enumerate(_samples(n, [[0, 1, 3], [2, 0, 1], [1, 3, 2]])):
        name = f"city/img_{i}" if nested and i == 1 else f"img_{i}"
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "labels" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        raw = np.where(label == IGNORE, ignore, label + 1 - offset).astype(np.uint8)
        Image.fromarray(raw).save(root / "labels" / f"{name}.png")
        w.names.append(name)
        w.labels[name], w.images[name] = label, image
    w.names.sort()
    return w


def five_masks(h: int, w: int, dx: int = 0) -> np.ndarray:
    """Five masks on an ``h x w`` image (a disc, rectangles, a ring), moved ``dx`` px right."""
    yy, xx = np.mgrid[0:h, 0:w]
    xx = xx - dx
    masks = np.stack(
        [
            (yy - 0.45 * h) ** 2 + (xx - 0.35 * w) ** 2 < (0.2 * h) ** 2,
            (yy < 0.3 * h) & (xx > 0.55 * w),
            (yy > 0.8 * h),
            (xx < 0.1 * w) & (yy > 0.2 * h) & (yy < 0.7 * h),
            ((yy - 0.5 * h) ** 2 + (xx - 0.7 * w) ** 2 < (0.25 * h) ** 2)
            & ((yy - 0.5 * h) ** 2 + (xx - 0.7 * w) ** 2 > (0.12 * h) ** 2),
        ]
    )
    return masks

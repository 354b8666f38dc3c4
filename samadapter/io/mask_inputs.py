"""Masks given by the user (``samadapter classify IMAGE --masks FILE``) for the classifier to name.

:func:`read_mask_input` takes any of:

* **a COCO JSON file** (``.json``):

  - a COCO *dataset* dict (``images``, ``annotations``, ``categories``), e.g. samadapter's own
    ``STEM.json`` or a ground-truth file: the annotations of the image whose ``file_name`` matches
    the image (by base name, then by stem), or of the only image when there is one;
  - a *results* list (``[{"image_id", "segmentation", "score", ...}, ...]``) as models write it,
    or SAM's ``scripts/amg.py --convert-to-rle`` output (records with ``segmentation``,
    ``predicted_iou``, ``stability_score``, ``point_coords``, ``crop_box``, no image id): all
    records when they belong to one image (or carry no ``image_id``), else those of ``image_id``;

  ``segmentation`` may be an RLE (``counts`` as string or uncompressed list) or polygons (COCO
  convention, rasterised with pycocotools). SAM's per-mask fields are kept when present.
* **a folder of binary mask images**: one mask per image file in it (``.png``, ``.bmp``, ``.tif``,
  ... sorted by name, numbers in names compared as numbers; hidden files and other files ignored).
  A pixel is in the mask when its value is non-zero (the alpha channel decides when the image has
  transparency; JPEG / WebP, being lossy, are thresholded at 128 instead of 0).
* **a label image** (any other image file, e.g. a label PNG): one mask per distinct non-zero
  value, in increasing value order. Palette images use the palette index, colour images the colour
  (black is 0). A single binary mask PNG thus gives one mask.

Masks must have the image's size: samadapter never resizes them. Masks of a size other than the
image's, empty masks, unreadable files and undecodable records are reported **per item** in one
:class:`MaskInputError` (or skipped and listed in :attr:`MaskInput.skipped` with
``skip_invalid=True``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from samadapter.errors import ImageError
from samadapter.io.images import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from samadapter.modeling.proposer import Proposals

LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")
"""Mask files thresholded at 128 rather than 0 (compression noise)."""

MAX_LISTED_PROBLEMS = 20
"""At most this many bad items are spelled out in one error message."""


class MaskInputError(ImageError):
    """Masks given as input that cannot be used.

    Args:
        message: what is wrong, naming the file.
        problems: one line per bad item (``"annotation id 7: empty mask"``).
        hint: how to fix it.
    """

    def __init__(self, message: str, problems: Sequence[str] = (), hint: str | None = None
                 ) -> None:
        self.problems = list(problems)
        listed = "; ".join(self.problems[:MAX_LISTED_PROBLEMS])
        more = len(self.problems) - MAX_LISTED_PROBLEMS
        if more > 0:
            listed += f"; and {more} more"
        super().__init__(f"{message}: {listed}" if listed else message, hint=hint)


@dataclass
class MaskInput:
    """Masks read from a file or folder, one row per mask.

    Attributes:
        masks: ``[N, H, W]`` bool at the image's size, none empty.
        sources: where each mask came from, e.g. ``"annotation id 7"``, ``"masks/003.png"``,
            ``"label 12"``.
        categories: the class name the input gave each mask (COCO category), else ``None``.
        scores: ``[N]`` float32 the input's ``score`` field (NaN when absent).
        predicted_iou: ``[N]`` float32 SAM's field (NaN when absent).
        stability_score: ``[N]`` float32 SAM's field (NaN when absent).
        point_coords: ``[N, 2]`` float32 SAM's prompt point ``(x, y)`` (NaN when absent).
        crop_box: ``[N, 4]`` float32 SAM's crop box XYWH (the whole image when absent).
        skipped: the bad items left out (only with ``skip_invalid=True``), one line each.
    """

    masks: np.ndarray
    sources: list[str]
    categories: list[str | None]
    scores: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    point_coords: np.ndarray
    crop_box: np.ndarray
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.masks)

    def to_proposals(self) -> Proposals:
        """The masks as :class:`~samadapter.modeling.proposer.Proposals` for
        :meth:`Segmenter.classify <samadapter.pipeline.Segmenter.classify>`, SAM's fields kept."""
        from samadapter.modeling.proposer import Proposals

        return Proposals(masks=self.masks, predicted_iou=self.predicted_iou,
                         stability_score=self.stability_score, point_coords=self.point_coords,
                         crop_box=self.crop_box)


@dataclass
class _Item:
    mask: np.ndarray
    source: str
    category: str | None = None
    score: float = np.nan
    predicted_iou: float = np.nan
    stability_score: float = np.nan
    point: tuple[float, float] = (np.nan, np.nan)
    crop_box: tuple[float, float, float, float] | None = None


def read_mask_input(path: str | os.PathLike[str], image_size: tuple[int, int],
                    image_name: str | None = None, *, image_id: int | None = None,
                    skip_invalid: bool = False, ignore_values: Iterable[int] = (0,)
                    ) -> MaskInput:
    """Read user-given masks for one image (formats in the module docstring).

    Args:
        path: a ``.json`` file, a folder of mask images, or a label image.
        image_size: ``(H, W)`` of the image the masks belong to.
        image_name: the image's file name, to pick its annotations from a multi-image COCO file.
        image_id: pick the annotations of this image id instead (COCO files only).
        skip_invalid: leave out bad items (listed in :attr:`MaskInput.skipped`) instead of
            failing; still fails when no mask is left.
        ignore_values: label-image values that are not masks (background; e.g. ``(0, 255)`` for
            label maps whose 255 means "ignore").

    Returns:
        The masks and where each came from.

    Raises:
        MaskInputError: the path is missing or unreadable, no mask can be found for the image, or
            (without ``skip_invalid``) any item is bad: the message lists each bad item.
    """
    p = Path(path)
    size = (int(image_size[0]), int(image_size[1]))
    if not p.exists():
        raise MaskInputError(f"mask input {p} does not exist", hint="check the --masks path")
    if p.is_dir():
        items, problems = _read_folder(p, size)
    elif p.suffix.lower() == ".json":
        items, problems = _read_coco(p, size, image_name, image_id)
    else:
        items, problems = _read_label_image(p, size, ignore_values)
    if problems and not skip_invalid:
        raise MaskInputError(f"{len(problems)} of {len(items) + len(problems)} masks in {p} "
                             f"cannot be used", problems,
                             hint="each mask must be readable, non-empty and of the image's "
                                  f"size {size[0]}x{size[1]} (HxW)")
    if not items:
        raise MaskInputError(f"no usable masks in {p}", problems,
                             hint="give a COCO JSON, a folder of mask PNGs or a label PNG")
    n = len(items)
    w_h = np.array([size[1], size[0]], dtype=np.float32)
    return MaskInput(
        masks=np.stack([it.mask for it in items]),
        sources=[it.source for it in items],
        categories=[it.category for it in items],
        scores=np.array([it.score for it in items], dtype=np.float32),
        predicted_iou=np.array([it.predicted_iou for it in items], dtype=np.float32),
        stability_score=np.array([it.stability_score for it in items], dtype=np.float32),
        point_coords=np.array([it.point for it in items], dtype=np.float32).reshape(n, 2),
        crop_box=np.array([it.crop_box if it.crop_box is not None else (0, 0, *w_h)
                           for it in items], dtype=np.float32).reshape(n, 4),
        skipped=problems,
    )


def _check(mask: np.ndarray, size: tuple[int, int], source: str) -> str | None:
    """A problem line for a mask of the wrong size or an empty one, else ``None``."""
    if mask.shape != size:
        h, w = mask.shape[:2]
        why = " (transposed: an EXIF rotation?)" if (w, h) == size else ""
        return f"{source}: mask is {h}x{w} but the image is {size[0]}x{size[1]} (HxW){why}"
    if not mask.any():
        return f"{source}: empty mask"
    return None


# ---------------------------------------------------------------------------------------------
# Folder of binary masks


def _natural_key(name: str) -> list[Any]:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower())
            for t in re.split(r"(\d+)", name) if t]


def _read_folder(folder: Path, size: tuple[int, int]) -> tuple[list[_Item], list[str]]:
    files = sorted((f for f in folder.iterdir()
                    if f.is_file() and not f.name.startswith(".")
                    and f.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda f: _natural_key(f.name))
    if not files:
        raise MaskInputError(f"no mask images in folder {folder}",
                             hint=f"expected files ending in {', '.join(IMAGE_SUFFIXES)}")
    items, problems = [], []
    for f in files:
        source = f"{folder.name}/{f.name}"
        try:
            mask = _binary_mask(f)
        except _Unreadable as e:
            problems.append(f"{source}: {e}")
            continue
        problem = _check(mask, size, source)
        if problem:
            problems.append(problem)
        else:
            items.append(_Item(mask, source))
    return items, problems


class _Unreadable(Exception):
    """An image file that cannot be decoded; the message says why (without the path)."""


def _open_image(path: Path) -> Image.Image:
    """Open and decode an image file, or raise :class:`_Unreadable` saying why not."""
    try:
        if path.stat().st_size == 0:
            raise _Unreadable("empty file (0 bytes)")
        img = Image.open(path)
        img.load()
    except UnidentifiedImageError:
        raise _Unreadable("not an image PIL can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise _Unreadable(f"unreadable ({msg})") from None
    return img


def binary_mask_from_image(path: str | os.PathLike[str]) -> np.ndarray:
    """One binary mask from an image file.

    Non-zero pixels are in the mask (any channel, 16-bit included); when the image has a varying
    alpha channel, the alpha decides. JPEG / WebP are thresholded at 128 (compression noise).

    Returns:
        ``[H, W]`` bool.

    Raises:
        MaskInputError: the file is unreadable.
    """
    try:
        return _binary_mask(Path(path))
    except _Unreadable as e:
        raise MaskInputError(f"mask file {path}: {e}") from None


def _binary_mask(p: Path) -> np.ndarray:
    with _open_image(p) as img:
        mode = img.mode
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
            alpha = np.asarray(img.convert("RGBA"))[..., 3]
            if alpha.min() != alpha.max():
                return alpha >= (128 if p.suffix.lower() in LOSSY_SUFFIXES else 1)
            img = img.convert("RGB")
        elif mode == "P":
            img = img.convert("RGB")  # palette indices mean nothing; the colours do
        arr = np.asarray(img)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    threshold = 128 if p.suffix.lower() in LOSSY_SUFFIXES else 1
    return np.asarray(arr >= threshold) if arr.dtype != bool else arr.copy()


# ---------------------------------------------------------------------------------------------
# Label image


def label_values(path: str | os.PathLike[str]) -> tuple[np.ndarray, str]:
    """The label value of every pixel of a label image.

    Returns:
        ``([H, W] int64 values, kind)``: kind ``"label"`` for palette / grayscale images (palette
        index or gray value), ``"colour"`` for colour images (``R << 16 | G << 8 | B``, 0 where
        fully transparent).

    Raises:
        MaskInputError: the file is unreadable.
    """
    try:
        img = _open_image(Path(path))
    except _Unreadable as e:
        raise MaskInputError(f"label image {path}: {e}", hint="give a label PNG, a folder "
                             "of mask PNGs or a COCO JSON") from None
    with img:
        mode = img.mode
        if mode in ("P", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "1"):
            return np.asarray(img).astype(np.int64), "label"
        if mode == "LA":
            return np.asarray(img)[..., 0].astype(np.int64), "label"
        rgba = np.asarray(img.convert("RGBA")).astype(np.int64)
    values = (rgba[..., 0] << 16) | (rgba[..., 1] << 8) | rgba[..., 2]
    values[rgba[..., 3] == 0] = 0
    return values, "colour"


def _read_label_image(path: Path, size: tuple[int, int], ignore_values: Iterable[int]
                      ) -> tuple[list[_Item], list[str]]:
    values, kind = label_values(path)
    if values.shape != size:
        h, w = values.shape
        raise MaskInputError(f"label image {path} is {h}x{w} but the image is "
                             f"{size[0]}x{size[1]} (HxW)",
                             hint="masks must be at the image's resolution")
    present, inverse = np.unique(values, return_inverse=True)
    inverse = inverse.reshape(values.shape)
    ignore = set(int(v) for v in ignore_values)
    items = []
    for k, value in enumerate(present.tolist()):
        if value in ignore:
            continue
        source = f"label {value}" if kind == "label" else f"colour #{value:06x}"
        items.append(_Item(inverse == k, source))
    return items, []


# ---------------------------------------------------------------------------------------------
# COCO JSON


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise MaskInputError(f"{path} is not a UTF-8 JSON file") from None
    except json.JSONDecodeError as e:
        raise MaskInputError(f"{path} is not valid JSON ({e})") from None
    except OSError as e:
        raise MaskInputError(f"cannot read {path}: {e.strerror or e}") from None


def _pick_image(path: Path, images: list[dict[str, Any]], image_name: str | None,
                image_id: int | None) -> dict[str, Any] | None:
    """The ``images`` entry the masks are for (``None`` when the file lists no images)."""
    if image_id is not None:
        found = [im for im in images if im.get("id") == image_id]
        if not found:
            raise MaskInputError(f"{path} has no image with id {image_id}")
        return found[0]
    if not images:
        return None
    if len(images) == 1:
        return images[0]
    if image_name:
        name = Path(image_name).name
        for key in (lambda s: Path(s).name, lambda s: Path(s).stem):
            found = [im for im in images if key(str(im.get("file_name", ""))) == key(name)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise MaskInputError(f"{path} has {len(found)} images named like {name}",
                                     hint="pass the image id")
    listed = ", ".join(str(im.get("file_name")) for im in images[:5])
    raise MaskInputError(f"{path} holds {len(images)} images and none is named "
                         f"{Path(image_name).name if image_name else '(no name given)'}",
                         hint=f"its images include {listed}")


def _records(path: Path, data: Any, image_name: str | None, image_id: int | None
             ) -> tuple[list[dict[str, Any]], dict[Any, str], tuple[int, int] | None]:
    """The annotation records of the image, the category names and the image's listed size."""
    if isinstance(data, dict) and "annotations" in data:
        images = [im for im in data.get("images") or [] if isinstance(im, dict)]
        image = _pick_image(path, images, image_name, image_id)
        categories = {c.get("id"): str(c.get("name")) for c in data.get("categories") or []
                      if isinstance(c, dict)}
        records = [a for a in data["annotations"] if isinstance(a, dict)]
        listed_size = None
        if image is not None:
            records = [a for a in records if a.get("image_id", image.get("id")) == image.get("id")]
            if "height" in image and "width" in image:
                listed_size = (int(image["height"]), int(image["width"]))
        return records, categories, listed_size
    if isinstance(data, dict) and "segmentation" in data:
        data = [data]
    if not isinstance(data, list):
        raise MaskInputError(f"{path} is neither a COCO dataset (with 'annotations') nor a list "
                             "of mask records", hint="give a COCO JSON, e.g. a results list")
    records = [r for r in data if isinstance(r, dict)]
    ids = {r["image_id"] for r in records if "image_id" in r}
    if image_id is not None:
        records = [r for r in records if r.get("image_id") == image_id]
    elif len(ids) > 1:
        raise MaskInputError(f"{path} holds results for {len(ids)} images and no file names",
                             hint="pass the image id, or a COCO dataset with 'images'")
    return records, {}, None


def _decode(segmentation: Any, size: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` bool from an RLE dict (compressed or not) or a list of polygons.

    Raises:
        ValueError: an undecodable segmentation (message says why).
    """
    if isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            raise ValueError("RLE without 'counts' / 'size'")
        try:
            h, w = (int(v) for v in segmentation["size"])
            counts = segmentation["counts"]
            if isinstance(counts, list):
                if sum(int(c) for c in counts) != h * w:
                    raise ValueError(f"its run lengths do not add up to {h}x{w} pixels")
                rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
            else:
                rle = {"size": [h, w],
                       "counts": counts.encode("utf-8") if isinstance(counts, str) else counts}
            return np.asarray(mask_utils.decode(rle), dtype=bool)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"corrupt RLE ({e})") from None
    if isinstance(segmentation, list) and segmentation:
        polys = segmentation if isinstance(segmentation[0], list) else [segmentation]
        try:
            coords = [[float(v) for v in poly] for poly in polys]
        except (TypeError, ValueError):
            raise ValueError("polygon coordinates that are not numbers") from None
        if any(len(poly) < 6 or len(poly) % 2 for poly in coords):
            raise ValueError("a polygon with fewer than 3 (x, y) points")
        rles = mask_utils.frPyObjects(coords, *size)
        return np.asarray(mask_utils.decode(mask_utils.merge(rles)), dtype=bool)
    raise ValueError("no segmentation (boxes are not masks)")


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    return tuple(float(v) for v in arr[:n]) if arr.size >= n else None


def _read_coco(path: Path, size: tuple[int, int], image_name: str | None,
               image_id: int | None) -> tuple[list[_Item], list[str]]:
    data = _load_json(path)
    records, categories, listed_size = _records(path, data, image_name, image_id)
    if not records:
        raise MaskInputError(f"{path} has no annotations for this image")
    items, problems = [], []
    for n, rec in enumerate(records):
        source = f"annotation id {rec['id']}" if "id" in rec else f"record {n}"
        try:
            mask = _decode(rec.get("segmentation"), listed_size or size)
        except ValueError as e:
            problems.append(f"{source}: {e}")
            continue
        problem = _check(mask, size, source)
        if problem:
            problems.append(problem)
            continue
        point = _floats(rec.get("point_coords"), 2)
        crop = _floats(rec.get("crop_box"), 4)
        iou, stability, score = (_floats(rec.get(k), 1) for k in
                                 ("predicted_iou", "stability_score", "score"))
        items.append(_Item(
            mask, source, category=categories.get(rec.get("category_id")),
            score=score[0] if score else np.nan,
            predicted_iou=iou[0] if iou else np.nan,
            stability_score=stability[0] if stability else np.nan,
            point=(point[0], point[1]) if point else (np.nan, np.nan),
            crop_box=(crop[0], crop[1], crop[2], crop[3]) if crop else None))
    return items, problems

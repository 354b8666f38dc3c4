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

Masks must have the image's size: samadapter never resizes them. Files are untrusted: every size
a file declares (a label image's or mask image's header, an RLE's ``size``, an ``images`` entry's
``height`` / ``width``) is compared with the image's **before** anything is decoded, polygon
coordinates must be finite and lie within one image size of the image, and RLE run lengths must
add up to the image's pixel count. Masks of a size other than the image's, empty masks, unreadable
files and undecodable records are reported **per item** in one :class:`MaskInputError` (or skipped
and listed in :attr:`MaskInput.skipped` with ``skip_invalid=True``).

At most ``max_masks`` masks (default :data:`DEFAULT_MAX_MASKS`, ``samadapter classify
--max-masks``) are kept, so that a label image with 65,535 values cannot ask for 65,535 full-size
masks: from a COCO file or a label image the largest masks are kept (their areas are known
before any mask is decoded), from a folder the first files in name order (the others are not
opened). :attr:`MaskInput.notes` then says how many were dropped. Only the kept masks are ever
decoded, each straight into the one ``[N, H, W]`` array returned.
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
    from samadapter.modeling.mask_generator import Proposals

LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")
"""Mask files thresholded at 128 rather than 0 (compression noise)."""

MAX_LISTED_PROBLEMS = 20
"""At most this many bad items are spelled out in one error message."""

DEFAULT_MAX_MASKS = 1000
"""Most masks taken from one mask input unless told otherwise (``classify --max-masks``).

Generators give far fewer (SAM's automatic generator: a few hundred at most); the limit keeps a
hostile or mistaken input (a label image with 65,535 values) from asking for gigabytes."""

MAX_RLE_CHUNKS = 7
"""Most 5-bit chunks one value of a compressed RLE string may use (7 x 5 bits > 2**31 pixels)."""

POLYGON_STEPS_PER_SIDE = 1000
"""A record's polygons may together run at most this many pixel steps per pixel of the image's
height + width (a very jagged outline needs a few dozen): rasterising costs memory in proportion
to the outline's length, so a few huge polygons must not ask for gigabytes."""


class MaskInputError(ImageError):
    """Masks given as input that cannot be used.

    Args:
        message: what is wrong, naming the file.
        problems: one line per bad item (``"annotation id 7: empty mask"``).
        hint: how to fix it.
    """

    def __init__(self, message: str, problems: Sequence[str] = (), hint: str | None = None) -> None:
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
        dropped: how many good masks were left out because of ``max_masks``.
        notes: one line per thing the user should know (e.g. that masks were dropped).
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
    dropped: int = 0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.masks)

    def to_proposals(self) -> Proposals:
        """The masks as :class:`~samadapter.modeling.proposer.Proposals` for
        :meth:`Segmenter.classify <samadapter.pipeline.Segmenter.classify>`, SAM's fields kept."""
        from samadapter.modeling.mask_generator import Proposals

        return Proposals(
            masks=self.masks,
            predicted_iou=self.predicted_iou,
            stability_score=self.stability_score,
            point_coords=self.point_coords,
            crop_box=self.crop_box,
        )


@dataclass
class _Meta:
    """Everything about one mask but its pixels."""

    source: str
    category: str | None = None
    score: float = np.nan
    predicted_iou: float = np.nan
    stability_score: float = np.nan
    point: tuple[float, float] = (np.nan, np.nan)
    crop_box: tuple[float, float, float, float] | None = None


@dataclass
class _Read:
    """What one reader found: the kept masks ``[N, H, W]`` and their metadata, the bad items,
    and how many good masks the limit left out (``kept`` says which were kept)."""

    masks: np.ndarray
    metas: list[_Meta]
    problems: list[str]
    dropped: int = 0
    kept: str = ""


def read_mask_input(
    path: str | os.PathLike[str],
    image_size: tuple[int, int],
    image_name: str | None = None,
    *,
    image_id: int | None = None,
    skip_invalid: bool = False,
    ignore_values: Iterable[int] = (0,),
    max_masks: int = DEFAULT_MAX_MASKS,
) -> MaskInput:
    """Read user-given masks for one image (formats and limits in the module docstring).

    Args:
        path: a ``.json`` file, a folder of mask images, or a label image.
        image_size: ``(H, W)`` of the image the masks belong to.
        image_name: the image's file name, to pick its annotations from a multi-image COCO file.
        image_id: pick the annotations of this image id instead (COCO files only).
        skip_invalid: leave out bad items (listed in :attr:`MaskInput.skipped`) instead of
            failing; still fails when no mask is left.
        ignore_values: label-image values that are not masks (background; e.g. ``(0, 255)`` for
            label maps whose 255 means "ignore").
        max_masks: keep at most this many masks (the largest; from a folder the first files);
            :attr:`MaskInput.notes` says how many were dropped.

    Returns:
        The masks and where each came from.

    Raises:
        MaskInputError: the path is missing or unreadable, no mask can be found for the image, or
            (without ``skip_invalid``) any item is bad: the message lists each bad item.
    """
    p = Path(path)
    size = (int(image_size[0]), int(image_size[1]))
    if max_masks < 1:
        raise MaskInputError(
            f"max_masks must be at least 1, got {max_masks}", hint="give --max-masks 1 or more"
        )
    if not p.exists():
        raise MaskInputError(f"mask input {p} does not exist", hint="check the --masks path")
    if p.is_dir():
        read = _read_folder(p, size, max_masks)
    elif p.suffix.lower() == ".json":
        read = _read_coco(p, size, image_name, image_id, max_masks)
    else:
        read = _read_label_image(p, size, ignore_values, max_masks)
    problems, metas = read.problems, read.metas
    if problems and not skip_invalid:
        raise MaskInputError(
            f"{len(problems)} of {len(metas) + read.dropped + len(problems)} "
            f"masks in {p} cannot be used",
            problems,
            hint="each mask must be readable, non-empty and of the image's "
            f"size {size[0]}x{size[1]} (HxW)",
        )
    if not metas:
        raise MaskInputError(
            f"no usable masks in {p}",
            problems,
            hint="give a COCO JSON, a folder of mask PNGs or a label PNG",
        )
    n = len(metas)
    notes = []
    if read.dropped:
        notes.append(
            f"{p.name} holds more than {max_masks} masks (the --max-masks limit): kept "
            f"{read.kept}, left out {read.dropped}; raise --max-masks to keep more"
        )
    w_h = np.array([size[1], size[0]], dtype=np.float32)
    return MaskInput(
        masks=read.masks,
        sources=[m.source for m in metas],
        categories=[m.category for m in metas],
        scores=np.array([m.score for m in metas], dtype=np.float32),
        predicted_iou=np.array([m.predicted_iou for m in metas], dtype=np.float32),
        stability_score=np.array([m.stability_score for m in metas], dtype=np.float32),
        point_coords=np.array([m.point for m in metas], dtype=np.float32).reshape(n, 2),
        crop_box=np.array(
            [m.crop_box if m.crop_box is not None else (0, 0, *w_h) for m in metas],
            dtype=np.float32,
        ).reshape(n, 4),
        skipped=problems,
        dropped=read.dropped,
        notes=notes,
    )


def _size_problem(shape: tuple[int, int], size: tuple[int, int]) -> str:
    """``"mask is 20x30 but the image is 40x60 (HxW)"`` (plus an EXIF hint when transposed)."""
    h, w = shape
    why = " (transposed: an EXIF rotation?)" if (w, h) == size else ""
    return f"mask is {h}x{w} but the image is {size[0]}x{size[1]} (HxW){why}"


def _short(value: Any, limit: int = 40) -> str:
    """``value`` as a short string for a message (long or nested values cut)."""
    text = (
        str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else repr(value)
    )
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _whole(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (``3``, ``3.0``), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


# ---------------------------------------------------------------------------------------------
# Folder of binary masks


def _natural_key(name: str) -> list[Any]:
    return [
        (0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name) if t
    ]


def _read_folder(folder: Path, size: tuple[int, int], max_masks: int) -> _Read:
    files = sorted(
        (
            f
            for f in folder.iterdir()
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES
        ),
        key=lambda f: _natural_key(f.name),
    )
    if not files:
        raise MaskInputError(
            f"no mask images in folder {folder}",
            hint=f"expected files ending in {', '.join(IMAGE_SUFFIXES)}",
        )
    # Zero-filled: pages of rows never written (bad files) are never touched.
    masks = np.zeros((min(len(files), max_masks), *size), dtype=bool)
    metas: list[_Meta] = []
    problems: list[str] = []
    dropped = 0
    for i, f in enumerate(files):
        if len(metas) == max_masks:
            dropped = len(files) - i  # not even opened
            break
        source = f"{folder.name}/{f.name}"
        try:
            mask = _binary_mask(f, size)
        except _WrongSize as e:
            problems.append(f"{source}: {_size_problem(e.shape, size)}")
            continue
        except _Unreadable as e:
            problems.append(f"{source}: {e}")
            continue
        if not mask.any():
            problems.append(f"{source}: empty mask")
            continue
        masks[len(metas)] = mask
        metas.append(_Meta(source))
    return _Read(
        masks[: len(metas)], metas, problems, dropped, f"the first {len(metas)} files by name"
    )


class _Unreadable(Exception):
    """An image file that cannot be decoded; the message says why (without the path)."""


class _WrongSize(Exception):
    """An image file whose header gives another size than the image's (nothing decoded)."""

    def __init__(self, shape: tuple[int, int]) -> None:
        super().__init__(f"{shape[0]}x{shape[1]}")
        self.shape = shape


def _open_image(path: Path, size: tuple[int, int] | None = None) -> Image.Image:
    """Open and decode an image file.

    Args:
        path: the file.
        size: ``(H, W)`` it must have; checked from the header, before decoding.

    Raises:
        _Unreadable: the file cannot be decoded (the message says why).
        _WrongSize: the header gives another size than ``size``.
    """
    try:
        if path.stat().st_size == 0:
            raise _Unreadable("empty file (0 bytes)")
        img = Image.open(path)
        if size is not None and (img.height, img.width) != size:
            shape = (img.height, img.width)
            img.close()
            raise _WrongSize(shape)
        img.load()
    except UnidentifiedImageError:
        raise _Unreadable("not an image PIL can read") from None
    except Image.DecompressionBombError as e:
        raise _Unreadable(f"unreadable ({e})") from None
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


def _binary_mask(p: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    with _open_image(p, size) as img:
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


def label_values(
    path: str | os.PathLike[str], size: tuple[int, int] | None = None
) -> tuple[np.ndarray, str]:
    """The label value of every pixel of a label image.

    Args:
        path: the label image.
        size: ``(H, W)`` it must have; checked from the file's header before decoding.

    Returns:
        ``([H, W] int64 values, kind)``: kind ``"label"`` for palette / grayscale images (palette
        index or gray value), ``"colour"`` for colour images (``R << 16 | G << 8 | B``, 0 where
        fully transparent).

    Raises:
        MaskInputError: the file is unreadable, or of another size than ``size``.
    """
    try:
        img = _open_image(Path(path), size)
    except _Unreadable as e:
        raise MaskInputError(
            f"label image {path}: {e}",
            hint="give a label PNG, a folder of mask PNGs or a COCO JSON",
        ) from None
    except _WrongSize as e:
        assert size is not None
        problem = _size_problem(e.shape, size).removeprefix("mask ")
        raise MaskInputError(
            f"label image {path} {problem}", hint="masks must be at the image's resolution"
        ) from None
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


def _read_label_image(
    path: Path, size: tuple[int, int], ignore_values: Iterable[int], max_masks: int
) -> _Read:
    values, kind = label_values(path, size)
    present, inverse, counts = np.unique(
        values.reshape(-1), return_inverse=True, return_counts=True
    )
    del values
    wanted = np.flatnonzero(
        ~np.isin(present, np.array([int(v) for v in ignore_values], dtype=np.int64))
    )
    dropped = 0
    if len(wanted) > max_masks:  # the largest, ties by value; then back in value order
        order = np.lexsort((present[wanted], -counts[wanted]))
        dropped = len(wanted) - max_masks
        wanted = np.sort(wanted[order[:max_masks]])
    slot = np.full(len(present), -1, dtype=np.int64)
    slot[wanted] = np.arange(len(wanted))
    pixel_slot = slot[inverse.reshape(-1)]
    del inverse
    where = np.flatnonzero(pixel_slot >= 0)
    masks = np.zeros((len(wanted), *size), dtype=bool)
    if len(wanted):  # one pass over the pixels, no per-value comparison
        masks.reshape(len(wanted), -1)[pixel_slot[where], where] = True
    metas = [
        _Meta(f"label {v}" if kind == "label" else f"colour #{v:06x}")
        for v in present[wanted].tolist()
    ]
    return _Read(masks, metas, [], dropped, f"the {len(wanted)} largest")


# ---------------------------------------------------------------------------------------------
# COCO JSON


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise MaskInputError(f"{path} is not a UTF-8 JSON file") from None
    except json.JSONDecodeError as e:
        raise MaskInputError(f"{path} is not valid JSON ({e})") from None
    except RecursionError:
        raise MaskInputError(f"{path} is nested too deeply to be a COCO JSON") from None
    except OSError as e:
        raise MaskInputError(f"cannot read {path}: {e.strerror or e}") from None


def _key(value: Any) -> int | str | None:
    """An id usable as a dict key (ints and strings), else ``None``."""
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def _list_field(path: Path, data: dict[str, Any], name: str) -> list[Any]:
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MaskInputError(
            f"{path}: '{name}' is {_short(value)}, not a list",
            hint="give a COCO JSON: 'images', 'annotations' and 'categories' are lists",
        )
    return value


def _pick_image(
    path: Path, images: list[dict[str, Any]], image_name: str | None, image_id: int | None
) -> dict[str, Any] | None:
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
                raise MaskInputError(
                    f"{path} has {len(found)} images named like {name}", hint="pass the image id"
                )
    listed = ", ".join(_short(im.get("file_name")) for im in images[:5])
    raise MaskInputError(
        f"{path} holds {len(images)} images and none is named "
        f"{Path(image_name).name if image_name else '(no name given)'}",
        hint=f"its images include {listed}",
    )


def _listed_size(path: Path, image: dict[str, Any]) -> tuple[int, int] | None:
    """The ``(height, width)`` an ``images`` entry gives, ``None`` when it gives none."""
    if "height" not in image and "width" not in image:
        return None
    dims = []
    for name in ("height", "width"):
        value = _whole(image.get(name))
        if value is None or value < 1:
            raise MaskInputError(
                f"{path}: image {_short(image.get('file_name', '?'))} has "
                f"{name} {_short(image.get(name))}, not a whole number >= 1",
                hint="fix the 'images' entry or leave height / width out",
            )
        dims.append(value)
    return dims[0], dims[1]


def _records(
    path: Path, data: Any, image_name: str | None, image_id: int | None
) -> tuple[list[dict[str, Any]], dict[Any, str], tuple[int, int] | None]:
    """The annotation records of the image, the category names and the image's listed size."""
    if isinstance(data, dict) and "annotations" in data:
        images = [im for im in _list_field(path, data, "images") if isinstance(im, dict)]
        image = _pick_image(path, images, image_name, image_id)
        categories = {
            _key(c.get("id")): _short(c.get("name"), 200)
            for c in _list_field(path, data, "categories")
            if isinstance(c, dict)
        }
        categories.pop(None, None)
        records = [a for a in _list_field(path, data, "annotations") if isinstance(a, dict)]
        listed_size = None
        if image is not None:
            records = [a for a in records if a.get("image_id", image.get("id")) == image.get("id")]
            listed_size = _listed_size(path, image)
        return records, categories, listed_size
    if isinstance(data, dict) and "segmentation" in data:
        data = [data]
    if not isinstance(data, list):
        raise MaskInputError(
            f"{path} is neither a COCO dataset (with 'annotations') nor a list of mask records",
            hint="give a COCO JSON, e.g. a results list",
        )
    records = [r for r in data if isinstance(r, dict)]
    ids = {_short(r["image_id"]) for r in records if "image_id" in r}
    if image_id is not None:
        records = [r for r in records if r.get("image_id") == image_id]
    elif len(ids) > 1:
        raise MaskInputError(
            f"{path} holds results for {len(ids)} images and no file names",
            hint="pass the image id, or a COCO dataset with 'images'",
        )
    return records, {}, None


def rle_string_counts(counts: str) -> np.ndarray:
    """The run lengths of a compressed COCO RLE string, decoded without trusting it.

    The string holds one value per run, each in 5-bit chunks (``chr(chunk + 48)``; bit ``0x20``:
    more chunks follow, bit ``0x10`` of the last chunk: negative); from the fourth value on, each
    is stored as the difference to the value two places before.

    Args:
        counts: the ``counts`` string.

    Returns:
        ``[R]`` int64 run lengths (not checked for sign or total: the caller does).

    Raises:
        ValueError: a character outside the alphabet, a value of more than
            :data:`MAX_RLE_CHUNKS` chunks, or a string cut inside a value.
    """
    if not counts:
        return np.zeros(0, dtype=np.int64)
    try:
        raw = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        raise ValueError("a character outside COCO's RLE alphabet") from None
    if raw.min() < 0 or raw.max() > 63:
        raise ValueError("a character outside COCO's RLE alphabet")
    last = (raw & 0x20) == 0  # the last chunk of each value
    if not last[-1]:
        raise ValueError("the string ends inside a value")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > MAX_RLE_CHUNKS:
        raise ValueError(f"a value longer than {MAX_RLE_CHUNKS} characters")
    position = np.arange(len(raw)) - np.repeat(starts, lengths)  # chunk index inside its value
    values = np.add.reduceat((raw & 0x1F) << (5 * position), starts)
    negative = (raw[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * lengths[negative])
    # Delta coding: value m (m >= 3) adds value m - 2; odd and even positions chain separately.
    values[1::2] = np.cumsum(values[1::2])
    if len(values) > 2:
        values[2::2] = np.cumsum(values[2::2])
    return values


def _check_runs(runs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``runs`` as uint32 after checking they are ``>= 0`` and cover the image exactly."""
    total = size[0] * size[1]
    if len(runs) and int(runs.min()) < 0:
        raise ValueError("a negative run length")
    if len(runs) > total + 1 or int(runs.sum()) != total:
        raise ValueError(f"its run lengths do not add up to {size[0]}x{size[1]} pixels")
    return runs.astype(np.uint32)


def _rle_of(segmentation: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    if "counts" not in segmentation or "size" not in segmentation:
        raise ValueError("RLE without 'counts' / 'size'")
    declared = segmentation["size"]
    dims = [_whole(v) for v in declared] if isinstance(declared, list) else []
    if len(dims) != 2 or dims[0] is None or dims[1] is None:
        raise ValueError(f"RLE size {_short(declared)} is not two whole numbers")
    if (dims[0], dims[1]) != size:  # checked before anything is decoded
        raise ValueError(_size_problem((dims[0], dims[1]), size))
    counts = segmentation["counts"]
    if isinstance(counts, list):
        whole = [_whole(c) for c in counts]
        runs_in = [c for c in whole if c is not None]
        if len(runs_in) != len(whole):
            raise ValueError("RLE run lengths that are not whole numbers")
        if any(c > size[0] * size[1] for c in runs_in):  # (also keeps them within int64)
            raise ValueError(f"its run lengths do not add up to {size[0]}x{size[1]} pixels")
        runs = _check_runs(np.array(runs_in, dtype=np.int64), size)
    elif isinstance(counts, str):
        try:
            runs = _check_runs(rle_string_counts(counts), size)
        except ValueError as e:
            raise ValueError(f"corrupt RLE ({e})") from None
    else:
        raise ValueError(f"RLE counts {_short(counts)} are neither a string nor a list")
    # Re-encoded from the checked run lengths: pycocotools never parses the untrusted string.
    rle: dict[str, Any] = mask_utils.frPyObjects(
        {"size": [size[0], size[1]], "counts": runs.tolist()}, size[0], size[1]
    )
    return rle


def _polygon_rle(segmentation: list[Any], size: tuple[int, int]) -> dict[str, Any]:
    h, w = size
    polys = segmentation if isinstance(segmentation[0], list) else [segmentation]
    coords: list[list[float]] = []
    for poly in polys:
        if not isinstance(poly, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly
        ):
            raise ValueError("polygon coordinates that are not numbers")
        coords.append([float(v) for v in poly])
    if any(len(poly) < 6 or len(poly) % 2 for poly in coords):
        raise ValueError("a polygon with fewer than 3 (x, y) points")
    steps = 0.0
    for poly in coords:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            raise ValueError("polygon coordinates that are NaN or infinite")
        outside = (xy[:, 0] < -w) | (xy[:, 0] > 2 * w) | (xy[:, 1] < -h) | (xy[:, 1] > 2 * h)
        if outside.any():
            x, y = xy[np.argmax(outside)]
            raise ValueError(
                f"a polygon point ({x:.6g}, {y:.6g}) far outside the {w}x{h} (WxH) image"
            )
        steps += float(np.abs(xy - np.roll(xy, 1, axis=0)).max(axis=1).sum())
    if steps > POLYGON_STEPS_PER_SIDE * (h + w):
        raise ValueError(
            f"polygons {steps:.0f} pixels long, too long to rasterise for a {w}x{h} image"
        )
    merged: dict[str, Any] = mask_utils.merge(mask_utils.frPyObjects(coords, h, w))
    return merged


def _segmentation_rle(segmentation: Any, size: tuple[int, int]) -> dict[str, Any]:
    """A checked RLE of the image's size from an RLE dict or polygons, nothing decoded yet.

    Raises:
        ValueError: an unusable segmentation (message says why).
    """
    if isinstance(segmentation, dict):
        return _rle_of(segmentation, size)
    if isinstance(segmentation, list) and segmentation:
        return _polygon_rle(segmentation, size)
    raise ValueError("no segmentation (boxes are not masks)")


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    """The first ``n`` numbers of ``value`` (NaN for those a float32 cannot hold), ``None`` if it
    has fewer."""
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        return None
    if arr.size < n:
        return None
    limit = float(np.finfo(np.float32).max)
    return tuple(float(v) if abs(v) <= limit else float("nan") for v in arr[:n])


def _meta(rec: dict[str, Any], source: str, categories: dict[Any, str]) -> _Meta:
    category = _key(rec.get("category_id"))
    point = _floats(rec.get("point_coords"), 2)
    crop = _floats(rec.get("crop_box"), 4)
    iou, stability, score = (
        _floats(rec.get(k), 1) for k in ("predicted_iou", "stability_score", "score")
    )
    return _Meta(
        source,
        category=categories.get(category) if category is not None else None,
        score=score[0] if score else np.nan,
        predicted_iou=iou[0] if iou else np.nan,
        stability_score=stability[0] if stability else np.nan,
        point=(point[0], point[1]) if point else (np.nan, np.nan),
        crop_box=(crop[0], crop[1], crop[2], crop[3]) if crop and np.isfinite(crop).all() else None,
    )


def _read_coco(
    path: Path, size: tuple[int, int], image_name: str | None, image_id: int | None, max_masks: int
) -> _Read:
    data = _load_json(path)
    records, categories, listed_size = _records(path, data, image_name, image_id)
    if listed_size is not None and listed_size != size:
        raise MaskInputError(
            f"{path} gives its image's size as {listed_size[0]}x"
            f"{listed_size[1]} but the image is {size[0]}x{size[1]} (HxW)",
            hint="the masks belong to another image, or to another resolution of it",
        )
    if not records:
        raise MaskInputError(f"{path} has no annotations for this image")
    found: list[tuple[int, _Meta, dict[str, Any]]] = []
    problems: list[str] = []
    for n, rec in enumerate(records):
        source = f"annotation id {_short(rec['id'])}" if "id" in rec else f"record {n}"
        try:
            rle = _segmentation_rle(rec.get("segmentation"), size)
        except ValueError as e:
            problems.append(f"{source}: {e}")
            continue
        area = int(mask_utils.area(rle))
        if area == 0:
            problems.append(f"{source}: empty mask")
            continue
        found.append((area, _meta(rec, source, categories), rle))
    dropped = 0
    if len(found) > max_masks:  # the largest, ties in file order; then back in file order
        largest = sorted(range(len(found)), key=lambda i: (-found[i][0], i))[:max_masks]
        dropped = len(found) - max_masks
        found = [found[i] for i in sorted(largest)]
    masks = np.empty((len(found), *size), dtype=bool)
    for i, (_, _, rle) in enumerate(found):
        masks[i] = mask_utils.decode(rle)  # one [H, W] mask at a time
    return _Read(masks, [m for _, m, _ in found], problems, dropped, f"the {len(found)} largest")

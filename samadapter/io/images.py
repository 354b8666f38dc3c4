"""Reading input images as ``[H, W, 3]`` uint8 RGB arrays.

Every image goes through :func:`load_image`, which applies the EXIF orientation, converts any PIL
mode to RGB and optionally caps the long side. Problems a user can fix (missing, empty, corrupt or
non-image files) raise :class:`~samadapter.errors.ImageError` naming the path.

Conversion rules:

* Transparency (``RGBA``, ``LA``, ``PA``, palette or ``RGB``/``L`` images with a transparent
  colour) is composited on **white**. Fully transparent pixels often hold arbitrary colours (black
  or leftovers of an editor), so dropping alpha would show SAM content nobody sees in a viewer.
* 16-bit grayscale (``I;16*``) is scaled to 8 bit by ``>> 8`` (so ``65535 -> 255``), never clipped.
  32-bit integer (``I``) images whose values fit in 16 bit are treated the same way; larger ranges
  are scaled linearly by their maximum. Float (``F``) images in ``[0, 1]`` are multiplied by 255,
  others scaled by their maximum.
* Everything else (``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ...) uses PIL's
  ``convert("RGB")``.

Size rules (batch runs):

* Images with more than ``max_pixels`` pixels (:data:`DEFAULT_MAX_PIXELS`, 64 MP, in batch runs)
  are downscaled to that many pixels, aspect ratio kept, with a warning, before any model sees
  them. JPEGs are decoded directly at a reduced scale (libjpeg's DCT scaling), other formats are
  decoded once at full size and shrunk in their own mode before the RGB conversion, so a
  12000 x 12000 PNG needs about its 8-bit size in memory, not gigabytes.
* PIL's decompression-bomb guard stays on: files declaring more than twice
  ``PIL.Image.MAX_IMAGE_PIXELS`` (about 179 MP) are refused with an :class:`ImageError` before
  decoding; its warning for 89-179 MP files is replaced by the downscale warning above.
* :func:`check_image_shape` refuses images too thin for the models (a side under
  :data:`MIN_SIDE` pixels or an aspect ratio over :data:`MAX_ASPECT`): SAM's resize would give
  them a zero-pixel side and CLIP's short-side resize a huge long side. Crop or pad them first.
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from samadapter.errors import ImageError

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
"""Lower-case file suffixes (with the dot) that are treated as images when scanning folders."""

DEFAULT_MAX_PIXELS = 64_000_000
"""Batch runs downscale images above this many pixels (with a warning) before the models."""
MIN_SIDE = 8
"""Images with a side shorter than this (pixels) are refused as too thin for the models."""
MAX_ASPECT = 20.0
"""Images whose long side exceeds this multiple of the short side are refused as too thin."""

# load_image reports large images itself (downscale warning or ImageError); PIL's own warning
# for 89-179 MP files would only duplicate that, from reader threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_WHITE = (255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def load_image(
    path: str | os.PathLike[str],
    max_size: int | None = None,
    *,
    max_pixels: int | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Read an image file as RGB.

    Args:
        path: image file (any format PIL reads).
        max_size: if given, images whose long side exceeds it are shrunk (aspect ratio kept,
            area resampling) so the long side equals ``max_size``. Smaller images are unchanged.
        max_pixels: if given, images with more pixels are shrunk to at most this many (aspect
            ratio kept) while decoding, and ``on_warning`` is told.
        on_warning: receives one line per downscale made for ``max_pixels``.

    Returns:
        ``[H, W, 3]`` uint8 RGB array, C-contiguous, EXIF orientation applied.

    Raises:
        ImageError: the path is missing, a directory, empty, not an image, or corrupt/truncated.
        ValueError: ``max_size`` is not a positive integer.
    """
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be a positive integer, got {max_size}")
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels}")
    p = Path(path)
    _check_file(p)
    try:
        with Image.open(p) as img:
            width, height = img.size
            target = pixel_cap(width, height, max_pixels)
            if target is not None:
                img.draft(img.mode, target)  # JPEG: decode at 1/2, 1/4 or 1/8 scale
            img.load()  # decode now: truncated / corrupt data fails here, not later
            shrunk: Image.Image = img
            if target is not None and max_pixels is not None:
                shrunk = _shrink(img, target)
                if on_warning is not None:
                    on_warning(
                        f"{p} is {width}x{height} ({width * height / 1e6:.0f} MP): "
                        f"downscaled to {shrunk.width}x{shrunk.height} (the limit is "
                        f"{max_pixels / 1e6:g} MP)"
                    )
            rgb = _to_rgb(_exif_transpose(shrunk))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            f"{p} is not an image PIL can read", hint="pass a JPEG, PNG, BMP, TIFF or WebP file"
        ) from None
    except Image.DecompressionBombError as e:
        raise ImageError(
            f"{p} is too large to decode safely ({e})",
            hint="downscale the image before segmenting it",
        ) from None
    except PermissionError:
        raise ImageError(
            f"cannot read {p}: permission denied", hint="check the file's permissions"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        # PIL reports truncated / corrupt data as OSError, SyntaxError or ValueError.
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(
            f"{p} is corrupt or truncated ({msg})", hint="re-export or re-download the image"
        ) from None
    if max_size is not None:
        rgb = working_image(rgb, max_size)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def check_image_shape(image: np.ndarray, name: str | os.PathLike[str]) -> None:
    """Refuse images the models cannot take (see the module's size rules).

    Raises:
        ImageError: a side shorter than :data:`MIN_SIDE` or an aspect ratio above
            :data:`MAX_ASPECT`.
    """
    h, w = image.shape[:2]
    short, long_side = min(h, w), max(h, w)
    if short < MIN_SIDE or long_side > MAX_ASPECT * short:
        raise ImageError(
            f"{name} is {w}x{h} pixels: too thin for the models (each side must be "
            f">= {MIN_SIDE} px and the long side at most {MAX_ASPECT:g}x the short)",
            hint="crop or pad the image",
        )


def pixel_cap(width: int, height: int, max_pixels: int | None) -> tuple[int, int] | None:
    """The size to shrink ``width x height`` to for ``max_pixels``, or ``None`` if it fits."""
    if max_pixels is None or width * height <= max_pixels:
        return None
    scale = math.sqrt(max_pixels / (width * height))
    new_w = max(1, math.floor(width * scale + 1e-6))
    new_h = max(1, math.floor(height * scale + 1e-6))
    while new_w * new_h > max_pixels and max(new_w, new_h) > 1:  # rounding up went too far
        if new_w >= new_h:
            new_w -= 1
        else:
            new_h -= 1
    return new_w, new_h


def _shrink(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``img`` resized to ``size`` (box filter) in its own mode where PIL can, else as RGB(A)."""
    if img.size == size:
        return img
    if img.mode not in ("1", "L", "LA", "RGB", "RGBA", "RGBX", "I", "F", "I;16"):
        img = img.convert(
            "RGBA" if img.mode in _ALPHA_MODES or "transparency" in img.info else "RGB"
        )
    elif img.mode == "1":
        img = img.convert("L")
    return img.resize(size, Image.Resampling.BOX)


def _check_file(p: Path) -> None:
    """Raise :class:`ImageError` unless ``p`` is a non-empty regular file."""
    if not p.exists():
        raise ImageError(f"image {p} does not exist", hint="check the path and its spelling")
    if p.is_dir():
        raise ImageError(
            f"{p} is a directory, not an image",
            hint="pass an image file, or the folder as an input folder",
        )
    try:
        st = p.stat()
    except OSError as e:
        raise ImageError(f"cannot read {p}: {e.strerror}", hint="check the file") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
        raise ImageError(f"{p} is not a regular file", hint="pass an image file")
    size = st.st_size
    if size == 0:
        raise ImageError(f"image {p} is empty (0 bytes)", hint="re-export or re-download the image")


def _exif_transpose(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a malformed EXIF block is ignored rather than failing."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF (struct / key / type errors): the pixels are still fine
        return img


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to a ``[H, W, 3]`` uint8 RGB array (rules in module doc)."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        arr16 = np.asarray(img).astype(np.uint16)
        return _gray_to_rgb((arr16 >> 8).astype(np.uint8))
    if mode == "I":
        arr32 = np.asarray(img).astype(np.int64)
        arr32 = np.clip(arr32, 0, None)
        peak = int(arr32.max()) if arr32.size else 0
        if peak <= 0xFFFF:
            return _gray_to_rgb((arr32 >> 8).astype(np.uint8))
        return _gray_to_rgb(np.round(arr32 * (255.0 / peak)).astype(np.uint8))
    if mode == "F":
        arrf = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        arrf = np.clip(arrf, 0.0, None)
        peak_f = float(arrf.max()) if arrf.size else 0.0
        scale = 255.0 if peak_f <= 1.0 else 255.0 / peak_f
        return _gray_to_rgb(np.round(arrf * scale).astype(np.uint8))
    has_alpha = mode in _ALPHA_MODES or (
        "transparency" in img.info and mode in ("P", "L", "RGB", "1")
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode == "L":
        return _gray_to_rgb(np.asarray(img))
    return np.asarray(img.convert("RGB"))


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """``[H, W]`` uint8 -> ``[H, W, 3]`` uint8 by repeating the channel."""
    return np.repeat(gray[:, :, None], 3, axis=2)


def working_shape(size: tuple[int, int], working_size: int) -> tuple[int, int]:
    """``(h, w)`` of an image of ``size`` with its long side capped at ``working_size``.

    Args:
        size: ``(H, W)`` of the image.
        working_size: the largest long side; ``0`` means the image's own size.

    Returns:
        ``size`` when its long side is at most ``working_size`` (or ``working_size`` is 0), else
        the size with the long side ``working_size`` and the aspect ratio kept (rounded, >= 1).
    """
    h, w = int(size[0]), int(size[1])
    long_side = max(h, w)
    if working_size <= 0 or long_side <= working_size:
        return h, w
    scale = working_size / long_side
    return (
        max(1, min(working_size, round(h * scale))),
        max(1, min(working_size, round(w * scale))),
    )


def working_image(image: np.ndarray, working_size: int) -> np.ndarray:
    """``image`` (``[H, W, 3]`` uint8) at :func:`working_shape` (area resampling); the same array
    when it is small enough."""
    h, w = working_shape(image.shape[:2], working_size)
    if (h, w) == tuple(image.shape[:2]):
        return image
    return cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=cv2.INTER_AREA)


def as_rgb_array(image: str | os.PathLike[str] | Image.Image | np.ndarray) -> np.ndarray:
    """Any image a Python user has at hand as ``[H, W, 3]`` uint8 RGB.

    Args:
        image: a file path (read with :func:`load_image`), a PIL image (EXIF orientation
            applied, any mode converted), or a numpy array (``[H, W]`` grayscale, ``[H, W, 3]``
            RGB or ``[H, W, 4]`` RGBA; uint8, or other integer/float types as PIL modes do).

    Raises:
        ImageError: unreadable files or arrays of another shape.
    """
    if isinstance(image, str | os.PathLike):
        return load_image(image)
    if isinstance(image, Image.Image):
        return _to_rgb(_exif_transpose(image))
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4)):
        if arr.dtype == np.uint8:
            return _to_rgb(Image.fromarray(arr))
        if np.issubdtype(arr.dtype, np.floating):
            return _to_rgb(Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8)))
        if np.issubdtype(arr.dtype, np.integer) and arr.max(initial=0) <= 255:
            return _to_rgb(Image.fromarray(arr.astype(np.uint8)))
    raise ImageError(
        f"cannot use an array of shape {arr.shape} and dtype {arr.dtype} as an image",
        hint="pass [H, W, 3] uint8 RGB, a PIL image or a file path",
    )

"""Overlay images: translucent class colours, mask outlines and ``name score`` labels.

Colours come from :func:`class_color`, a hash of the class name, so a class has the same colour in
every image, run and output (the semantic PNG's palette uses it too).

Labels are drawn with OpenCV's Hershey font, which only has ASCII glyphs: accents are stripped
(``café`` -> ``cafe``) and other non-ASCII characters shown as ``?``. The class names themselves are
written unchanged to the JSON.
"""

from __future__ import annotations

import colorsys
import hashlib
import os
import unicodedata
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from samadapter.io.atomic import atomic_write
from samadapter.structures import (
    UNKNOWN_NAME,
    SegmentationResult,
    masks_to_boxes_xywh,
    nearest_index,
)

UNKNOWN_COLOR: tuple[int, int, int] = (160, 160, 160)
"""Neutral grey for masks named ``unknown``."""

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_color(name: str) -> tuple[int, int, int]:
    """Stable RGB colour of a class name.

    The hue, saturation and value come from a BLAKE2b hash of the UTF-8 name (not Python's salted
    ``hash``), so the colour is the same across images, runs and machines. Saturation is kept in
    ``[0.55, 0.9]`` and value in ``[0.8, 1.0]``: bright colours that stay readable under black
    label text. ``unknown`` is always :data:`UNKNOWN_COLOR`.

    Args:
        name: class display name.

    Returns:
        ``(r, g, b)`` ints in ``0..255``.
    """
    if name == UNKNOWN_NAME:
        return UNKNOWN_COLOR
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    hue = int.from_bytes(digest[0:2], "big") / 65536.0
    sat = 0.55 + 0.35 * digest[2] / 255.0
    val = 0.80 + 0.20 * digest[3] / 255.0
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return round(r * 255), round(g * 255), round(b * 255)


def label_text(name: str, score: float) -> str:
    """``"name 0.87"`` in the ASCII the overlay font can draw (``score`` NaN -> name only)."""
    ascii_name = unicodedata.normalize("NFKD", name)
    ascii_name = "".join(ch for ch in ascii_name if not unicodedata.combining(ch))
    ascii_name = ascii_name.encode("ascii", "replace").decode("ascii")
    return ascii_name if not np.isfinite(score) else f"{ascii_name} {score:.2f}"


def drawing_sizes(height: int, width: int) -> tuple[float, int, int]:
    """Font scale, text thickness and outline thickness for an image size.

    All grow with the long side so labels take the same share of the picture: on a 200 px image
    the font is OpenCV's scale 0.4 (~10 px text), on a 4000 px image scale ~2.7 (~65 px), both
    legible once the image is shown fitted to a screen.

    Returns:
        ``(font_scale, text_thickness, outline_thickness)``.
    """
    long_side = max(height, width)
    font_scale = max(0.4, long_side / 1500.0)
    text_thickness = max(1, round(font_scale * 1.6))
    outline_thickness = max(1, round(long_side / 600.0))
    return font_scale, text_thickness, outline_thickness


def render_overlay(
    image: np.ndarray,
    result: SegmentationResult,
    alpha: float = 0.5,
    *,
    outlines: bool = True,
    labels: bool = True,
) -> np.ndarray:
    """Draw a result's masks over its image.

    Masks are painted largest first, so a small mask on top of a large one stays visible: each
    covered pixel is blended once with the colour of the smallest mask covering it,
    ``out = (1 - alpha) * image + alpha * colour``. Outlines (full class colour) and labels
    (``"name 0.87"`` in a filled box of the class colour, black or white text by luminance, placed
    at the mask's innermost point) follow in the same order.

    Args:
        image: ``[H, W, 3]`` uint8 RGB, the image the result was computed on.
        result: the named masks (at ``(H, W)`` or a working resolution of it: they are
            upsampled one at a time, and the colour blend is done a strip of rows at a time).
        alpha: opacity of the mask colours, ``0`` (only outlines) to ``1`` (opaque).
        outlines: draw mask contours.
        labels: draw class name and score labels.

    Returns:
        ``[H, W, 3]`` uint8 RGB, a new array (``image`` is not modified).

    Raises:
        ValueError: ``image`` is not ``[H, W, 3]`` uint8 of the result's size, or ``alpha`` is
            outside ``[0, 1]``.
    """
    h, w = result.image_size
    if image.shape != (h, w, 3) or image.dtype != np.uint8:
        raise ValueError(
            f"image must be [{h}, {w}, 3] uint8 like the result's masks, "
            f"got {image.shape} {image.dtype}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = np.ascontiguousarray(image).copy()
    n = len(result)
    if n == 0:
        return out

    areas = result.areas
    boxes = result.boxes_xywh.astype(np.int64)  # image pixels
    work_boxes = masks_to_boxes_xywh(result.masks).astype(np.int64)  # mask pixels
    palette = np.array([class_color(c) for c in result.class_names], dtype=np.uint8)
    mask_colors = palette[result.class_ids.astype(np.int64)]  # [N, 3]
    order = [int(i) for i in np.argsort(-areas, kind="stable") if areas[i] > 0]

    # Painter's algorithm on an index map at the masks' resolution: later (smaller) masks
    # overwrite earlier ones. Upsampling it commutes with painting, so the blend below (a strip of
    # image rows at a time) equals painting the full-size masks.
    top = np.full(result.mask_size, -1, dtype=np.int32)
    for i in order:
        x, y, bw, bh = work_boxes[i]
        window = top[y : y + bh, x : x + bw]
        window[result.masks[i, y : y + bh, x : x + bw]] = i
    if alpha > 0:
        _blend(out, top, result, mask_colors, alpha)

    font_scale, text_thickness, outline_thickness = drawing_sizes(h, w)
    anchors: dict[int, tuple[int, int]] = {}
    for i in order:
        x, y, bw, bh = (int(v) for v in boxes[i])
        color = tuple(int(c) for c in mask_colors[i])
        if outlines:  # traced on the full-size mask's window, one mask at a time
            crop = np.zeros((bh + 2, bw + 2), dtype=np.uint8)  # 1 px zero border for OpenCV
            crop[1:-1, 1:-1] = result.full_crop(i, (x, y, bw, bh))
            contours, _ = cv2.findContours(
                crop, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE, offset=(x - 1, y - 1)
            )
            cv2.drawContours(out, contours, -1, color, outline_thickness, cv2.LINE_AA)
        if labels:  # the innermost point, found at the masks' resolution
            wx, wy, wbw, wbh = (int(v) for v in work_boxes[i])
            small = np.zeros((wbh + 2, wbw + 2), dtype=np.uint8)
            small[1:-1, 1:-1] = result.masks[i, wy : wy + wbh, wx : wx + wbw]
            dist = cv2.distanceTransform(small, cv2.DIST_L2, 3)
            cy, cx = np.unravel_index(int(np.argmax(dist)), dist.shape)
            anchors[i] = result.working_point(int(cx) + wx - 1, int(cy) + wy - 1)
    if labels:
        for i in order:
            name = result.class_names[int(result.class_ids[i])]
            _draw_label(
                out,
                label_text(name, float(result.scores[i])),
                anchors[i],
                tuple(int(c) for c in mask_colors[i]),
                font_scale,
                text_thickness,
            )
    return out


def _blend(
    out: np.ndarray,
    top: np.ndarray,
    result: SegmentationResult,
    mask_colors: np.ndarray,
    alpha: float,
) -> None:
    """Blend each covered pixel of ``out`` once with its top mask's colour, in strips of rows.

    Args:
        out: ``[H, W, 3]`` uint8, modified in place.
        top: ``[h, w]`` int32 index of the top mask per working pixel, ``-1`` where none.
        result: gives the nearest-neighbour mapping from ``(h, w)`` to ``(H, W)``.
        mask_colors: ``[N, 3]`` uint8.
        alpha: opacity in ``(0, 1]``.
    """
    h, w = out.shape[:2]
    rows = nearest_index(top.shape[0], h)
    cols = nearest_index(top.shape[1], w)
    step = max(1, (1 << 20) // max(w, 1))  # about a million pixels per strip
    for y0 in range(0, h, step):
        y1 = min(h, y0 + step)
        strip = top[y0:y1] if not result.resampled else np.take(top[rows[y0:y1]], cols, axis=1)
        covered = strip >= 0
        if not covered.any():
            continue
        part = out[y0:y1]
        colors = mask_colors[strip[covered]].astype(np.float32)
        blended = part[covered].astype(np.float32) * (1.0 - alpha) + colors * alpha
        part[covered] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _draw_label(
    out: np.ndarray,
    text: str,
    anchor: tuple[int, int],
    color: tuple[int, ...],
    font_scale: float,
    thickness: int,
) -> None:
    """Draw ``text`` in a filled box of ``color`` centred on ``anchor``, kept inside ``out``."""
    h, w = out.shape[:2]
    (tw, th), baseline = cv2.getTextSize(text, _FONT, font_scale, thickness)
    pad = max(2, round(th * 0.3))
    box_w, box_h = tw + 2 * pad, th + baseline + 2 * pad
    x0 = min(max(anchor[0] - box_w // 2, 0), max(w - box_w, 0))
    y0 = min(max(anchor[1] - box_h // 2, 0), max(h - box_h, 0))
    cv2.rectangle(out, (x0, y0), (x0 + box_w - 1, y0 + box_h - 1), color, cv2.FILLED)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    text_color = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(
        out, text, (x0 + pad, y0 + pad + th), _FONT, font_scale, text_color, thickness, cv2.LINE_AA
    )


def write_overlay(
    image: np.ndarray, result: SegmentationResult, path: str | os.PathLike[str], alpha: float = 0.5
) -> Path:
    """Render :func:`render_overlay` and save it atomically (format from the suffix, e.g. PNG).

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        result: the named masks.
        path: destination, normally ``<stem>.overlay.png``.
        alpha: mask opacity.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the file cannot be written.
    """
    rendered = Image.fromarray(render_overlay(image, result, alpha))
    return atomic_write(path, lambda tmp: rendered.save(tmp, compress_level=1))  # speed over size

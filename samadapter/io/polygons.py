"""Binary masks to polygons and back, for the polygon export formats (YOLO, Label Studio, CVAT).

Coordinates are continuous image coordinates: pixel ``(col, row)`` covers the square
``[col, col + 1] x [row, row + 1]``, so its centre is ``(col + 0.5, row + 0.5)``; ``x`` runs along
columns. Exporters divide by the image size where a format wants normalised or percent values.

**Where the outline runs.** :func:`mask_to_parts` traces the mask at twice its resolution and maps
each vertex back to the centre of its half-size pixel. The outline therefore runs a quarter pixel
inside the pixel edges of the mask (``x + 0.25`` on left edges, ``x + 0.75`` on right edges) and
never through a pixel centre. Every common way of filling a polygon then gives back exactly the
mask:

* the centre rule (a pixel is inside when its centre is; :func:`polygons_to_mask`, pycocotools,
  CVAT and Label Studio's mask conversion),
* truncating the coordinates to integers and filling with the boundary included
  (Ultralytics' ``polygon2mask``).

Every ring has a positive area (a single pixel gives a 0.5 x 0.5 square), so at least 3 vertices.

**Holes and several parts.** A mask may have several 8-connected parts and each part holes. Formats
with plain polygons cannot say "hole", so holes are cut in with a *bridge*: the hole ring is
joined to its part's outer ring by a zero-width slit (out along the shortest vertex-to-vertex
segment and back along the same segment). Outer rings are counter-clockwise and holes clockwise (in
the image's y-down frame, as seen on screen), so the bridged ring fills correctly under both the
even-odd and the non-zero winding rule; the slit adds no area under either rule. Parts are joined
the same way when a format needs one polygon per object (:func:`mask_to_polygons` with
``join_parts=True``, used for YOLO, whose one line is one object); otherwise each part is its own
polygon (Label Studio regions, CVAT shapes grouped by ``group_id``).

A renderer that strokes polygon edges (or fills with the boundary included, as Ultralytics'
``polygon2mask`` does through ``cv2.fillPoly``) paints each slit as a line one pixel wide. A hole
slit runs through the mask's own pixels, so it only shows where it crosses another hole, which the
shortest-segment choice keeps rare. A slit between two parts crosses the background between them:
for small parts far apart it can add more pixels than the parts hold (IoU 0.46 for two dots across
an image), so exporters that need one polygon per object only join parts when
:func:`truncating_fill` shows the cost is small (:mod:`samadapter.io.yolo`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class PolygonPart:
    """One 8-connected part of a mask.

    Attributes:
        outer: ``[P, 2]`` float64 ``(x, y)`` vertices of the outer ring, counter-clockwise on
            screen (positive :func:`signed_area`), not repeated at the end.
        holes: ``[Q_i, 2]`` rings of the part's holes, clockwise on screen.
    """

    outer: np.ndarray
    holes: list[np.ndarray] = field(default_factory=list)

    @property
    def area(self) -> float:
        """Polygon area of the part: outer ring minus holes."""
        return abs(signed_area(self.outer)) - sum(abs(signed_area(h)) for h in self.holes)


def signed_area(ring: np.ndarray) -> float:
    """Shoelace area of a ring ``[P, 2]``; positive when counter-clockwise on screen (y down)."""
    if len(ring) < 3:
        return 0.0
    x, y = ring[:, 0], ring[:, 1]
    # On screen (y pointing down) the usual formula's sign flips.
    return -0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _oriented(ring: np.ndarray, counter_clockwise: bool) -> np.ndarray:
    """``ring`` reversed if needed so that its orientation on screen is the one asked for."""
    return ring if (signed_area(ring) > 0) == counter_clockwise else ring[::-1].copy()


def mask_to_parts(mask: np.ndarray, tolerance: float = 0.0) -> list[PolygonPart]:
    """Outline each 8-connected part of a binary mask, with its holes.

    Args:
        mask: ``[H, W]`` boolean (or 0/1) mask.
        tolerance: Douglas-Peucker simplification in pixels (``0``: exact outline, every staircase
            step kept). With a tolerance the round trip is no longer exact; rings that simplify to
            fewer than 3 vertices are dropped.

    Returns:
        One :class:`PolygonPart` per part, largest first; ``[]`` for an empty mask. Holes are the
        4-connected background regions enclosed by a part (a part inside a hole is its own part).
    """
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {m.shape}")
    rows = np.flatnonzero(m.any(axis=1))
    if len(rows) == 0:
        return []
    cols = np.flatnonzero(m.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    crop = m[y0:y1, x0:x1].astype(np.uint8)
    # Twice the resolution, one empty pixel of padding (findContours ignores the image border).
    big = np.zeros((2 * (y1 - y0) + 2, 2 * (x1 - x0) + 2), dtype=np.uint8)
    big[1:-1, 1:-1] = np.repeat(np.repeat(crop, 2, axis=0), 2, axis=1)
    contours, hierarchy = cv2.findContours(big, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    offset = np.array([x0 - 0.25, y0 - 0.25])  # big pixel u (padding 1) -> (u - 1 + 0.5) / 2 + x0

    def ring(contour: np.ndarray) -> np.ndarray | None:
        if tolerance > 0:
            contour = cv2.approxPolyDP(contour, 2.0 * tolerance, True)
        pts = contour.reshape(-1, 2).astype(np.float64) / 2.0 + offset
        return pts if len(pts) >= 3 and signed_area(pts) != 0 else None

    parts: dict[int, PolygonPart] = {}
    links = hierarchy[0]  # [next, previous, first child, parent]
    for i, contour in enumerate(contours):
        if links[i][3] < 0:
            outer = ring(contour)
            if outer is not None:
                parts[i] = PolygonPart(_oriented(outer, counter_clockwise=True))
    for i, contour in enumerate(contours):
        parent = int(links[i][3])
        if parent >= 0 and parent in parts:
            hole = ring(contour)
            if hole is not None:
                parts[parent].holes.append(_oriented(hole, counter_clockwise=False))
    return sorted(parts.values(), key=lambda p: -p.area)


def _closest_vertices(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Indices ``(i, j)`` minimising ``|a[i] - b[j]|`` (chunked: about 2 M pairs at a time)."""
    best = (np.inf, 0, 0)
    chunk = max(1, 2_000_000 // max(len(b), 1))
    for start in range(0, len(a), chunk):
        part = a[start : start + chunk]
        d2 = ((part[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
        flat = int(np.argmin(d2))
        i, j = divmod(flat, len(b))
        if d2[i, j] < best[0]:
            best = (float(d2[i, j]), start + i, j)
    return best[1], best[2]


def bridge(ring: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Join two rings into one by a zero-width slit between their closest vertices.

    The result visits ``ring`` up to vertex ``i``, jumps to ``other[j]``, goes once around
    ``other`` back to ``other[j]``, jumps back to ``ring[i]`` and finishes ``ring``. Both rings keep
    their orientation, so a clockwise ``other`` inside a counter-clockwise ``ring`` is a hole and a
    counter-clockwise one beside it a second part.

    Args:
        ring: ``[P, 2]`` vertices.
        other: ``[Q, 2]`` vertices.

    Returns:
        ``[P + Q + 2, 2]`` vertices.
    """
    i, j = _closest_vertices(ring, other)
    return np.concatenate([ring[: i + 1], other[j:], other[: j + 1], ring[i:]])


def bridge_part(part: PolygonPart) -> np.ndarray:
    """One ring for a part: its holes cut in by bridges (each to the closest vertex so far)."""
    out = part.outer
    for hole in sorted(part.holes, key=lambda h: -abs(signed_area(h))):
        out = bridge(out, hole)
    return out


def mask_to_polygons(
    mask: np.ndarray, join_parts: bool = False, tolerance: float = 0.0
) -> list[np.ndarray]:
    """Polygons (no holes needed by the format) that fill exactly the mask.

    Args:
        mask: ``[H, W]`` boolean mask.
        join_parts: one polygon for the whole mask, its parts joined by bridges (for formats where
            one polygon is one object, like YOLO); else one polygon per part, largest first.
        tolerance: simplification in pixels, see :func:`mask_to_parts`.

    Returns:
        ``[P, 2]`` float64 ``(x, y)`` rings in pixel coordinates (see the module docstring); holes
        are cut in by bridges. ``[]`` for an empty mask.
    """
    rings = [bridge_part(p) for p in mask_to_parts(mask, tolerance)]
    if join_parts and len(rings) > 1:
        joined = rings[0]
        for r in rings[1:]:
            joined = bridge(joined, r)
        rings = [joined]
    return rings


def polygons_to_mask(polygons: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Fill rings with the even-odd rule, a pixel being inside when its centre is.

    All rings are filled together: a ring inside another makes a hole, and bridged rings (see
    :func:`bridge`) fill as intended. To take the union of separate shapes, fill each alone and
    combine with ``|``.

    Args:
        polygons: ``[P, 2]`` ``(x, y)`` rings in pixel coordinates (closing vertex optional).
        height: ``H`` of the output.
        width: ``W`` of the output.

    Returns:
        ``[H, W]`` bool.
    """
    edges = []
    for poly in polygons:
        p = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if len(p) >= 2:
            edges.append(np.concatenate([p, np.roll(p, -1, axis=0)], axis=1))  # x0 y0 x1 y1
    if not edges:
        return np.zeros((height, width), dtype=bool)
    e = np.concatenate(edges)
    e = e[e[:, 1] != e[:, 3]]  # horizontal edges never cross a row's centre line
    lo = np.minimum(e[:, 1], e[:, 3])
    hi = np.maximum(e[:, 1], e[:, 3])
    # Rows whose centre r + 0.5 lies in [lo, hi): half-open so shared vertices count once.
    r0 = np.clip(np.ceil(lo - 0.5), 0, height).astype(np.int64)
    r1 = np.clip(np.ceil(hi - 0.5), 0, height).astype(np.int64)
    counts = np.maximum(r1 - r0, 0)
    total = int(counts.sum())
    if total == 0:
        return np.zeros((height, width), dtype=bool)
    edge_of = np.repeat(np.arange(len(e)), counts)
    starts = np.cumsum(counts) - counts
    rows = r0[edge_of] + (np.arange(total) - starts[edge_of])
    x0, y0, x1, y1 = (e[edge_of, k] for k in range(4))
    xs = x0 + (rows + 0.5 - y0) * (x1 - x0) / (y1 - y0)
    # Columns whose centre c + 0.5 lies right of the crossing toggle parity.
    first = np.clip(np.floor(xs - 0.5).astype(np.int64) + 1, 0, width)
    toggles = np.zeros((height, width + 1), dtype=np.int32)
    np.add.at(toggles, (rows, first), 1)
    return (np.cumsum(toggles[:, :width], axis=1) % 2).astype(bool)


def truncating_fill(polygons: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Fill rings the way Ultralytics' ``polygon2mask`` does (at full resolution).

    Coordinates are truncated to integers and the rings filled together by ``cv2.fillPoly``,
    which also paints every edge (so zero-width slits show as one-pixel lines).

    Args:
        polygons: ``[P, 2]`` ``(x, y)`` rings in pixel coordinates.
        height: ``H`` of the output.
        width: ``W`` of the output.

    Returns:
        ``[H, W]`` bool.
    """
    out = np.zeros((height, width), dtype=np.uint8)
    rings = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons]
    rings = [r for r in rings if len(r)]
    if rings:
        cv2.fillPoly(out, [r.astype(np.int32) for r in rings], 1)
    return out.astype(bool)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``[H, W]`` boolean masks (``1.0`` when both are empty)."""
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union

"""The one result type that flows from the pipeline to every writer.

A :class:`SegmentationResult` holds, for one image, the masks the classifier kept (column arrays,
one row per mask, like ``supervision.Detections``), their labels and scores, SAM's own per-mask
fields, and the vocabulary they were named from. Writers in :mod:`samadapter.io` read it; it
knows none of them (COCO: :func:`samadapter.io.coco.to_coco`).

Masks at a working resolution
-----------------------------
The masks of a large photo are kept at a *working resolution* (long side 1024 by default, see
``PipelineSettings.working_size``), not at the image's: a 24-megapixel photo's hundred masks
would otherwise take 2.4 GB as booleans. The result records the image's own size
(:attr:`SegmentationResult.image_size`), and every output is made at that size by upsampling
**one mask (or one class, or one strip of the label map) at a time** with the nearest-neighbour
rule of :func:`nearest_index`: full-size pixel ``(y, x)`` takes the working pixel whose area
contains its centre. So a working pixel becomes a block of whole image pixels, unions, label maps
and overlaps commute with the upsampling (upsampling the union of two masks is the union of their
upsamplings), and areas and boxes of the full-size masks follow exactly from the working masks
without building them. When the image is no larger than the working size the masks are at the
image's resolution and nothing is resampled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

UNKNOWN_NAME = "unknown"
"""Name of masks kept with ``--keep-unknown`` whose best class is void or below threshold."""


def masks_to_rle(masks: np.ndarray) -> list[dict[str, Any]]:
    """Encode binary masks as COCO run-length encodings.

    Args:
        masks: ``[N, H, W]`` boolean (or 0/1) array.

    Returns:
        ``N`` dicts ``{"size": [H, W], "counts": str}`` with ``counts`` decoded to utf-8, as COCO
        JSON files store them.
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {masks.shape}")
    if len(masks) == 0:
        return []
    fortran = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))
    return [_rle_json(rle) for rle in mask_utils.encode(fortran)]


def _rle_json(rle: dict[str, Any]) -> dict[str, Any]:
    """pycocotools' RLE as COCO JSON stores it: ``{"size": [H, W], "counts": str}``."""
    counts = rle["counts"]
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": counts.decode("utf-8") if isinstance(counts, bytes) else counts,
    }


def rle_to_masks(rles: list[dict[str, Any]]) -> np.ndarray:
    """Decode COCO RLEs (``counts`` as str or bytes) into a ``[N, H, W]`` boolean array."""
    if not rles:
        raise ValueError("rle_to_masks needs at least one RLE to know the image size")
    enc = [
        {
            "size": r["size"],
            "counts": r["counts"].encode("utf-8") if isinstance(r["counts"], str) else r["counts"],
        }
        for r in rles
    ]
    return np.asarray(mask_utils.decode(enc), dtype=bool).transpose(2, 0, 1)


@lru_cache(maxsize=64)
def nearest_index(src: int, dst: int) -> np.ndarray:
    """Nearest-neighbour resampling of one axis, by pixel centres.

    Destination pixel ``i`` (of ``dst``) takes source pixel ``floor((i + 0.5) * src / dst)``, the
    source pixel whose extent contains the destination pixel's centre (integer arithmetic, so
    exact for any size). Going up (``dst >= src``), every source pixel becomes a run of one or
    more consecutive destination pixels.

    Args:
        src: length of the axis at the masks' resolution.
        dst: length at the image's resolution.

    Returns:
        ``[dst]`` int64, non-decreasing, read-only (cached).
    """
    if src < 1 or dst < 1:
        raise ValueError(f"axis lengths must be positive, got {src} -> {dst}")
    index = ((2 * np.arange(dst, dtype=np.int64) + 1) * src) // (2 * dst)
    index.setflags(write=False)
    return index


def upsample_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the first two axes of ``array`` to ``size`` with :func:`nearest_index`.

    Args:
        array: ``[h, w, ...]`` any dtype.
        size: ``(H, W)``.

    Returns:
        ``[H, W, ...]``; ``array`` itself when it already has that size.
    """
    h, w = array.shape[:2]
    if (h, w) == tuple(size):
        return array
    rows = np.take(array, nearest_index(h, size[0]), axis=0)
    return np.take(rows, nearest_index(w, size[1]), axis=1)


def masks_to_boxes_xywh(masks: np.ndarray) -> np.ndarray:
    """Tight XYWH boxes (COCO convention, pixels) of binary masks.

    Args:
        masks: ``[N, H, W]`` boolean array.

    Returns:
        ``[N, 4]`` float32 ``(x, y, w, h)``; an empty mask gives ``(0, 0, 0, 0)``.
    """
    n = len(masks)
    boxes = np.zeros((n, 4), dtype=np.float32)
    if n == 0:
        return boxes
    m = np.asarray(masks, dtype=bool)
    rows = np.asarray(m.any(axis=2))  # [N, H]
    cols = np.asarray(m.any(axis=1))  # [N, W]
    nonempty = rows.any(axis=1)
    h, w = masks.shape[1:]
    y0 = np.argmax(rows, axis=1)
    y1 = h - np.argmax(rows[:, ::-1], axis=1)
    x0 = np.argmax(cols, axis=1)
    x1 = w - np.argmax(cols[:, ::-1], axis=1)
    boxes[:, 0], boxes[:, 1] = x0, y0
    boxes[:, 2], boxes[:, 3] = x1 - x0, y1 - y0
    boxes[~nonempty] = 0
    return boxes


def semantic_from_scores(
    scores: np.ndarray, masks: np.ndarray, max_elements: int = 1 << 24
) -> np.ndarray:
    """Per-pixel class by the einsum rule (docs/architecture.md).

    ``argmax_c sum_q scores[q, c] * masks[q, h, w]``. Pixels are independent, so the ``[C, pixels]``
    buffer is built a chunk of pixels at a time (at most ``max_elements`` entries): 847 classes
    on a 512x683 image would otherwise need 1.2 GB.

    Args:
        scores: ``[Q, C]`` class scores of each mask.
        masks: ``[Q, H, W]`` boolean or float masks.
        max_elements: bound on ``max(C, Q) * chunk``.

    Returns:
        ``[H, W]`` int32 class indices ``0..C-1``; ``-1`` where no mask covers the pixel (or every
        class's sum there is 0; scores are expected to be non-negative).
    """
    q, h, w = masks.shape
    if q == 0:
        return np.full((h, w), -1, dtype=np.int32)
    flat = masks.reshape(q, -1)
    scores_t = scores.astype(np.float32).T  # [C, Q]
    chunk = max(1, max_elements // max(scores_t.shape[0], q, 1))
    out = np.empty(h * w, dtype=np.int32)
    for start in range(0, h * w, chunk):
        part = flat[:, start : start + chunk].astype(np.float32)
        acc = scores_t @ part  # [C, chunk] == einsum("qc,qhw->chw") on these pixels
        res = acc.argmax(axis=0).astype(np.int32)
        res[~(acc > 0).any(axis=0)] = -1  # no mask here, or every sum is 0
        out[start : start + chunk] = res
    return out.reshape(h, w)


def full_size_areas(masks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Pixel counts of working-resolution masks once upsampled to the image's size.

    Args:
        masks: ``[N, h, w]`` bool.
        image_size: ``(H, W)`` with ``H >= h`` and ``W >= w``.

    Returns:
        ``[N]`` int64, without building the full-size masks (each working pixel counts the image
        pixels :func:`nearest_index` maps to it).
    """
    n, h, w = masks.shape
    if (h, w) == tuple(image_size):
        return masks.sum(axis=(1, 2), dtype=np.int64).reshape(n)
    rows = np.bincount(nearest_index(h, image_size[0]), minlength=h).astype(np.float64)
    cols = np.bincount(nearest_index(w, image_size[1]), minlength=w).astype(np.float64)
    out = np.zeros(n, dtype=np.int64)
    for i, mask in enumerate(masks):  # one working mask at a time: [h, w] float64
        out[i] = round(float(rows @ (mask @ cols)))
    return out


@dataclass
class SegmentationResult:
    """Named masks of one image.

    Row ``i`` of every per-mask array describes the same mask. ``class_ids`` index into
    ``class_names``; the vocabulary's classes come first (``K = len(synonyms)`` of them) and, when
    unknown masks were kept, ``class_names[K] == "unknown"``.

    The masks may be held at a working resolution below the image's (see the module docstring):
    ``masks`` is ``[N, h, w]`` and ``original_size`` the image's ``(H, W)``. Everything a user or a
    writer sees is at the image's size: :attr:`image_size`, :attr:`areas`, :attr:`boxes_xywh`,
    :meth:`rles`, :meth:`semantic_map`, and the full-size masks themselves from
    :meth:`full_mask` (one), :meth:`iter_full_masks` (one at a time) or :meth:`full_masks` (all,
    ``N * H * W`` bytes).

    Attributes:
        masks: ``[N, h, w]`` bool, at the working resolution (the image's own when
            ``original_size`` is ``None`` or equal to it).
        class_ids: ``[N]`` int64 index into ``class_names``.
        scores: ``[N]`` float32, the probability of the assigned class (for ``unknown``: the best
            vocabulary class's probability).
        class_scores: ``[N, K]`` float32, softmax over the ``K`` classes plus void, void dropped.
        class_names: display names, ``K`` (+1 when unknown masks were kept).
        synonyms: the ``K`` vocabulary classes' names, display name first.
        predicted_iou: ``[N]`` SAM's predicted IoU (NaN when masks did not come from SAM).
        stability_score: ``[N]`` SAM's stability score (NaN likewise).
        point_coords: ``[N, 2]`` the prompt point ``(x, y)`` in image pixels (NaN likewise).
        crop_box: ``[N, 4]`` SAM's crop box, XYWH, in image pixels.
        file_name: the image's file name as given, for the writers' ``images`` entries.
        timings: seconds per pipeline stage.
        original_size: ``(H, W)`` of the image when the masks are smaller (``H >= h``,
            ``W >= w``); ``None``: the masks are at the image's size.
    """

    masks: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray
    class_scores: np.ndarray
    class_names: list[str]
    synonyms: list[list[str]]
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    point_coords: np.ndarray
    crop_box: np.ndarray
    file_name: str = "image"
    timings: dict[str, float] = field(default_factory=dict)
    original_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        n = len(self.masks)
        if self.masks.ndim != 3:
            raise ValueError(f"masks must be [N, H, W], got {self.masks.shape}")
        for name in (
            "class_ids",
            "scores",
            "class_scores",
            "predicted_iou",
            "stability_score",
            "point_coords",
            "crop_box",
        ):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, masks have {n}")
        if self.original_size is not None:
            size = (int(self.original_size[0]), int(self.original_size[1]))
            h, w = self.masks.shape[1:]
            if size[0] < h or size[1] < w:
                raise ValueError(f"original_size {size} is smaller than the masks ({h}, {w})")
            self.original_size = size

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the image (the outputs' size)."""
        if self.original_size is not None:
            return self.original_size
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @property
    def mask_size(self) -> tuple[int, int]:
        """``(h, w)`` of :attr:`masks` (the working resolution)."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @property
    def resampled(self) -> bool:
        """Whether the masks are smaller than the image (outputs are upsampled)."""
        return self.image_size != self.mask_size

    @property
    def num_classes(self) -> int:
        """``K``, the number of vocabulary classes (``unknown`` not counted)."""
        return len(self.synonyms)

    @property
    def labels(self) -> list[str]:
        """Class name of each mask."""
        return [self.class_names[int(i)] for i in self.class_ids]

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        """Working row of each image row ``[H]`` and working column of each image column ``[W]``."""
        (h, w), (hh, ww) = self.mask_size, self.image_size
        return nearest_index(h, hh), nearest_index(w, ww)

    def _multiplicity(self) -> tuple[np.ndarray, np.ndarray]:
        """How many image rows ``[h]`` / columns ``[w]`` each working row / column becomes."""
        rows, cols = self._index()
        h, w = self.mask_size
        return (
            np.bincount(rows, minlength=h).astype(np.int64),
            np.bincount(cols, minlength=w).astype(np.int64),
        )

    def upsample(self, array: np.ndarray) -> np.ndarray:
        """An ``[h, w, ...]`` array at the working resolution brought to the image's size.

        Uses the same nearest-neighbour rule as the masks (see the module docstring).

        Returns:
            ``[H, W, ...]``; ``array`` itself when the masks are at the image's size.
        """
        if tuple(array.shape[:2]) != self.mask_size:
            raise ValueError(
                f"expected an array of the masks' size {self.mask_size}, got {array.shape[:2]}"
            )
        return upsample_nearest(array, self.image_size)

    def full_mask(self, i: int) -> np.ndarray:
        """Mask ``i`` at the image's size.

        Returns:
            ``[H, W]`` bool (a view of :attr:`masks` when no upsampling is needed: do not modify).
        """
        return self.upsample(self.masks[i])

    def iter_full_masks(self) -> Iterator[np.ndarray]:
        """The masks at the image's size, one at a time (``H * W`` bytes each)."""
        for i in range(len(self)):
            yield self.full_mask(i)

    def full_masks(self) -> np.ndarray:
        """All masks at the image's size: ``[N, H, W]`` bool (``N * H * W`` bytes; writers use
        :meth:`iter_full_masks` instead)."""
        if not self.resampled:
            return self.masks
        h, w = self.image_size
        out = np.empty((len(self), h, w), dtype=bool)
        for i, mask in enumerate(self.iter_full_masks()):
            out[i] = mask
        return out

    def full_crop(self, i: int, box: tuple[int, int, int, int] | np.ndarray) -> np.ndarray:
        """The window ``box`` (XYWH in image pixels) of mask ``i`` at the image's size.

        Returns:
            ``[bh, bw]`` bool, without building the whole full-size mask.
        """
        x, y, bw, bh = (int(v) for v in box)
        if not self.resampled:
            return self.masks[i, y : y + bh, x : x + bw]
        rows, cols = self._index()
        return self.masks[i][np.ix_(rows[y : y + bh], cols[x : x + bw])]

    def working_point(self, x: int, y: int) -> tuple[int, int]:
        """The image pixel at the centre of working pixel ``(x, y)``'s block."""
        if not self.resampled:
            return x, y
        rows, cols = self._index()
        y0, y1 = np.searchsorted(rows, [y, y + 1])
        x0, x1 = np.searchsorted(cols, [x, x + 1])
        return int((x0 + x1 - 1) // 2), int((y0 + y1 - 1) // 2)

    @property
    def boxes_xywh(self) -> np.ndarray:
        """``[N, 4]`` float32 tight boxes of the full-size masks, XYWH in image pixels."""
        boxes = masks_to_boxes_xywh(self.masks)
        if not self.resampled or len(boxes) == 0:
            return boxes
        rows, cols = self._index()
        b = boxes.astype(np.int64)
        nonempty = (b[:, 2] > 0) & (b[:, 3] > 0)
        x0 = np.searchsorted(cols, b[:, 0], side="left")
        x1 = np.searchsorted(cols, b[:, 0] + b[:, 2] - 1, side="right")
        y0 = np.searchsorted(rows, b[:, 1], side="left")
        y1 = np.searchsorted(rows, b[:, 1] + b[:, 3] - 1, side="right")
        out = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1).astype(np.float32)
        out[~nonempty] = 0
        return out

    @property
    def areas(self) -> np.ndarray:
        """``[N]`` int64 pixel count of each full-size mask."""
        return full_size_areas(self.masks, self.image_size)

    def rles(self) -> list[dict[str, Any]]:
        """COCO RLE of each full-size mask (``counts`` as utf-8 str), encoded one at a time."""
        if len(self.masks) == 0:
            return []
        if not self.resampled:
            return masks_to_rle(self.masks)
        rows, cols = self._index()
        out = []
        for mask in self.masks:
            # Build the mask transposed, so its bytes are the column-major [H, W, 1] RLE wants.
            transposed = np.take(np.take(mask.T, cols, axis=0), rows, axis=1)  # [W, H]
            fortran = transposed.view(np.uint8).T[:, :, None]
            out.append(_rle_json(mask_utils.encode(fortran)[0]))
        return out

    def semantic_map(self, full_size: bool = True) -> np.ndarray:
        """Label map of the kept masks, by the official demo's rule.

        ``argmax_c sum_q class_scores[q, c] * masks[q]`` over the kept masks, each with its FULL
        row of class probabilities (so a pixel may take a class other than the labels of the
        masks covering it); pixels no kept mask covers (or where every sum is 0) are ``-1``.
        Masks labelled ``unknown`` (``--keep-unknown``) vote only for ``unknown``, with their
        void probability ``1 - sum(class_scores[q])``; a mask whose row is all zero (a result
        built by hand) votes for its own label with its score. Computed at the working
        resolution and upsampled (the rule is per pixel, so this equals computing it on the
        full-size masks).

        Args:
            full_size: at the image's size (default), else at the masks' (``[h, w]``).

        Returns:
            ``[H, W]`` int32 index into ``class_names``; ``-1`` where no kept mask lies.
        """
        n, k = len(self.masks), self.num_classes
        votes = np.zeros((n, len(self.class_names)), dtype=np.float32)
        votes[:, :k] = np.nan_to_num(self.class_scores[:, :k], nan=0.0)
        # A row without probabilities (a hand-built result) votes for its label with its score.
        blank = ~(votes[:, :k] > 0).any(axis=1)
        votes[blank, self.class_ids[blank]] = np.maximum(
            np.nan_to_num(self.scores[blank], nan=0.0), 1e-6
        )
        if len(self.class_names) > k and self.class_names[k] == UNKNOWN_NAME:
            unknown = self.class_ids == k
            void = 1.0 - self.class_scores[unknown].sum(axis=1)
            votes[unknown] = 0.0
            votes[unknown, k] = np.maximum(void, 1e-6)
        labels = semantic_from_scores(votes, self.masks)
        return self.upsample(labels) if full_size else labels

    def class_pixels(self) -> np.ndarray:
        """Pixels of the full-size :meth:`semantic_map` labelled with each class.

        Returns:
            ``[len(class_names)]`` int64, counted at the working resolution with each working
            pixel weighted by the image pixels it stands for.
        """
        labels = self.semantic_map(full_size=False)
        row_mult, col_mult = self._multiplicity()
        weights = (row_mult[:, None] * col_mult[None, :]).ravel()
        flat = labels.ravel()
        valid = flat >= 0
        return (
            np.bincount(flat[valid], weights=weights[valid], minlength=len(self.class_names))
            .round()
            .astype(np.int64)
        )

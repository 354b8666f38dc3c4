"""The one result type that flows from the pipeline to every writer.

A :class:`SegmentationResult` holds, for one image, the masks the classifier kept (column arrays,
one row per mask, like ``supervision.Detections``), their labels and scores, SAM's own per-mask
fields, and the vocabulary they were named from. Writers in :mod:`samadapter.io` only read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    rles = mask_utils.encode(fortran)
    out = []
    for rle in rles:
        counts = rle["counts"]
        out.append({"size": [int(rle["size"][0]), int(rle["size"][1])],
                    "counts": counts.decode("utf-8") if isinstance(counts, bytes) else counts})
    return out


def rle_to_masks(rles: list[dict[str, Any]]) -> np.ndarray:
    """Decode COCO RLEs (``counts`` as str or bytes) into a ``[N, H, W]`` boolean array."""
    if not rles:
        raise ValueError("rle_to_masks needs at least one RLE to know the image size")
    enc = [{"size": r["size"], "counts": r["counts"].encode("utf-8")
            if isinstance(r["counts"], str) else r["counts"]} for r in rles]
    return np.asarray(mask_utils.decode(enc), dtype=bool).transpose(2, 0, 1)


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


def semantic_from_scores(scores: np.ndarray, masks: np.ndarray, max_elements: int = 1 << 24
                         ) -> np.ndarray:
    """Per-pixel class by the einsum rule of DESIGN.md §1.6.

    ``argmax_c sum_q scores[q, c] * masks[q, h, w]``. Pixels are independent, so the ``[C, pixels]``
    buffer is built a chunk of pixels at a time (at most ``max_elements`` entries): 847 classes
    on a 512x683 image would otherwise need 1.2 GB.

    Args:
        scores: ``[Q, C]`` class scores of each mask.
        masks: ``[Q, H, W]`` boolean or float masks.
        max_elements: bound on ``max(C, Q) * chunk``.

    Returns:
        ``[H, W]`` int32 class indices ``0..C-1``; ``-1`` where no mask covers the pixel.
    """
    q, h, w = masks.shape
    if q == 0:
        return np.full((h, w), -1, dtype=np.int32)
    flat = masks.reshape(q, -1)
    scores_t = scores.astype(np.float32).T  # [C, Q]
    chunk = max(1, max_elements // max(scores_t.shape[0], q, 1))
    out = np.empty(h * w, dtype=np.int32)
    for start in range(0, h * w, chunk):
        part = flat[:, start:start + chunk].astype(np.float32)
        acc = scores_t @ part  # [C, chunk] == einsum("qc,qhw->chw") on these pixels
        res = acc.argmax(axis=0).astype(np.int32)
        res[~part.any(axis=0)] = -1
        out[start:start + chunk] = res
    return out.reshape(h, w)


@dataclass
class SegmentationResult:
    """Named masks of one image.

    Row ``i`` of every per-mask array describes the same mask. ``class_ids`` index into
    ``class_names``; the vocabulary's classes come first (``K = len(synonyms)`` of them) and, when
    unknown masks were kept, ``class_names[K] == "unknown"``.

    Attributes:
        masks: ``[N, H, W]`` bool, at the image's resolution.
        class_ids: ``[N]`` int64 index into ``class_names``.
        scores: ``[N]`` float32, the probability of the assigned class (for ``unknown``: the best
            vocabulary class's probability).
        class_scores: ``[N, K]`` float32, softmax over the ``K`` classes plus void, void dropped.
        class_names: display names, ``K`` (+1 when unknown masks were kept).
        synonyms: the ``K`` vocabulary classes' names, display name first.
        predicted_iou: ``[N]`` SAM's predicted IoU (NaN when masks did not come from SAM).
        stability_score: ``[N]`` SAM's stability score (NaN likewise).
        point_coords: ``[N, 2]`` the prompt point ``(x, y)`` in image pixels (NaN likewise).
        crop_box: ``[N, 4]`` SAM's crop box, XYWH.
        file_name: the image's file name as given, for the writers' ``images`` entries.
        timings: seconds per pipeline stage.
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

    def __post_init__(self) -> None:
        n = len(self.masks)
        if self.masks.ndim != 3:
            raise ValueError(f"masks must be [N, H, W], got {self.masks.shape}")
        for name in ("class_ids", "scores", "class_scores", "predicted_iou", "stability_score",
                     "point_coords", "crop_box"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, masks have {n}")

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the image."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @property
    def num_classes(self) -> int:
        """``K``, the number of vocabulary classes (``unknown`` not counted)."""
        return len(self.synonyms)

    @property
    def labels(self) -> list[str]:
        """Class name of each mask."""
        return [self.class_names[int(i)] for i in self.class_ids]

    @property
    def boxes_xywh(self) -> np.ndarray:
        """``[N, 4]`` float32 tight boxes, XYWH."""
        return masks_to_boxes_xywh(self.masks)

    @property
    def areas(self) -> np.ndarray:
        """``[N]`` int64 pixel count of each mask."""
        return self.masks.sum(axis=(1, 2), dtype=np.int64)

    def rles(self) -> list[dict[str, Any]]:
        """COCO RLE of each mask (``counts`` as utf-8 str)."""
        if len(self.masks) == 0:
            return []
        return masks_to_rle(self.masks)

    def semantic_map(self) -> np.ndarray:
        """Label map of the kept masks.

        The einsum rule of DESIGN.md §1.6 applied to the kept masks with each mask voting only for
        its assigned class (its score times a one-hot row). So a pixel is labelled ``c`` only if a
        mask named ``c`` covers it, and every covered pixel is labelled.

        Returns:
            ``[H, W]`` int32 index into ``class_names``; ``-1`` where no kept mask lies.
        """
        n = len(self.masks)
        votes = np.zeros((n, len(self.class_names)), dtype=np.float32)
        votes[np.arange(n), self.class_ids] = np.maximum(self.scores, 1e-6)
        return semantic_from_scores(votes, self.masks)

    def to_coco(self, image_id: int = 1, file_name: str | None = None) -> dict[str, Any]:
        """This result as a COCO dataset dict (see :func:`samadapter.io.coco.to_coco`)."""
        from samadapter.io.coco import to_coco

        return to_coco(self, image_id=image_id, file_name=file_name)

    def to_supervision(self) -> Any:
        """This result as ``supervision.Detections`` (masks, boxes, confidences, class ids and
        names); needs ``pip install supervision``."""
        from samadapter.io.supervision import to_supervision

        return to_supervision(self)

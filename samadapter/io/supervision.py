"""Results as ``supervision.Detections``, for supervision's annotators, trackers and tools.

supervision is optional: :func:`to_supervision` imports it when called and raises
:class:`SupervisionMissingError` (a :class:`~samadapter.errors.ConfigError` that is also an
``ImportError``) with the install command when it is missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from samadapter.errors import ConfigError
from samadapter.structures import SegmentationResult

INSTALL_HINT = "pip install supervision"


class SupervisionMissingError(ConfigError, ImportError):
    """supervision is needed but not installed."""


def _import_supervision() -> Any:
    try:
        import supervision
    except ImportError as e:
        raise SupervisionMissingError(
            f"to_supervision() needs the supervision package, which cannot be imported ({e})",
            hint=INSTALL_HINT,
        ) from e
    return supervision


def to_supervision(result: SegmentationResult) -> Any:
    """The result as a ``supervision.Detections``.

    Args:
        result: the named masks (``[N, H, W]``).

    Returns:
        ``sv.Detections`` with ``xyxy`` ``[N, 4]`` float32 boxes (pixel-edge coordinates: the
        tight COCO box ``x, y, x + w, y + h``), ``mask`` ``[N, H, W]`` bool, ``confidence`` ``[N]``
        float32 (the assigned class's probability), ``class_id`` ``[N]`` int64 (index into
        ``result.class_names``) and ``data["class_name"]`` ``[N]`` str, plus ``data`` arrays
        ``predicted_iou`` and ``stability_score`` (NaN for masks not from SAM), and
        ``metadata`` ``{"class_names", "file_name"}`` (supervision versions that have it).

    Raises:
        SupervisionMissingError: supervision is not installed (hint: ``pip install supervision``).
    """
    sv = _import_supervision()
    n = len(result)
    boxes = result.boxes_xywh.astype(np.float32)
    xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1).reshape(n, 4)
    names = np.array(result.labels, dtype=str) if n else np.zeros(0, dtype=str)
    extra: dict[str, Any] = {}
    if "metadata" in getattr(sv.Detections, "__dataclass_fields__", {}):  # supervision >= 0.24
        extra["metadata"] = {"class_names": list(result.class_names), "file_name": result.file_name}
    return sv.Detections(
        xyxy=xyxy,
        mask=result.full_masks().astype(bool),
        confidence=result.scores.astype(np.float32),
        class_id=result.class_ids.astype(np.int64),
        data={
            "class_name": names,
            "predicted_iou": np.asarray(result.predicted_iou, dtype=np.float32),
            "stability_score": np.asarray(result.stability_score, dtype=np.float32),
        },
        **extra,
    )

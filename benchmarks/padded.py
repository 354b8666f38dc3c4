"""Shared by the benchmark scripts: SAM proposals padded to a realistic number of masks."""

from __future__ import annotations

import cv2
import numpy as np

from samadapter.modeling.proposer import Proposals, SamProposer


class PaddedProposer:
    """Runs SAM, then adds blob masks until there are at least ``min_masks``.

    Random-weight SAM rarely keeps a mask, so the benchmarks pad each image's proposals with
    ellipses to give the classifier and the writers a realistic load; SAM still encodes the image
    and decodes every prompt (its timings stay its own). Blobs are drawn at the size of the image
    SAM was given (the working resolution), without full-size coordinate grids.
    """

    def __init__(self, inner: SamProposer, min_masks: int, seed: int = 0) -> None:
        self.inner = inner
        self.min_masks = min_masks
        self.rng = np.random.default_rng(seed)
        self.settings = inner.settings

    def __call__(self, image: np.ndarray) -> Proposals:
        props = self.inner(image)
        extra = self.min_masks - len(props)
        if extra <= 0:
            return props
        h, w = image.shape[:2]
        blobs = np.zeros((extra, h, w), dtype=np.uint8)
        for i in range(extra):
            centre = (int(self.rng.uniform(0, w)), int(self.rng.uniform(0, h)))
            axes = (int(self.rng.uniform(0.05, 0.3) * w), int(self.rng.uniform(0.05, 0.3) * h))
            cv2.ellipse(blobs[i], centre, axes, float(self.rng.uniform(0, 180)), 0, 360, 1, -1)
        pad = Proposals.from_masks(blobs.astype(bool))
        return Proposals(
            np.concatenate([props.masks, pad.masks]),
            np.concatenate([props.predicted_iou, pad.predicted_iou]),
            np.concatenate([props.stability_score, pad.stability_score]),
            np.concatenate([props.point_coords, pad.point_coords]),
            np.concatenate([props.crop_box, pad.crop_box]),
            props.timings,
        )

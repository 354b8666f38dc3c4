"""Mask-Adapter training: ground-truth warm-up and mixed-mask training (docs/architecture.md).

CLIP stays frozen, so its dense features (and SAM's proposals) are computed once per image and
cached (:mod:`samadapter.train.features`); only the adapter head and the void embedding learn.

Typical use::

    from samadapter.models import build_tiny_classifier
    from samadapter.train import TrainConfig, Trainer, TrainingFeatures, SyntheticShapes

    backbone, adapter = build_tiny_classifier()
    data = TrainingFeatures(SyntheticShapes(64), backbone, clip_size=128,
                            cache_dir="cache/train")
    data.prepare()
    Trainer(backbone, adapter, data, TrainConfig(steps=500), "runs/demo").fit()
"""

from samadapter.data.synthetic import DEFAULT_CLASSES, SyntheticClass, SyntheticShapes
from samadapter.train.features import PrepareReport, TrainingFeatures, TrainItem
from samadapter.train.gt_masks import GtMasks, RegionSettings, region_masks, sample_gt_masks
from samadapter.train.loop import TrainConfig, Trainer, TrainSummary
from samadapter.train.losses import (
    MixedBatch,
    classification_logits,
    compose_mixed,
    consistency_loss,
    mask_ce_loss,
    mask_iou,
    match_by_iou,
)
from samadapter.train.synthetic import calibrated_classes

__all__ = [
    "DEFAULT_CLASSES",
    "GtMasks",
    "MixedBatch",
    "PrepareReport",
    "RegionSettings",
    "SyntheticClass",
    "SyntheticShapes",
    "TrainConfig",
    "TrainItem",
    "TrainSummary",
    "Trainer",
    "TrainingFeatures",
    "calibrated_classes",
    "classification_logits",
    "compose_mixed",
    "consistency_loss",
    "mask_ce_loss",
    "mask_iou",
    "match_by_iou",
    "region_masks",
    "sample_gt_masks",
]

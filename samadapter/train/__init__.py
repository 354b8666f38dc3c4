"""Mask-Adapter training: ground-truth warm-up and mixed-mask training (docs/architecture.md).

CLIP stays frozen, so its dense features (and SAM's proposals) are computed once per image and
cached (:mod:`samadapter.train.features`); only the adapter head and the void embedding learn.

Typical use::

    from samadapter.data.synthetic import SyntheticShapes
    from samadapter.models import build_tiny_classifier
    from samadapter.train.config import TrainConfig
    from samadapter.train.features import TrainingFeatures
    from samadapter.train.loop import Trainer

    backbone, adapter = build_tiny_classifier()
    data = TrainingFeatures(SyntheticShapes(64), backbone, clip_size=128,
                            cache_dir="cache/train")
    data.prepare()
    Trainer(backbone, adapter, data, TrainConfig(steps=500), "runs/demo").fit()
"""

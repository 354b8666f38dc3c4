"""What training reads per image: frozen-CLIP features, ground-truth masks, SAM proposals.

CLIP is frozen during Mask-Adapter training, so its dense features of an image never change: they
are computed once and cached on disk (float16, :mod:`samadapter.io.feature_store`), together with
SAM's proposals for mixed-mask training (computed once per image too) and the ground-truth masks.
On a CPU this is what makes training feasible (``benchmarks/train_speed.py``).

Cache layout under ``cache_dir``::

    <clip key>/<sample name>.npz     CLIP features (+ SAM proposals once stage 2 needed them)
    gt-<region key>/<sample name>.npz ground-truth masks (RLE) and classes

The CLIP key names the architecture, the input size and a digest of the CLIP weights; the SAM
settings are recorded in each file's ``meta`` and proposals are recomputed when they differ.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samadapter.data.base import SemanticDataset
from samadapter.errors import OutputError
from samadapter.io.atomic import atomic_path
from samadapter.io.feature_store import load_features, save_features
from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.mask_generator import Proposals
from samadapter.pipeline import ImageFeatures, PipelineSettings, Segmenter
from samadapter.structures import masks_to_rle, rle_to_masks
from samadapter.train.gt_masks import GtMasks, RegionSettings, sample_gt_masks
from samadapter.train.losses import mask_iou
from samadapter.vocab import Vocabulary

Proposer = Callable[[np.ndarray], "Proposals | np.ndarray"]
"""Anything that maps an ``[H, W, 3]`` uint8 image to proposals (``[P, H, W]`` bool masks)."""


@dataclass
class TrainItem:
    """One training image as the loop consumes it.

    Attributes:
        name: the sample's name.
        features: raw dense CLIP features ``[1, D, h, w]`` (float32, CPU) and canvas geometry.
        gt: ground-truth masks ``[G, H, W]`` and classes ``[G]``.
        proposals: ``[P, H, W]`` bool SAM masks, or ``None`` when not requested.
    """

    name: str
    features: ImageFeatures
    gt: GtMasks
    proposals: np.ndarray | None = None
    _iou: torch.Tensor | None = field(default=None, repr=False)

    def proposal_iou(self) -> torch.Tensor:
        """``[P, G]`` IoU of proposals with ground-truth masks (computed once per item)."""
        if self._iou is None:
            props = self.proposals if self.proposals is not None else np.zeros((0, 1, 1), bool)
            if len(props) == 0 or len(self.gt) == 0:
                self._iou = torch.zeros((len(props), len(self.gt)))
            else:
                self._iou = mask_iou(props, self.gt.masks)
        return self._iou


@dataclass
class PrepareReport:
    """What :meth:`TrainingFeatures.prepare` did.

    Attributes:
        computed: images whose features / masks / proposals were (re)computed.
        cached: images found complete in the cache.
        seconds: wall time.
    """

    computed: int = 0
    cached: int = 0
    seconds: float = 0.0


def safe_relpath(name: str) -> str:
    """A sample name as a relative path inside the cache (no ``..``, no absolute parts)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or "_"


def clip_key(backbone: ClipBackbone, clip_size: int) -> str:
    """Cache key of a CLIP: architecture, input size and a digest of its small visual tensors.

    Args:
        backbone: the frozen CLIP.
        clip_size: CLIP input size (see :func:`~samadapter.modeling.clip_backbone.clip_input_size`).

    Returns:
        e.g. ``convnext_large_d_320-c896-3f9c01ab2e`` (``c``: sized by the long-side rule; caches
        keyed ``-s`` were made with an older short-side resize and are not reused).
    """
    h = hashlib.sha256()
    for key, value in backbone.model.state_dict().items():
        if key.startswith("visual.") and value.numel() <= 65536:
            h.update(key.encode())
            h.update(value.detach().float().cpu().numpy().tobytes())
    return f"{backbone.arch.name}-c{clip_size}-{h.hexdigest()[:10]}"


def save_gt(path: Path, gt: GtMasks, meta: dict[str, Any]) -> None:
    """Write ground-truth masks (RLE) and classes atomically to an ``.npz``."""
    h, w = gt.masks.shape[1:]
    arrays = {
        "rle": np.array(json.dumps(masks_to_rle(gt.masks))),
        "classes": gt.classes.astype(np.int64),
        "size": np.array([h, w], dtype=np.int64),
        "meta": np.array(json.dumps(meta)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]


def load_gt(path: Path) -> GtMasks:
    """Read what :func:`save_gt` wrote.

    Raises:
        OutputError: the file is missing or unreadable.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            h, w = (int(v) for v in data["size"])
            classes = data["classes"].astype(np.int64)
            rles = json.loads(str(data["rle"]))
    except (OSError, ValueError, KeyError) as e:
        raise OutputError(f"cannot read cached masks {path}: {e}") from None
    if not len(classes):
        return GtMasks.empty(h, w)
    return GtMasks(rle_to_masks(rles), classes)


class TrainingFeatures:
    """Per-image training inputs of a dataset, computed once and cached (or computed live).

    Args:
        dataset: any :class:`~samadapter.data.base.SemanticDataset`.
        backbone: the frozen CLIP.
        clip_size: CLIP input size (the pipeline's ``--clip-size``; long side of a non-square
            image).
        device: where CLIP runs while features are computed.
        cache_dir: cache folder for this dataset split, or ``None`` to compute everything on every
            access (slow: CLIP, and SAM for proposals, run each time).
        proposer: SAM (or any mask source) for mixed-mask training, or ``None``.
        proposer_key: a string naming the proposer and its settings (recorded in the cache).
        regions: how ground-truth masks are cut.
        in_memory: also keep every loaded item in RAM (small datasets).
        limit: use only the first ``limit`` images of ``dataset`` (0: all).
    """

    def __init__(
        self,
        dataset: SemanticDataset,
        backbone: ClipBackbone,
        *,
        clip_size: int,
        device: torch.device | str = "cpu",
        cache_dir: Path | str | None = None,
        proposer: Proposer | None = None,
        proposer_key: str = "",
        regions: RegionSettings | None = None,
        in_memory: bool = False,
        limit: int = 0,
    ) -> None:
        self.dataset = dataset
        self.backbone = backbone
        self.clip_size = clip_size
        self.device = torch.device(device)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.proposer = proposer
        self.proposer_key = proposer_key
        self.regions = regions or RegionSettings()
        self.in_memory = in_memory
        self._names = list(dataset.names())[: limit or None]
        self._memory: dict[int, TrainItem] = {}
        self._segmenter = Segmenter(
            backbone,
            None,
            None,
            PipelineSettings(classifier="mask-pooling", clip_size=clip_size),
            device=self.device,
        )
        self._clip_key = clip_key(backbone, clip_size) if self.cache_dir else ""

    def __len__(self) -> int:
        return len(self._names)

    @property
    def vocab(self) -> Vocabulary:
        """The dataset's vocabulary."""
        return self.dataset.vocab

    def feature_path(self, index: int) -> Path:
        """Cache file of image ``index``'s CLIP features (and proposals)."""
        assert self.cache_dir is not None
        return self.cache_dir / self._clip_key / f"{safe_relpath(self._names[index])}.npz"

    def gt_path(self, index: int) -> Path:
        """Cache file of image ``index``'s ground-truth masks."""
        assert self.cache_dir is not None
        return (
            self.cache_dir / f"gt-{self.regions.key()}" / f"{safe_relpath(self._names[index])}.npz"
        )

    def image_features(self, image: np.ndarray) -> ImageFeatures:
        """The frozen CLIP's raw dense features of an image (what the cache stores), on the CPU.

        Args:
            image: ``[H, W, 3]`` uint8 RGB.

        Returns:
            float32 features ``[1, D, h, w]`` and the canvas geometry.
        """
        return _cpu(self._segmenter.image_features(image))

    def prepare(self, progress: Callable[[int], None] | None = None) -> PrepareReport:
        """Compute and cache whatever is missing for every image (no-op without a cache folder).

        Args:
            progress: called with the image index after each image.

        Returns:
            counts of computed and already-cached images, and the time taken.
        """
        report = PrepareReport()
        t0 = time.perf_counter()
        for i in range(len(self)):
            if self.cache_dir is not None:
                done = self._complete_in_cache(i)
                if done:
                    report.cached += 1
                else:
                    self._load_or_compute(i)
                    report.computed += 1
            if progress is not None:
                progress(i)
        report.seconds = time.perf_counter() - t0
        return report

    def __getitem__(self, index: int) -> TrainItem:
        if index in self._memory:
            return self._memory[index]
        item = self._load_or_compute(index)
        if self.in_memory:
            self._memory[index] = item
        return item

    # ----------------------------------------------------------------------------------------------

    def _meta(self, index: int) -> dict[str, Any]:
        return {
            "name": self._names[index],
            "clip": self._clip_key,
            "sam": self.proposer_key if self.proposer is not None else None,
        }

    def _complete_in_cache(self, index: int) -> bool:
        fp, gp = self.feature_path(index), self.gt_path(index)
        if not (fp.is_file() and gp.is_file()):
            return False
        if self.proposer is None:
            return True
        try:
            with np.load(fp, allow_pickle=False) as data:
                return (
                    "rle" in data and json.loads(str(data["meta"])).get("sam") == self.proposer_key
                )
        except (OSError, ValueError, KeyError):
            return False

    def _proposals(self, image: np.ndarray) -> Proposals:
        assert self.proposer is not None
        out = self.proposer(image)
        return out if isinstance(out, Proposals) else Proposals.from_masks(np.asarray(out))

    def _load_or_compute(self, index: int) -> TrainItem:
        name = self._names[index]
        get_sample = functools.cache(lambda: self.dataset[index])  # read once, only when needed
        if self.cache_dir is None:
            s = get_sample()
            props = self._proposals(s.image).masks if self.proposer is not None else None
            return TrainItem(
                name, self.image_features(s.image), sample_gt_masks(s, self.regions), props
            )

        gp = self.gt_path(index)
        gt: GtMasks | None = None
        if gp.is_file():
            try:
                gt = load_gt(gp)
            except OutputError:
                gt = None
        if gt is None:
            gt = sample_gt_masks(get_sample(), self.regions)
            save_gt(gp, gt, {"name": name, "regions": self.regions.key()})

        fp = self.feature_path(index)
        feats: ImageFeatures | None = None
        proposals: Proposals | None = None
        meta: dict[str, Any] = {}
        if fp.is_file():
            try:
                feats, proposals, meta = load_features(fp)
            except OutputError:
                feats = None
        need_props = self.proposer is not None and (
            proposals is None or meta.get("sam") != self.proposer_key
        )
        if feats is None or need_props:
            s = get_sample()
            if feats is None:
                feats = self.image_features(s.image)
            if self.proposer is not None and need_props:
                proposals = self._proposals(s.image)
            meta_out = self._meta(index)
            if proposals is not None and not need_props:
                meta_out["sam"] = meta.get("sam")
            save_features(fp, feats, proposals, meta_out)
            feats.raw = feats.raw.half().float()  # exactly what a later load returns
        masks = proposals.masks if (proposals is not None and self.proposer is not None) else None
        return TrainItem(name, feats, gt, masks)


def _cpu(feats: ImageFeatures) -> ImageFeatures:
    # clone(): features made under inference_mode cannot take part in autograd otherwise.
    raw = feats.raw.detach().float().cpu().clone()
    return dataclasses.replace(feats, raw=raw, cdt_context=None)


__all__ = [
    "PrepareReport",
    "Proposer",
    "TrainItem",
    "TrainingFeatures",
    "clip_key",
    "load_gt",
    "safe_relpath",
    "save_gt",
]

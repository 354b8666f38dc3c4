"""Image in, named masks out. No file I/O: images are arrays, results are dataclasses.

``Segmenter`` chains the proposer (SAM), the CLIP backbone and the Mask-Adapter (or plain mask
pooling) and returns one :class:`~samadapter.structures.SegmentationResult` per image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import cv2
import numpy as np
import torch
from PIL import Image

from samadapter.config import AmgSettings, PipelineSettings
from samadapter.errors import ConfigError
from samadapter.io.images import DEFAULT_MAX_PIXELS, as_rgb_array, pixel_cap, working_image
from samadapter.modeling.classifier import classification_logits, refined_logits
from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.embeddings import (
    ImageFeatures,
    adapter_embeddings,
    adapter_input,
    canvas_masks,
    pooling_embeddings,
    refine_text,
)
from samadapter.modeling.mask_adapter import MaskAdapter
from samadapter.modeling.mask_generator import Proposals
from samadapter.postprocess import keep_near_best
from samadapter.structures import UNKNOWN_NAME, SegmentationResult, full_size_areas
from samadapter.vocab import (
    TEMPLATES,
    Vocabulary,
    build_text_classifier,
    check_keep_unknown,
    parse_classes,
)


class LargeImageWarning(UserWarning):
    """An image above :data:`~samadapter.io.images.DEFAULT_MAX_PIXELS` was shrunk before
    segmenting it."""


def limit_pixels(image: np.ndarray, max_pixels: int | None = None) -> tuple[np.ndarray, str | None]:
    """Shrink an image with more than ``max_pixels`` pixels (area resampling, aspect kept).

    Batch runs shrink such images while decoding (:func:`~samadapter.io.images.load_image`);
    this does the same for an array given to :class:`Segmenter`, to the same size.

    Args:
        image: ``[H, W, 3]`` uint8.
        max_pixels: the limit; default :data:`~samadapter.io.images.DEFAULT_MAX_PIXELS`.

    Returns:
        ``(image, None)`` when within the limit, else ``(shrunk image, a one-line message)``.
    """
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    h, w = image.shape[:2]
    target = pixel_cap(w, h, limit)
    if target is None:
        return image, None
    nw, nh = target
    small = cv2.resize(np.ascontiguousarray(image), (nw, nh), interpolation=cv2.INTER_AREA)
    return small, (
        f"{w}x{h} is {h * w / 1e6:.3g} MP, above the {limit / 1e6:.3g} MP limit: "
        f"segmented and written at {nw}x{nh}"
    )


def masks_fit_image(mask_size: tuple[int, int], image_size: tuple[int, int]) -> bool:
    """Whether masks of ``mask_size`` are the image's, or a working resolution of it (no larger,
    same aspect ratio to within a pixel)."""
    (h, w), (hh, ww) = (int(v) for v in mask_size), (int(v) for v in image_size)
    if (h, w) == (hh, ww):
        return True
    return 0 < h <= hh and 0 < w <= ww and abs(h * ww - w * hh) <= max(hh, ww)


def rescale_proposals(proposals: Proposals, image_size: tuple[int, int]) -> Proposals:
    """Proposals made on a working-resolution copy of an image, as proposals of the image.

    The masks stay at the working resolution (``original_size`` records the image's); prompt
    points and crop boxes are scaled to image pixels (crop boxes rounded).
    """
    h, w = proposals.masks.shape[1:]
    hh, ww = int(image_size[0]), int(image_size[1])
    if (h, w) == (hh, ww):
        return proposals
    sx, sy = ww / w, hh / h
    points = proposals.point_coords.astype(np.float32) * np.array([sx, sy], dtype=np.float32)
    crop = np.rint(proposals.crop_box.astype(np.float64) * np.array([sx, sy, sx, sy])).astype(
        np.float32
    )
    return dataclasses.replace(
        proposals, point_coords=points, crop_box=crop, original_size=(hh, ww)
    )


ImageLike: TypeAlias = str | os.PathLike[str] | Image.Image | np.ndarray
"""What the Python API takes as an image."""
ClassesLike: TypeAlias = Vocabulary | str | Sequence[str]
"""What the Python API takes as classes."""


def as_vocabulary(classes: ClassesLike) -> Vocabulary:
    """A :class:`Vocabulary` from one, from ``"cat,sofa|couch"`` or from ``["cat", "sofa|couch"]``.

    Raises:
        VocabularyError: empty or duplicate names.
    """
    if isinstance(classes, Vocabulary):
        return classes
    if isinstance(classes, str):
        return parse_classes(classes)
    return parse_classes(",".join(classes))


def _default_name(image: object) -> str:
    if isinstance(image, str | os.PathLike):
        return Path(image).name
    return "image"


class Proposer(Protocol):
    """Anything that turns an image into :class:`Proposals` (SAM, SAM 2, ...)."""

    settings: AmgSettings

    def __call__(self, image: np.ndarray) -> Proposals: ...


class TextStore(Protocol):
    """Where text embeddings are kept between runs (see :mod:`samadapter.io.text_cache`)."""

    def get(self, templates: Sequence[str], names: Sequence[str]) -> torch.Tensor | None: ...

    def put(
        self, templates: Sequence[str], names: Sequence[str], embeddings: torch.Tensor
    ) -> None: ...


@dataclass
class TextClassifier:
    """Text embeddings of a vocabulary.

    Attributes:
        vocab: the vocabulary.
        embeddings: ``[T, C]`` unit-norm embeddings, one per class name / synonym.
        name_to_class: ``[T]`` class index of each row.
    """

    vocab: Vocabulary
    embeddings: torch.Tensor
    name_to_class: torch.Tensor


def resolve_device(device: str) -> torch.device:
    """``auto`` → cuda if available, else mps, else cpu; others are checked.

    Raises:
        ConfigError: an unknown or unavailable device.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise ConfigError(f"unknown device '{device}'", hint="use auto, cpu, cuda or mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda asked for, but no CUDA GPU is available", hint="use --device cpu or auto"
        )
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "--device mps asked for, but MPS is not available", hint="use --device cpu or auto"
        )
    return torch.device(device)


@dataclass
class Segmenter:
    """SAM proposals named by CLIP + Mask-Adapter.

    Attributes:
        backbone: CLIP dense features and text encoder.
        adapter: the Mask-Adapter, or ``None`` (then only ``mask-pooling`` works).
        proposer: SAM's automatic mask generator, or ``None`` (then only :meth:`classify` works).
        settings: classification settings.
        device: where the models live.
    """

    backbone: ClipBackbone
    adapter: MaskAdapter | None
    proposer: Proposer | None
    settings: PipelineSettings = field(default_factory=PipelineSettings)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    text_store: TextStore | None = None
    info: dict[str, Any] = field(default_factory=dict)
    _text_cache: dict[tuple[tuple[str, ...], ...], TextClassifier] = field(
        default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        if self.settings.classifier == "mask-adapter" and self.adapter is None:
            raise ConfigError(
                "the mask-adapter classifier needs adapter weights",
                hint="give --adapter / --adapter-checkpoint, or use --classifier mask-pooling",
            )

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        precision = self.settings.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        if precision == "bf16" and self.device.type in ("cuda", "cpu"):
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                yield
        else:
            yield

    @torch.inference_mode()
    def text_classifier(self, vocab: Vocabulary) -> TextClassifier:
        """Text embeddings of ``vocab`` (14 templates averaged), cached per vocabulary."""
        check_keep_unknown(vocab, self.settings.keep_unknown)
        key = vocab.classes
        if key not in self._text_cache:
            names = vocab.flat_names()
            emb = self.text_store.get(TEMPLATES, names) if self.text_store else None
            if emb is None or tuple(emb.shape) != (len(names), self.backbone.arch.embed_dim):
                emb = build_text_classifier(self.backbone.encode_text, vocab).float().cpu()
                if self.text_store is not None:
                    self.text_store.put(TEMPLATES, names, emb)
            index = torch.tensor(vocab.name_to_class_index(), dtype=torch.long)
            self._text_cache[key] = TextClassifier(vocab, emb.float(), index)
        return self._text_cache[key]

    def __call__(
        self, image: ImageLike, classes: ClassesLike, file_name: str | None = None
    ) -> SegmentationResult:
        """Segment and name everything in ``image``.

        Args:
            image: ``[H, W, 3]`` uint8 RGB, a PIL image, or a file path.
            classes: a :class:`~samadapter.vocab.Vocabulary`, a string such as
                ``"cat,sofa|couch"`` (classes split on ``,``, synonyms on ``|``) or a list of
                class names (each may hold ``|``-joined synonyms).
            file_name: recorded in the result for the writers (default: the path's name, or
                ``image``).

        Returns:
            the kept masks with labels and scores; an image above
            :data:`~samadapter.io.images.DEFAULT_MAX_PIXELS` is shrunk first (with a
            :class:`LargeImageWarning`) and the result is at that size.
        """
        array, note = limit_pixels(as_rgb_array(image))
        if note is not None:
            warnings.warn(
                f"{file_name or _default_name(image)}: {note}", LargeImageWarning, stacklevel=2
            )
        return self.classify(
            array, self.propose(array), classes, file_name=file_name or _default_name(image)
        )

    def propose(self, image: np.ndarray) -> Proposals:
        """SAM's masks for ``image`` (``[H, W, 3]`` uint8 RGB), with its per-mask fields.

        An image whose long side exceeds ``settings.working_size`` is shrunk to it first (area
        resampling) and SAM runs on that: SAM resizes every input to a 1024 long side anyway,
        and its masks and memory then stay the same size whatever the photo's. The masks come
        back at the working resolution, with ``original_size`` the image's; prompt points and
        crop boxes are in image pixels. SAM's own pixel-valued knob ``min_mask_region_area``
        applies to the image SAM sees, i.e. it counts working pixels.

        Raises:
            ConfigError: this segmenter was built without a proposer.
        """
        if self.proposer is None:
            raise ConfigError("this Segmenter has no proposer", hint="pass masks to classify()")
        work = working_image(image, self.settings.working_size)
        dtype = getattr(self.proposer, "cuda_autocast", None)
        if self.device.type == "cuda" and dtype is not None:
            with torch.autocast("cuda", dtype=dtype):
                proposals = self.proposer(work)
        else:
            proposals = self.proposer(work)
        return rescale_proposals(proposals, image.shape[:2])

    def classify(
        self,
        image: ImageLike | ImageFeatures,
        proposals: Proposals | np.ndarray,
        classes: ClassesLike,
        file_name: str | None = None,
        embeddings: np.ndarray | None = None,
        cdt_context: torch.Tensor | None = None,
    ) -> SegmentationResult:
        """Name given masks (from SAM, SAM 2, Mask2Former, a hand annotation...).

        Args:
            image: ``[H, W, 3]`` uint8 RGB, a PIL image, a file path, or the image's
                :meth:`image_features` (e.g. from a cache).
            proposals: :class:`Proposals` (masks at the image's size, or at a working
                resolution with ``original_size`` the image's) or a ``[N, H, W]`` boolean mask
                array at the image's size.
            classes: as for :meth:`__call__`.
            file_name: recorded in the result.
            embeddings: ``[N, C]`` :meth:`mask_embeddings` of all the proposals, when already
                known (e.g. cached): then neither CLIP nor the adapter runs.
            cdt_context: MAFT+ adapters: the image's :meth:`cdt_context`, when already known
                (e.g. cached); with ``embeddings`` the image is then not needed at all.

        Returns:
            the kept masks with labels and scores.
        """
        vocab = as_vocabulary(classes)
        file_name = file_name or _default_name(image)
        if not isinstance(image, ImageFeatures):
            image = as_rgb_array(image)
        if isinstance(proposals, np.ndarray):
            if proposals.ndim != 3:
                raise ConfigError(
                    f"masks must be an [N, H, W] array, got shape {tuple(proposals.shape)}",
                    hint="for one H x W mask pass masks[None]",
                )
            if proposals.dtype.kind not in "biuf" or (
                proposals.dtype.kind == "f" and not np.isfinite(proposals).all()
            ):
                raise ConfigError(
                    f"masks must be boolean or 0/1 numbers, got {proposals.dtype} "
                    "with non-finite values"
                    if proposals.dtype.kind == "f"
                    else f"masks must be boolean or 0/1 numbers, got {proposals.dtype}",
                    hint="pass masks as a bool array (e.g. probabilities > 0.5)",
                )
            proposals = Proposals.from_masks(proposals)
        size = image.image_size if isinstance(image, ImageFeatures) else image.shape[:2]
        if tuple(proposals.image_size) != tuple(size) or not masks_fit_image(
            proposals.masks.shape[1:], size
        ):
            made_for = (
                ""
                if proposals.original_size is None
                else f" for an image of {tuple(proposals.image_size)}"
            )
            raise ConfigError(
                f"masks are {tuple(proposals.masks.shape[1:])}{made_for} but the "
                f"image is {tuple(size)}",
                hint="masks must match the image size",
            )
        timings = dict(proposals.timings)
        t0 = time.perf_counter()
        text = self.text_classifier(vocab)
        timings["text"] = time.perf_counter() - t0
        areas = full_size_areas(proposals.masks, proposals.image_size)
        keep = np.flatnonzero(areas >= max(1, self.settings.min_area))
        if self.uses_cdt and cdt_context is None and len(keep):
            if not isinstance(image, ImageFeatures):
                image = self.image_features(image, timings)
            cdt_context = self.cdt_context(image)
        if embeddings is None:
            emb = self.mask_embeddings(image, proposals.masks[keep], timings=timings)
        else:
            if len(embeddings) != len(proposals):
                raise ConfigError(f"{len(embeddings)} embeddings for {len(proposals)} masks")
            emb = embeddings[keep]
        probs = self.probabilities(emb, text, timings=timings, cdt_context=cdt_context)
        return self._result(proposals, keep, probs, vocab, file_name, timings)

    @torch.inference_mode()
    def image_features(
        self, image: np.ndarray, timings: dict[str, float] | None = None
    ) -> ImageFeatures:
        """Dense CLIP features of an image (the expensive, vocabulary-free part).

        Args:
            image: ``[H, W, 3]`` uint8 RGB.
            timings: receives ``clip_dense`` seconds when given.

        Returns:
            the raw stride-32 features and the geometry that maps masks onto them.
        """
        t0 = time.perf_counter()
        with self._autocast():
            pixels, resized = self.backbone.preprocess(image, self.settings.clip_size)
            raw = self.backbone.dense_features(pixels)  # [1, D, Hp/32, Wp/32]
        self._sync()
        if timings is not None:
            timings["clip_dense"] = time.perf_counter() - t0
        return ImageFeatures(
            raw=raw,
            resized=resized,
            canvas=(int(pixels.shape[-2]), int(pixels.shape[-1])),
            image_size=(int(image.shape[0]), int(image.shape[1])),
        )

    def class_probabilities(
        self,
        image: np.ndarray | ImageFeatures,
        masks: np.ndarray,
        text: TextClassifier,
        timings: dict[str, float] | None = None,
        classifier: str | None = None,
    ) -> np.ndarray:
        """Class probabilities of each mask.

        Args:
            image: ``[H, W, 3]`` uint8 RGB, or its :meth:`image_features` (computed once, reused
                for several mask sets or classifiers).
            masks: ``[Q, h, w]`` bool at the image's resolution or a working resolution of it.
            text: the vocabulary's text embeddings.
            timings: receives ``clip_dense``, ``classify`` and ``score`` seconds when given.
            classifier: ``mask-adapter`` or ``mask-pooling``; default: the settings'.

        Returns:
            ``[Q, K]`` float32 probabilities (void dropped; with mask pooling there is no void).
        """
        context = None
        if self.uses_cdt and len(masks):
            if not isinstance(image, ImageFeatures):
                image = self.image_features(image, timings)
            context = self.cdt_context(image)
        emb = self.mask_embeddings(image, masks, classifier, timings)
        return self.probabilities(emb, text, classifier, timings, cdt_context=context)

    @property
    def uses_cdt(self) -> bool:
        """The adapter is a MAFT+ one: its cdt refines the text with each image's features (for
        both classifiers, as the text side of MAFT+)."""
        return self.adapter is not None and self.adapter.is_maftp

    @torch.inference_mode()
    def cdt_context(self, feats: ImageFeatures) -> torch.Tensor:
        """MAFT+: the image's reshape-quirk dense projection, the adapter's input and the cdt's
        memory (:func:`~samadapter.modeling.embeddings.adapter_input`); computed once per
        :class:`ImageFeatures` and kept in its ``cdt_context``.

        Args:
            feats: the image's features.

        Returns:
            ``[1, C, h, w]`` on the segmenter's device.

        Raises:
            ConfigError: the adapter is not a MAFT+ one.
        """
        if not self.uses_cdt:
            raise ConfigError("only MAFT+ adapters use a cdt context")
        if feats.cdt_context is None:
            with self._autocast():
                feats.cdt_context = adapter_input(
                    self.backbone, self.adapter, feats.raw.to(self.device)
                )
        return feats.cdt_context.to(self.device)

    def mask_embeddings(
        self,
        image: np.ndarray | ImageFeatures,
        masks: np.ndarray,
        classifier: str | None = None,
        timings: dict[str, float] | None = None,
    ) -> np.ndarray:
        """One CLIP-space embedding per mask: the vocabulary-free part of classification.

        The Mask-Adapter's activation maps pool the dense features, projected and averaged over
        the maps (or, for ``mask-pooling``, the plain average under the mask, projected). Cache
        these and any vocabulary is a matrix product away (see :meth:`probabilities`).

        Args:
            image: ``[H, W, 3]`` uint8 RGB, or its :meth:`image_features`.
            masks: ``[Q, h, w]`` bool at the image's resolution or a working resolution of it.
            classifier: ``mask-adapter`` or ``mask-pooling``; default: the settings'.
            timings: receives ``clip_dense`` (when computed here) and ``classify`` seconds.

        Returns:
            ``[Q, C]`` float32 embeddings (not normalised).
        """
        timings = {} if timings is None else timings
        classifier = classifier or self.settings.classifier
        if classifier == "mask-adapter" and self.adapter is None:
            raise ConfigError("the mask-adapter classifier needs adapter weights")
        if len(masks) == 0:
            return np.zeros((0, self.backbone.arch.embed_dim), dtype=np.float32)
        feats = image if isinstance(image, ImageFeatures) else self.image_features(image, timings)
        if not masks_fit_image(masks.shape[1:], feats.image_size):
            raise ConfigError(
                f"masks are {tuple(masks.shape[1:])} but the image is {feats.image_size}",
                hint="masks must match the image size",
            )
        t0 = time.perf_counter()
        emb = self._embed(feats, masks, classifier)
        timings["classify"] = time.perf_counter() - t0
        return emb

    @torch.inference_mode()
    def probabilities(
        self,
        embeddings: np.ndarray,
        text: TextClassifier,
        classifier: str | None = None,
        timings: dict[str, float] | None = None,
        cdt_context: torch.Tensor | None = None,
    ) -> np.ndarray:
        """Class probabilities from mask embeddings (docs/architecture.md).

        With a MAFT+ adapter the text classifier (names and void) is first refined by its cdt
        with the image's :meth:`cdt_context`, in float32, and scored as MAFT+ scores
        (:func:`~samadapter.modeling.classifier.refined_logits`).

        Args:
            embeddings: ``[Q, C]`` from :meth:`mask_embeddings`.
            text: the vocabulary's text embeddings.
            classifier: decides whether the adapter's void class takes part.
            timings: receives ``score`` seconds when given.
            cdt_context: ``[1, C, h, w]`` the image's :meth:`cdt_context` (MAFT+ adapters only;
                needed when there are masks).

        Returns:
            ``[Q, K]`` float32 probabilities.

        Raises:
            ConfigError: a MAFT+ adapter, masks, and no ``cdt_context``.
        """
        t0 = time.perf_counter()
        classifier = classifier or self.settings.classifier
        use_void = classifier == "mask-adapter" and self.adapter is not None
        emb = torch.from_numpy(embeddings).to(self.device)
        if self.uses_cdt and self.adapter is not None and len(embeddings):
            if cdt_context is None:
                raise ConfigError(
                    "a MAFT+ adapter refines the text with the image's features, "
                    "but no cdt context was given",
                    hint="pass the image (or its features) to classify",
                )
            refined = refine_text(
                self.adapter, cdt_context.to(self.device).float(), text.embeddings.to(self.device)
            )
            logits = refined_logits(
                emb,
                refined,
                text.name_to_class,
                len(text.vocab),
                self.backbone.logit_scale,
                with_void=use_void,
            )
        else:
            void = self.adapter.void_embedding.weight if use_void and self.adapter else None
            logits = classification_logits(
                emb,
                text.embeddings.to(self.device),
                text.name_to_class,
                len(text.vocab),
                void,
                self.backbone.logit_scale,
            )
        probs = logits.softmax(dim=-1)[:, : len(text.vocab)]  # void dropped
        if timings is not None:
            timings["score"] = time.perf_counter() - t0
        return probs.float().cpu().numpy()

    @torch.inference_mode()
    def _embed(self, feats: ImageFeatures, masks: np.ndarray, classifier: str) -> np.ndarray:
        raw = feats.raw.to(self.device)
        use_adapter = classifier == "mask-adapter" and self.adapter is not None
        projected = None
        if use_adapter and self.uses_cdt:
            projected = self.cdt_context(feats)
        elif use_adapter:
            with self._autocast():
                projected = adapter_input(self.backbone, self.adapter, raw)
        out = []
        batch = self.settings.mask_batch or self.auto_mask_batch(feats, use_adapter)
        for start in range(0, len(masks), batch):
            chunk = canvas_masks(
                masks[start : start + batch], feats.resized, feats.canvas, self.device
            )
            with self._autocast():
                if projected is not None and self.adapter is not None:
                    emb = adapter_embeddings(self.backbone, self.adapter, raw, chunk, projected)
                else:
                    emb = pooling_embeddings(self.backbone, raw, chunk)
            out.append(emb[0].float())
        self._sync()
        return torch.cat(out).cpu().numpy()

    def auto_mask_batch(self, feats: ImageFeatures, use_adapter: bool = True) -> int:
        """Masks per forward pass that fit in about 1 GiB (CPU) or a quarter of the free GPU
        memory: the adapter's widest activation is ``4 * hidden`` channels per feature pixel per
        mask, plus the mask itself on the padded canvas."""
        h, w = feats.raw.shape[-2:]
        hidden = self.adapter.mask_adapter.fuse.out_channels if self.adapter is not None else 0
        per_mask = 4 * (
            feats.canvas[0] * feats.canvas[1] + (3 * 4 * hidden if use_adapter else 0) * h * w
        )
        budget = 1 << 30
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = free // 4
        return int(max(1, min(256, budget // max(per_mask, 1))))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _result(
        self,
        proposals: Proposals,
        keep: np.ndarray,
        probs: np.ndarray,
        vocab: Vocabulary,
        file_name: str,
        timings: dict[str, float],
    ) -> SegmentationResult:
        """Label and select masks: the keep rule on all masks' probabilities (see
        :class:`PipelineSettings`), each kept mask labelled by its best class."""
        k = len(vocab)
        n = len(probs)
        best = probs.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
        best_p = probs[np.arange(n), best] if n else np.zeros(0, np.float32)
        selected = keep_near_best(probs, self.settings.keep_ratio)
        if self.settings.score_thresh > 0:
            selected &= best_p >= self.settings.score_thresh
        class_ids = best.astype(np.int64)
        names = list(vocab.names)
        if self.settings.keep_unknown:
            void_p = 1.0 - probs.sum(axis=1, dtype=np.float64)
            unknown = void_p > best_p
            if unknown.any():
                names.append(UNKNOWN_NAME)
                class_ids = np.where(unknown, k, class_ids)
            selected |= unknown
        rows = np.flatnonzero(selected)
        idx = keep[rows]
        return SegmentationResult(
            masks=proposals.masks[idx],
            class_ids=class_ids[rows],
            scores=best_p[rows].astype(np.float32),
            class_scores=probs[rows].astype(np.float32),
            class_names=names,
            synonyms=[list(c) for c in vocab.classes],
            predicted_iou=proposals.predicted_iou[idx],
            stability_score=proposals.stability_score[idx],
            point_coords=proposals.point_coords[idx],
            crop_box=proposals.crop_box[idx],
            file_name=file_name,
            timings=timings,
            original_size=proposals.original_size,
        )

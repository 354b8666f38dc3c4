"""One photo on the page: its vocabulary-free work done once, then relabelled at will.

:meth:`PhotoSession.compute` runs SAM, CLIP's dense features and the mask embeddings (the
Mask-Adapter) once. Every later change of classes, keep ratio or score threshold goes through
:meth:`samadapter.pipeline.Segmenter.classify` with those kept embeddings, the same call
``samadapter relabel`` makes with cached features: only the text side (cached per vocabulary)
and a matrix product run, then the keep rule (see docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from samadapter.errors import ConfigError, ImageError, VocabularyError
from samadapter.io.coco import to_coco
from samadapter.io.images import DEFAULT_MAX_PIXELS, check_image_shape, load_image
from samadapter.io.overlay import class_color, render_overlay
from samadapter.io.writers import FORMATS, write_all
from samadapter.modeling.mask_generator import Proposals
from samadapter.pipeline import ImageFeatures, Segmenter
from samadapter.structures import SegmentationResult
from samadapter.vocab import Vocabulary, load_builtin, parse_classes

MAX_UPLOAD_BYTES = 40 * 1024 * 1024
"""Largest upload taken (bytes); bigger files are refused with a message before decoding."""

MAX_SIDE = 1600
"""Photos are shrunk to this long side for the page (relabels redraw the overlay each time)."""

TOP_K = 5
"""Classes listed for a clicked mask."""

DOWNLOADS = ("coco.json", "semantic.png", "overlay.png", "all.zip")
"""What a photo's results can be downloaded as."""


class UploadTooLarge(ImageError):
    """An upload above :data:`MAX_UPLOAD_BYTES` (HTTP 413)."""


def _page_message(error: VocabularyError) -> str:
    """A vocabulary error reworded for the page (its messages name the CLI's flag)."""
    return str(error.message).replace("--classes: ", "classes: ", 1)


@dataclass(frozen=True)
class LabelRequest:
    """How the page wants a photo named.

    Attributes:
        vocab: the classes.
        keep_ratio: the demo's keep rule (0 keeps every mask), see
            :class:`~samadapter.pipeline.PipelineSettings`.
        score_thresh: the opt-in floor on the best class probability (0 = off).
    """

    vocab: Vocabulary
    keep_ratio: float
    score_thresh: float

    @classmethod
    def from_json(cls, data: object, defaults: Segmenter) -> LabelRequest:
        """Read the page's request (untrusted): ``{"classes": "cat,sofa|couch"}`` or
        ``{"vocab": "ade150"}``, plus optional ``keep_ratio`` and ``score_thresh``.

        Raises:
            ConfigError: a malformed request or a value out of range.
            VocabularyError: no classes, an empty or duplicate name, an unknown vocabulary.
        """
        if not isinstance(data, Mapping):
            raise ConfigError("the request must be a JSON object")
        classes, vocab_name = data.get("classes"), data.get("vocab")
        try:
            if vocab_name:
                if not isinstance(vocab_name, str):
                    raise ConfigError("'vocab' must be a vocabulary name")
                vocab = load_builtin(vocab_name)
            elif isinstance(classes, str) and classes.strip(" ,|"):
                vocab = parse_classes(classes)
            else:
                raise VocabularyError(
                    "no classes given", "type some, e.g. cat,sofa|couch, or choose a vocabulary"
                )
        except VocabularyError as e:
            raise VocabularyError(_page_message(e), e.hint) from None
        keep = _number(data, "keep_ratio", defaults.settings.keep_ratio)
        score = _number(data, "score_thresh", defaults.settings.score_thresh)
        if not 0.0 <= keep < 1.0:
            raise ConfigError(f"keep ratio must be in [0, 1), got {keep:g}", "0 keeps every mask")
        if not 0.0 <= score <= 1.0:
            raise ConfigError(f"score threshold must be in [0, 1], got {score:g}", "0 is off")
        return cls(vocab, keep, score)


def _number(data: Mapping[str, Any], key: str, default: float) -> float:
    value = data.get(key)
    if value is None or value == "":
        return float(default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key.replace('_', ' ')} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{key.replace('_', ' ')} must be a finite number")
    return number


class Labeller:
    """The loaded segmenter, plus one view of it per keep rule the page asked for.

    The views share the models and the in-memory text cache (only the settings differ), so a
    vocabulary's text is encoded once whatever rule it is used with.
    """

    def __init__(self, segmenter: Segmenter) -> None:
        self.base = segmenter
        self._views: dict[tuple[float, float], Segmenter] = {}

    def segmenter(self, keep_ratio: float, score_thresh: float) -> Segmenter:
        """The segmenter with this keep rule (built once per rule)."""
        key = (keep_ratio, score_thresh)
        if key not in self._views:
            settings = dataclasses.replace(
                self.base.settings, keep_ratio=keep_ratio, score_thresh=score_thresh
            )
            self._views[key] = dataclasses.replace(self.base, settings=settings)
        return self._views[key]


def read_upload(data: bytes, name: str, folder: Path) -> tuple[np.ndarray, list[str]]:
    """Decode an uploaded file (untrusted) as the CLI reads an image file.

    Args:
        data: the file's bytes.
        name: the name the browser gave (only shown in messages).
        folder: a private folder to stage the bytes in.

    Returns:
        ``([H, W, 3] uint8 RGB, notes)``: notes say when the photo was shrunk.

    Raises:
        ImageError: empty, too large, not an image, corrupt, or of an unusable shape.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadTooLarge(
            f"{name} is {len(data) / 2**20:.0f} MB; the page takes up to "
            f"{MAX_UPLOAD_BYTES / 2**20:.0f} MB",
            hint="downscale it, or run samadapter segment on it",
        )
    notes: list[str] = []
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".upload") as fh:
        fh.write(data)
        fh.flush()
        staged = fh.name
        try:
            image = load_image(
                staged, max_pixels=DEFAULT_MAX_PIXELS, on_warning=lambda line: notes.append(line)
            )
            check_image_shape(image, name)
        except ImageError as e:
            raise ImageError(e.message.replace(staged, name), e.hint) from None
    notes = [line.replace(staged, name) for line in notes]
    h, w = image.shape[:2]
    if max(h, w) > MAX_SIDE:
        scale = MAX_SIDE / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
        notes.append(f"{name} is {w}x{h}: shrunk to {size[0]}x{size[1]} for the page")
    return np.ascontiguousarray(image), notes


@dataclass
class PhotoSession:
    """A photo with its kept vocabulary-free work and its current naming.

    Attributes:
        name: the file name shown and used for downloads.
        image: ``[H, W, 3]`` uint8 RGB.
        proposals: SAM's masks (``[N, h, w]``, at the image's or the working resolution).
        features: CLIP's dense features of the image.
        embeddings: ``[N, C]`` mask embeddings of every proposal.
        cdt_context: MAFT+ adapters only, the image's cdt context (else ``None``).
        notes: lines for the page (the photo was shrunk...).
        result: the current naming (after :meth:`relabel`).
        request: what :attr:`result` was named with.
        overlay_jpeg: the current overlay, for the page.
        version: counts relabels (the page's image URL changes with it).
    """

    name: str
    image: np.ndarray
    proposals: Proposals
    features: ImageFeatures
    embeddings: np.ndarray
    cdt_context: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)
    result: SegmentationResult | None = None
    request: LabelRequest | None = None
    overlay_jpeg: bytes = b""
    version: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def compute(
        cls, segmenter: Segmenter, image: np.ndarray, name: str, notes: list[str] | None = None
    ) -> PhotoSession:
        """SAM's masks, CLIP's features and every mask's embedding: the work done once."""
        timings: dict[str, float] = {}
        proposals = segmenter.propose(image)
        features = segmenter.image_features(image, timings)
        embeddings = segmenter.mask_embeddings(features, proposals.masks, timings=timings)
        context = segmenter.cdt_context(features) if segmenter.uses_cdt else None
        return cls(name, image, proposals, features, embeddings, context, list(notes or []))

    def relabel(self, segmenter: Segmenter, request: LabelRequest) -> SegmentationResult:
        """Name the kept masks with ``request`` (no SAM, no CLIP image encoder) and redraw.

        Args:
            segmenter: the view of the models with the request's keep rule
                (:meth:`Labeller.segmenter`).
            request: classes and keep rule.

        Returns:
            the kept, named masks (also kept in :attr:`result`).
        """
        result = segmenter.classify(
            self.features,
            self.proposals,
            request.vocab,
            file_name=self.name,
            embeddings=self.embeddings,
            cdt_context=self.cdt_context,
        )
        overlay = render_overlay(self.image, result)
        buffer = io.BytesIO()
        Image.fromarray(overlay).save(buffer, format="JPEG", quality=90)
        self.result, self.request = result, request
        self.overlay_jpeg = buffer.getvalue()
        self.version += 1
        return result

    def _current(self) -> SegmentationResult:
        if self.result is None:
            raise ConfigError("this photo has not been named yet")
        return self.result

    def table(self) -> list[dict[str, Any]]:
        """One row per kept mask: ``index``, ``class``, ``score``, ``area`` (pixels), ``color``."""
        result = self._current()
        areas = result.areas
        labels = result.labels
        return [
            {
                "index": i,
                "class": labels[i],
                "score": round(float(result.scores[i]), 4),
                "area": int(areas[i]),
                "color": "#{:02x}{:02x}{:02x}".format(*class_color(labels[i])),
            }
            for i in range(len(result))
        ]

    def masks_at(self, x: int, y: int) -> list[dict[str, Any]]:
        """The kept masks covering image pixel ``(x, y)``, smallest first, each with its
        :data:`TOP_K` most probable classes (see :meth:`mask_info`)."""
        result = self._current()
        h, w = result.image_size
        if not (0 <= x < w and 0 <= y < h):
            return []
        hits = [i for i in range(len(result)) if result.full_crop(i, (x, y, 1, 1)).any()]
        return sorted((self.mask_info(i) for i in hits), key=lambda row: row["area"])

    def mask_info(self, index: int) -> dict[str, Any]:
        """Mask ``index``'s table row plus ``top``: its :data:`TOP_K` most probable classes
        (``[{"name", "p"}]``, probabilities as the keep rule saw them)."""
        result = self._current()
        if not 0 <= index < len(result):
            raise ConfigError(f"no mask {index}")
        row = self.table()[index]
        scores = result.class_scores[index]
        order = np.argsort(-scores, kind="stable")[:TOP_K]
        names = list(result.class_names)
        row["top"] = [{"name": names[k], "p": round(float(scores[k]), 4)} for k in order]
        return row

    def highlight_png(self, index: int) -> bytes:
        """Mask ``index`` as a translucent RGBA PNG at the image's size (drawn over the
        overlay when the mask is selected)."""
        result = self._current()
        if not 0 <= index < len(result):
            raise ConfigError(f"no mask {index}")
        return highlight_png(result.full_mask(index))

    def download(self, kind: str, folder: Path) -> tuple[bytes, str]:
        """One of :data:`DOWNLOADS`, written by the same writers as ``segment``.

        Returns:
            ``(bytes, file name)``.
        """
        result = self._current()
        stem = Path(self.name).name or "photo"
        if kind == "coco.json":
            data = json.dumps(to_coco(result, file_name=stem), indent=1).encode()
            return data, f"{stem}.json"
        if kind not in DOWNLOADS:
            raise ConfigError(f"unknown download '{kind}'", hint=f"one of {', '.join(DOWNLOADS)}")
        single = {"semantic.png": "semantic", "overlay.png": "overlay"}.get(kind)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            formats = (single,) if single else FORMATS
            paths = write_all(self.image, result, tmp, stem, overwrite=True, formats=formats)
            if single:
                return paths[single].read_bytes(), paths[single].name
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(Path(tmp).rglob("*")):
                    if path.is_file():
                        archive.write(path, path.relative_to(tmp).as_posix())
            return buffer.getvalue(), f"{stem}.zip"


def highlight_png(mask: np.ndarray) -> bytes:
    """``[H, W]`` bool as an RGBA PNG: a white veil on the mask, transparent elsewhere."""
    rgba = np.zeros((*mask.shape, 4), dtype=np.uint8)
    rgba[mask] = (255, 255, 255, 150)
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()

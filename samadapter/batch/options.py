"""How a batch writes: :class:`BatchOptions`, class-aware :class:`PostProcess`, and the output
plan checked before anything is written (:func:`check_outputs`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from samadapter.batch.inputs import InputImage
from samadapter.io.exports import EXPORT_DIRS, ExportOptions, image_export_paths
from samadapter.io.images import DEFAULT_MAX_PIXELS
from samadapter.io.layout import (
    FEATURES_DIR,
    PER_IMAGE_DIR,
    RUN_FILES,
    PlannedOutput,
    check_lock,
    check_plan,
    feature_path,
    image_output_dir,
)
from samadapter.io.writers import FORMAT_KEYS, FORMATS, output_paths
from samadapter.postprocess import merge_same_class, per_class_keep, top_k
from samadapter.structures import SegmentationResult


@dataclass
class BatchOptions:
    """How a batch writes.

    Attributes:
        out_dir: output folder.
        overwrite: redo images finished with the same settings too.
        max_size: cap on the image's long side before anything.
        max_pixels: images with more pixels are downscaled to this many, with a warning
            (:data:`~samadapter.io.images.DEFAULT_MAX_PIXELS`); ``None``: no cap.
        cache_features: also store SAM masks and CLIP features per image (for ``relabel``).
        formats: which per-image outputs to write.
        exports: annotation-tool formats (see :mod:`samadapter.io.exports`).
        export_options: how the run-level export files are written (not part of the settings
            fingerprint: changing them only rewrites those files).
        postprocess: class-aware post-processing (see :func:`postprocess_result`).
        per_mask_png: also one PNG per mask and a ``metadata.csv`` in
            ``<name>.masks/per-mask/`` (segment-anything amg.py's layout).
        reader_threads: images decoded ahead of the model.
        writer_threads: outputs written behind the model.
    """

    out_dir: Path
    overwrite: bool = False
    max_size: int | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    cache_features: bool = False
    formats: tuple[str, ...] = FORMATS
    exports: tuple[str, ...] = ("coco",)
    export_options: ExportOptions = field(default_factory=ExportOptions)
    postprocess: PostProcess = field(default_factory=lambda: PostProcess())
    per_mask_png: bool = False
    reader_threads: int = 2
    writer_threads: int = field(default_factory=lambda: min(8, max(2, (os.cpu_count() or 2) // 2)))


@dataclass(frozen=True)
class PostProcess:
    """Class-aware clean-up of each image's named masks, applied in this order.

    Attributes:
        keep_ratio: apply the demo's keep rule (:func:`~samadapter.postprocess.per_class_keep`)
            again to the named masks; ``None`` does not. The pipeline already applies it to all
            masks (``PipelineSettings.keep_ratio``, the CLI's ``--keep-ratio``).
        merge: join masks of the same class that touch or overlap into one instance.
        semantic_only: one mask per class (its union), implies ``merge``.
        top_k: keep the ``k`` best-scoring masks; ``None`` keeps all.
    """

    keep_ratio: float | None = None
    merge: bool = False
    semantic_only: bool = False
    top_k: int | None = None

    def __call__(self, result: SegmentationResult) -> SegmentationResult:
        """Apply to one result (a new result; the input is unchanged)."""
        if self.keep_ratio is not None:
            result = per_class_keep(result, self.keep_ratio)
        if self.merge or self.semantic_only:
            result = merge_same_class(result, require_contact=not self.semantic_only)
        if self.top_k is not None:
            result = top_k(result, self.top_k)
        return result


def image_outputs(options: BatchOptions, item: InputImage) -> dict[str, Path]:
    """Where ``item``'s per-image outputs go (:func:`~samadapter.io.writers.output_paths`)."""
    return output_paths(image_output_dir(options.out_dir, item.rel), item.rel.name)


def check_outputs(
    options: BatchOptions, items: Sequence[InputImage], write_features: bool | None = None
) -> set[str]:
    """Check the whole output plan of a run before anything is written.

    Args:
        options: the run's output options.
        items: its images.
        write_features: whether the run writes ``features/`` (default: ``cache_features``).

    Returns:
        the output folder's manifest entries after the run.

    Raises:
        OutputError: see :func:`~samadapter.io.layout.check_plan`; or another live run holds the
            folder (:func:`~samadapter.io.layout.check_lock`).
    """
    out = options.out_dir
    check_lock(out)  # a second run into the folder stops here, before any model loads
    features = options.cache_features if write_features is None else write_features
    top = {*RUN_FILES, PER_IMAGE_DIR}
    top.update(d for f in options.exports for d in EXPORT_DIRS.get(f, ()))
    if features:
        top.add(FEATURES_DIR)
    keys = {FORMAT_KEYS[f] for f in options.formats}
    planned: list[PlannedOutput] = []
    for item in items:
        owner = item.file_name
        planned.extend(
            PlannedOutput(path, owner, key == "masks_dir")
            for key, path in image_outputs(options, item).items()
            if key in keys
        )
        planned.extend(
            PlannedOutput(path, owner)
            for path in image_export_paths(out, item.rel, options.exports).values()
        )
        if features:
            planned.append(PlannedOutput(feature_path(out, item.rel), owner))
    return check_plan(out, top, planned)

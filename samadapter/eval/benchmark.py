"""Score SAM + Mask-Adapter (or plain mask pooling) on a labelled dataset.

For each image: masks (SAM's automatic proposals, or one mask per connected ground-truth segment),
class probabilities ``[Q, K]`` per method, a semantic map by the einsum rule (docs/architecture.md)
at the image's own resolution (pixels no mask covers stay unlabelled), and a confusion matrix
(:mod:`samadapter.eval.metrics`). Several methods on the same masks share SAM and the CLIP
features: ``mask-adapter`` and ``mask-pooling`` in one pass is the comparison the paper rests on.
Several mask sources in one pass share the image and the CLIP features too: ``sam`` and
``sam-two-pass`` give the mIoU cost of the two-pass prompt grid.

Outputs in ``OUTPUT``: the predictions store (:mod:`samadapter.eval.predictions`) and the
reports (:mod:`samadapter.eval.report`).

A rerun skips images whose prediction PNG exists (each PNG is written atomically), so an
interrupted run resumes; :func:`score_predictions` scores saved PNGs without any model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from samadapter.config import CLASSIFIERS, OUTPUT_NEUTRAL, one_of
from samadapter.data.base import Sample, SemanticDataset
from samadapter.errors import ConfigError, DatasetError
from samadapter.eval.metrics import ConfusionMatrix
from samadapter.eval.predictions import (
    TIMINGS_FILE,
    BenchmarkResult,
    RunInfo,
    _prepare_run_dir,
    _run_record,
    _timing_files,
    discover_runs,
    read_prediction,
    read_timings,
    write_prediction,
    write_timings,
)
from samadapter.eval.report import write_reports
from samadapter.structures import semantic_from_scores, upsample_nearest

if TYPE_CHECKING:
    from samadapter.pipeline import ImageFeatures, Segmenter, TextClassifier

__all__ = [
    "MASK_SOURCES",
    "ImageProgress",
    "MaskClassifier",
    "Method",
    "gt_segments",
    "oracle_classifier",
    "run_benchmark",
    "score_predictions",
    "select_indices",
]

MASK_SOURCES = ("sam", "sam-two-pass", "gt")
"""Where masks come from: SAM's automatic generator as configured, the same SAM with the two-pass
prompt grid (a sparse grid, then only the points no kept mask covers), or the ground-truth
segments. Several sources in one run share the image, the text and the CLIP features."""


MaskClassifier = Callable[[np.ndarray, Sample], np.ndarray]
"""``(masks [Q, H, W] bool, sample) -> [Q, K]`` class probabilities (or any scores)."""


@dataclass(frozen=True)
class Method:
    """One way of naming masks.

    Attributes:
        name: shown in reports and used as the predictions folder's name.
        classifier: ``mask-adapter`` / ``mask-pooling`` (the Segmenter's, sharing the CLIP features
            between methods), or a :data:`MaskClassifier`.
    """

    name: str
    classifier: str | MaskClassifier

    @classmethod
    def of(cls, spec: str | Method) -> Method:
        """A :class:`Method` from a classifier name (``mask-adapter``) or a :class:`Method`."""
        if isinstance(spec, Method):
            return spec
        one_of("classifier", spec, CLASSIFIERS)
        return cls(spec, spec)


@dataclass
class ImageProgress:
    """Reported after each image.

    Attributes:
        done: images finished so far (skipped ones included).
        total: images in the run.
        name: the image just finished.
        skipped: whether its predictions existed already.
        miou: running mIoU of each run, by key.
    """

    done: int
    total: int
    name: str
    skipped: bool
    miou: dict[str, float]


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


def select_indices(size: int, limit: int | None, seed: int = 0) -> list[int]:
    """A fixed, seeded subset of ``range(size)``, in increasing order.

    Args:
        size: dataset size.
        limit: how many (``None`` or ``>= size``: all).
        seed: the random generator's seed; equal seeds give equal subsets.

    Returns:
        sorted indices.
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    if limit is None or limit >= size:
        return list(range(size))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(size, size=limit, replace=False))


def gt_segments(label: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """One mask per ground-truth segment: each connected region of one class.

    Args:
        label: ``[H, W]`` class index or :data:`IGNORE`.
        connectivity: 4 or 8.

    Returns:
        ``(masks, classes)``: ``[Q, H, W]`` bool (disjoint; together they cover every labelled
        pixel) and ``[Q]`` int64 class of each, ordered by class then position.
    """
    h, w = label.shape
    masks: list[np.ndarray] = []
    classes: list[int] = []
    for c in np.unique(label):
        if c < 0:
            continue
        n, comp = cv2.connectedComponents((label == c).astype(np.uint8), connectivity=connectivity)
        for j in range(1, n):
            masks.append(comp == j)
            classes.append(int(c))
    if not masks:
        return np.zeros((0, h, w), dtype=bool), np.zeros(0, dtype=np.int64)
    return np.stack(masks), np.array(classes, dtype=np.int64)


def oracle_classifier(num_classes: int) -> MaskClassifier:
    """A test oracle: each mask gets its majority ground-truth class.

    With ground-truth masks it scores mIoU 100; with SAM masks, the best any classifier could do
    with those masks.

    Args:
        num_classes: ``K``.

    Returns:
        a :data:`MaskClassifier` giving ``[Q, K]`` one-hot float32 rows (a zero row for a mask that
        covers only ignore pixels).
    """

    def classify(masks: np.ndarray, sample: Sample) -> np.ndarray:
        out = np.zeros((len(masks), num_classes), dtype=np.float32)
        for q, m in enumerate(masks):
            values = sample.label[m]
            values = values[values >= 0]
            if values.size:
                out[q, np.bincount(values, minlength=num_classes).argmax()] = 1.0
        return out

    return classify


def _read_label(dataset: SemanticDataset, index: int) -> np.ndarray:
    """The ground truth alone when the dataset can read it without the image."""
    label = getattr(dataset, "label", None)
    if callable(label):
        return np.asarray(label(index))
    return dataset[index].label


def _new_result(
    dataset: SemanticDataset,
    runs: list[RunInfo],
    indices: Sequence[int],
    settings: dict[str, Any],
    output: str | os.PathLike[str],
    limit: int | None,
    seed: int,
) -> BenchmarkResult:
    """Nothing scored yet: ``runs`` over the images ``indices`` of ``dataset``."""
    names, k = dataset.names(), len(dataset.vocab)
    description = str(getattr(dataset, "description", type(dataset).__name__))
    confusion = {r.key: ConfusionMatrix(k) for r in runs}
    return BenchmarkResult(
        description,
        dataset.vocab,
        runs,
        confusion,
        [names[i] for i in indices],
        limit=limit,
        seed=seed,
        settings=settings,
        output=Path(output),
    )


def _progress(
    on_image: Callable[[ImageProgress], None] | None,
    result: BenchmarkResult,
    done: int,
    name: str,
    skipped: bool,
) -> None:
    """Report one finished image to ``on_image`` (if any), with every run's mIoU so far."""
    if on_image is not None:
        miou = {key: m.miou for key, m in result.metrics().items()}
        on_image(ImageProgress(done, len(result.names), name, skipped, miou))


def _score_saved(
    result: BenchmarkResult, name: str, gt: np.ndarray, runs: Sequence[RunInfo]
) -> None:
    """Score the saved prediction of image ``name`` of each of ``runs``."""
    for run in runs:
        path = run.directory / f"{name}.png"
        _score(result.confusion[run.key], read_prediction(path, len(result.vocab)), gt, path)


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------


def _segmenter_settings(segmenter: Segmenter, masks: str) -> dict[str, Any]:
    """The Segmenter's settings that change predictions, and its models (``Segmenter.info``)."""
    load = getattr(segmenter.proposer, "load", None)
    if masks == "sam" and callable(load):
        load()  # a lazily loaded SAM: its file and checksum join ``info`` now
    out: dict[str, Any] = {
        "clip_size": segmenter.settings.clip_size,
        "clip_resize": "long-side",
        "min_area": segmenter.settings.min_area,
    }
    info = getattr(segmenter, "info", None) or {}
    models = {
        key: info[key]
        for key in ("sam", "adapter", "clip")
        if key in info and (key != "sam" or masks == "sam")
    }
    if models:
        out["models"] = models
    if masks == "sam" and segmenter.proposer is not None:
        amg = asdict(segmenter.proposer.settings).items()
        out["sam"] = {k: v for k, v in amg if k not in OUTPUT_NEUTRAL}
    return out


def _source_segmenter(segmenter: Segmenter | None, source: str) -> Segmenter | None:
    """The segmenter that makes ``source``'s masks: for ``sam-two-pass``, a copy of
    ``segmenter`` whose SAM (the same modules and compiled decoder settings) prompts in two
    passes; else ``segmenter`` itself.

    Raises:
        ConfigError: ``sam-two-pass`` with a proposer that has no two-pass grid (SAM 2, crops).
    """
    if source != "sam-two-pass" or segmenter is None or segmenter.proposer is None:
        return segmenter
    from samadapter.modeling.proposer import SamProposer

    load = getattr(segmenter.proposer, "load", None)
    base = load() if callable(load) else segmenter.proposer
    if not isinstance(base, SamProposer) or not base.uses_own_generator:
        raise ConfigError(
            "--masks sam-two-pass needs SAM (vit_b/l/h) with samadapter's mask generator",
            hint="SAM 2 and --crop-n-layers above 0 have no two-pass grid; use --masks sam",
        )
    options = replace(base.options, two_pass=True)
    two_pass = SamProposer(base.sam, base.settings, options, encoder=base.encoder)
    return replace(segmenter, proposer=two_pass)


def _propose(segmenter: Segmenter, image: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    if segmenter.proposer is None:
        raise ConfigError("--masks sam needs a Segmenter with SAM (its proposer is None)")
    proposals = segmenter.propose(image)
    masks = proposals.masks
    if tuple(masks.shape[1:]) != proposals.image_size:  # scored at the label's resolution
        size = proposals.image_size
        full = np.zeros((len(masks), *size), dtype=bool)
        for i, mask in enumerate(masks):
            full[i] = upsample_nearest(mask, size)
        masks = full
    return masks, dict(proposals.timings)


def run_benchmark(
    dataset: SemanticDataset,
    output: str | os.PathLike[str],
    *,
    segmenter: Segmenter | None = None,
    methods: Sequence[str | Method] = ("mask-adapter",),
    masks: str | Sequence[str] = "sam",
    limit: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    settings: Mapping[str, Any] | None = None,
    on_image: Callable[[ImageProgress], None] | None = None,
    report: bool = True,
) -> BenchmarkResult:
    """Predict and score every image (or a seeded subset), resuming from saved predictions.

    Args:
        dataset: the images with ground truth; its vocabulary names the classes.
        output: the output folder (predictions, ``timings.csv`` and, with ``report``, the reports).
        segmenter: SAM + CLIP (+ adapter); needed for ``masks="sam"`` and for the
            ``mask-adapter`` / ``mask-pooling`` methods.
        methods: classifier names or :class:`Method`\\ s, all run on the same masks; names must
            be unique.
        masks: ``sam`` (automatic proposals), ``sam-two-pass`` (the same SAM prompted in two
            passes) or ``gt`` (one mask per ground-truth segment: pure classification), or a
            list of them: each source's masks are named by every method, on the same images,
            text and CLIP features (e.g. ``["sam", "sam-two-pass"]``: the mIoU cost of the
            two-pass grid). Timings of the second and later sources are prefixed with the
            source (``sam-two-pass:sam_decoder``).
        limit: score a seeded subset of this many images (:func:`select_indices`).
        seed: the subset's seed.
        overwrite: recompute predictions that exist (else they are read and the image skipped).
        settings: extra facts recorded in ``run.json`` and the reports, e.g. the model names; a
            resumed run must have the same.
        on_image: called after each image.
        report: write ``metrics.json``, ``per_class.csv``, ``report.md`` and the chart.

    Returns:
        the confusion matrices and timings.

    Raises:
        ConfigError: bad methods / masks, or a missing segmenter.
        OutputError: the output folder holds predictions made with other settings.
        DatasetError, ImageError: unreadable data (the run stops; what was saved is kept).
    """
    sources = [masks] if isinstance(masks, str) else list(masks)
    for source in sources:
        one_of("mask source", source, MASK_SOURCES)
    if not sources or len(set(sources)) != len(sources):
        raise ConfigError(f"mask sources must be given once each, got {sources}")
    uses_sam = any(source != "gt" for source in sources)
    meths = [Method.of(m) for m in methods]
    if not meths:
        raise ConfigError("run_benchmark needs at least one method")
    if len({m.name for m in meths}) != len(meths):
        raise ConfigError(f"method names must be unique, got {[m.name for m in meths]}")
    uses_segmenter = any(isinstance(m.classifier, str) for m in meths)
    if (uses_segmenter or uses_sam) and segmenter is None:
        raise ConfigError(
            "this benchmark needs a Segmenter", hint="pass segmenter=load_segmenter(...)"
        )
    if (
        segmenter is not None
        and any(m.classifier == "mask-adapter" for m in meths)
        and segmenter.adapter is None
    ):
        raise ConfigError(
            "the mask-adapter classifier needs adapter weights",
            hint="load the Segmenter with an adapter, or use mask-pooling",
        )
    out = Path(output)
    vocab = dataset.vocab
    names = dataset.names()
    indices = select_indices(len(dataset), limit, seed)
    record_settings: dict[str, Any] = dict(settings or {})
    makers = {source: _source_segmenter(segmenter, source) for source in sources}
    if segmenter is not None and (uses_segmenter or uses_sam):
        record_settings["pipeline"] = _segmenter_settings(segmenter, "sam" if uses_sam else "gt")
    runs = [
        RunInfo(f"{source}/{m.name}", m.name, source, out / "predictions" / source / m.name)
        for source in sources
        for m in meths
    ]
    for run in runs:
        _prepare_run_dir(
            run.directory, _run_record(run.method, run.masks, vocab, record_settings), overwrite
        )
    result = _new_result(dataset, runs, indices, record_settings, out, limit, seed)
    timing_rows = read_timings(out / TIMINGS_FILE)
    try:
        for done, index in enumerate(indices, start=1):
            name = names[index]
            shared: dict[str, Any] = {}  # the image, its text and CLIP features, per image
            row: dict[str, float] = {}
            any_todo = False
            for n_source, source in enumerate(sources):
                src_runs = [run for run in runs if run.masks == source]
                paths = [run.directory / f"{name}.png" for run in src_runs]
                todo = [overwrite or not p.exists() for p in paths]
                if any(todo):
                    t = _predict_image(
                        dataset,
                        index,
                        makers[source],
                        meths,
                        src_runs,
                        paths,
                        todo,
                        source,
                        result,
                        shared,
                    )
                    prefix = f"{source}:" if n_source else ""
                    row.update({prefix + key: value for key, value in t.items()})
                    any_todo = True
                else:
                    _score_saved(result, name, _read_label(dataset, index), src_runs)
            if any_todo:
                timing_rows[name] = row
                result.computed += 1
            else:
                result.skipped += 1
            _progress(on_image, result, done, name, not any_todo)
    finally:
        if result.computed:
            write_timings(out / TIMINGS_FILE, timing_rows)
    result.timings = {n: timing_rows[n] for n in result.names if n in timing_rows}
    if report:
        write_reports(result, out)
    return result


def _score(cm: ConfusionMatrix, pred: np.ndarray, gt: np.ndarray, path: Path) -> None:
    if pred.shape != gt.shape:
        raise DatasetError(
            f"prediction {path} is {pred.shape[1]}x{pred.shape[0]}, its ground "
            f"truth {gt.shape[1]}x{gt.shape[0]}",
            hint="predictions must be at the image's original resolution",
        )
    cm.update(pred, gt)


def _predict_image(
    dataset: SemanticDataset,
    index: int,
    segmenter: Segmenter | None,
    methods: Sequence[Method],
    runs: Sequence[RunInfo],
    paths: Sequence[Path],
    todo: Sequence[bool],
    masks: str,
    result: BenchmarkResult,
    shared: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Predict, save and score one image for the methods in ``todo``; returns its timings.

    ``shared`` keeps the image, the text classifier and the CLIP features for the image's next
    mask source (each is timed where it is computed).
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    shared = {} if shared is None else shared
    k = len(result.vocab)
    t0 = time.perf_counter()
    if "sample" not in shared:
        shared["sample"] = dataset[index]
    sample = shared["sample"]
    timings["read"] = time.perf_counter() - t0
    if masks != "gt":
        assert segmenter is not None
        mask_stack, sam_times = _propose(segmenter, sample.image)
        timings.update(sam_times)
    else:
        t0 = time.perf_counter()
        mask_stack, _ = gt_segments(sample.label)
        timings["gt_masks"] = time.perf_counter() - t0
    min_area = max(1, segmenter.settings.min_area) if segmenter is not None else 1
    mask_stack = mask_stack[mask_stack.sum(axis=(1, 2)) >= min_area]
    text: TextClassifier | None = None
    feats: ImageFeatures | None = None
    needs_clip = any(
        isinstance(m.classifier, str) and do for m, do in zip(methods, todo, strict=True)
    )
    if needs_clip and segmenter is not None:
        t0 = time.perf_counter()
        text = segmenter.text_classifier(result.vocab)
        timings["text"] = time.perf_counter() - t0
        if len(mask_stack) and "feats" not in shared:
            shared["feats"] = segmenter.image_features(sample.image, timings)
        feats = shared.get("feats")
    computed = [m for m, do in zip(methods, todo, strict=True) if do]
    for m, run, path, do in zip(methods, runs, paths, todo, strict=True):
        if not do:
            t0 = time.perf_counter()
            pred = read_prediction(path, k)
            timings["read"] += time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            probs = _probabilities(m, mask_stack, sample, segmenter, feats, text, k)
            dt = time.perf_counter() - t0
            timings["classify"] = timings.get("classify", 0.0) + dt
            if len(computed) > 1:
                timings[f"classify:{m.name}"] = dt
            t0 = time.perf_counter()
            pred = semantic_from_scores(probs, mask_stack)
            timings["semantic"] = timings.get("semantic", 0.0) + time.perf_counter() - t0
            t0 = time.perf_counter()
            write_prediction(path, pred)
            timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t0
        t0 = time.perf_counter()
        _score(result.confusion[run.key], pred, sample.label, path)
        timings["score"] = timings.get("score", 0.0) + time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    return timings


def _probabilities(
    method: Method,
    masks: np.ndarray,
    sample: Sample,
    segmenter: Segmenter | None,
    feats: ImageFeatures | None,
    text: TextClassifier | None,
    k: int,
) -> np.ndarray:
    """``[Q, K]`` scores of ``masks`` by ``method``."""
    if len(masks) == 0:
        return np.zeros((0, k), dtype=np.float32)
    if isinstance(method.classifier, str):
        assert segmenter is not None and feats is not None and text is not None
        probs = segmenter.class_probabilities(feats, masks, text, classifier=method.classifier)
    else:
        probs = np.asarray(method.classifier(masks, sample), dtype=np.float32)
    if probs.shape != (len(masks), k):
        raise ConfigError(
            f"classifier '{method.name}' returned shape {probs.shape} for "
            f"{len(masks)} masks and {k} classes",
            hint="expected [Q, K]",
        )
    return probs


def score_predictions(
    dataset: SemanticDataset,
    predictions: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    limit: int | None = None,
    seed: int = 0,
    on_image: Callable[[ImageProgress], None] | None = None,
    report: bool = True,
) -> BenchmarkResult:
    """Score saved prediction PNGs against the ground truth, without any model.

    Args:
        dataset: the images' ground truth (images are not read).
        predictions: a predictions folder (see :func:`discover_runs`).
        output: where the reports go.
        limit: score the same seeded subset as a run made with this ``--limit`` / ``seed``.
        seed: the subset's seed.
        on_image: called after each image.
        report: write the reports into ``output``.

    Returns:
        the confusion matrices (timings of the run that made them, when ``timings.csv`` is found
        next to the predictions).

    Raises:
        DatasetError: missing predictions (the message counts them and names one), predictions
            made with another vocabulary, or unreadable files.
    """
    found = discover_runs(predictions)
    vocab = dataset.vocab
    k = len(vocab)
    names = dataset.names()
    indices = select_indices(len(dataset), limit, seed)
    for run, record in found:
        if record and (
            record.get("num_classes") != k or record.get("vocab_fingerprint") != vocab.fingerprint()
        ):
            raise DatasetError(
                f"{run.directory} holds predictions for another vocabulary "
                f"({record.get('num_classes')} classes, "
                f"{record.get('vocabulary') or 'a custom list'}); the dataset has "
                f"{k} ({vocab.name or 'a custom list'})",
                hint="score them against the dataset they were made for",
            )
        missing = [names[i] for i in indices if not (run.directory / f"{names[i]}.png").exists()]
        if missing:
            raise DatasetError(
                f"{len(missing)} of {len(indices)} images have no prediction in "
                f"{run.directory}, e.g. {missing[0]}.png",
                hint="finish the run first, or pass the --limit and --seed it was made with",
            )
    runs = [r for r, _ in found]
    settings = next((dict(rec.get("settings", {})) for _, rec in found if rec), {})
    result = _new_result(dataset, runs, indices, settings, output, limit, seed)
    for done, index in enumerate(indices, start=1):
        _score_saved(result, names[index], _read_label(dataset, index), result.runs)
        result.skipped += 1
        _progress(on_image, result, done, names[index], True)
    timings: dict[str, dict[str, float]] = {}
    for candidate in _timing_files(runs):
        timings = read_timings(candidate)
        if timings:
            break
    result.timings = {n: timings[n] for n in result.names if n in timings}
    if report:
        write_reports(result, Path(output))
    return result

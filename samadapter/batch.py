"""Batch runs over many images: input collection, resume, error isolation, run records.

:class:`BatchRunner` feeds images through a :class:`~samadapter.pipeline.Segmenter` once the
models are loaded, with image decoding and output writing in small thread pools so the models do
not wait for the disk. Each finished image's COCO JSON carries the run's settings fingerprint: a
rerun skips images finished with the same settings and redoes the others. After the run it writes
``run.json`` (versions, models and checksums, vocabulary, settings, per-image timings and
counts), ``failures.json`` and one merged COCO file ``annotations.json``.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from samadapter import __version__
from samadapter.errors import ImageError, OutputError, SamAdapterError
from samadapter.io.atomic import write_json_atomic
from samadapter.io.exports import write_image_exports, write_run_exports
from samadapter.io.feature_store import load_features, load_proposals, save_features
from samadapter.io.images import IMAGE_SUFFIXES, load_image
from samadapter.io.mask_inputs import read_mask_input
from samadapter.io.writers import FORMATS, output_paths, write_all
from samadapter.modeling.proposer import Proposals
from samadapter.pipeline import ImageFeatures, Segmenter
from samadapter.postprocess import merge_same_class, per_class_keep, top_k
from samadapter.structures import UNKNOWN_NAME, SegmentationResult
from samadapter.vocab import Vocabulary

RUN_FILE = "run.json"
FAILURES_FILE = "failures.json"
MERGED_FILE = "annotations.json"
FEATURES_DIR = "features"
_GLOB_CHARS = set("*?[")
# Settings that change speed or memory but not a single output byte.
_NOT_FINGERPRINTED = {"device", "mask_batch", "points_per_batch"}


@dataclass(frozen=True)
class InputImage:
    """One image of a batch.

    Attributes:
        path: the file.
        root: the folder its relative name is taken from (the folder or glob root given).
        rel: output path relative to ``--output``, without suffix (mirrors the input tree).
    """

    path: Path
    root: Path
    rel: PurePosixPath

    @property
    def file_name(self) -> str:
        """The image's path relative to its input root (COCO ``file_name``)."""
        return self.path.relative_to(self.root).as_posix()


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def collect_inputs(inputs: Sequence[str | os.PathLike[str]], recursive: bool = False
                   ) -> list[InputImage]:
    """Expand files, folders and glob patterns into the batch's images.

    Files keep their name; images in a folder (all levels with ``recursive``) or matched by a
    glob keep their path relative to the folder / the pattern's fixed prefix, so outputs mirror
    the input tree. Two inputs that would write the same outputs get ``_2``, ``_3`` appended.

    Raises:
        ImageError: a path that does not exist, or a folder / pattern with no images.
    """
    found: list[tuple[Path, Path]] = []
    for given in inputs:
        text = os.fspath(given)
        path = Path(text)
        if any(c in text for c in _GLOB_CHARS) and not path.exists():
            fixed = Path(*path.parts[: _first_glob_part(path)]) if path.parts else Path()
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            images = [m for m in matches if _is_image(m)]
            if not images:
                raise ImageError(f"no images match {text}",
                                 hint=f"expected files ending in {', '.join(IMAGE_SUFFIXES)}")
            found.extend((m, fixed) for m in images)
        elif path.is_dir():
            walker = path.rglob("*") if recursive else path.iterdir()
            images = sorted(p for p in walker if _is_image(p))
            if not images:
                more = "" if recursive else "; add --recursive to look in sub-folders"
                raise ImageError(f"no images in folder {path}",
                                 hint=f"expected files ending in {', '.join(IMAGE_SUFFIXES)}"
                                      f"{more}")
            found.extend((p, path) for p in images)
        elif path.exists():
            found.append((path, path.parent))
        else:
            raise ImageError(f"image not found: {path}", hint="check the path")
    seen: Counter[str] = Counter()
    out: list[InputImage] = []
    for path, root in found:
        rel = PurePosixPath(path.relative_to(root).with_suffix("").as_posix())
        seen[str(rel)] += 1
        if seen[str(rel)] > 1:
            rel = rel.with_name(f"{rel.name}_{seen[str(rel)]}")
        out.append(InputImage(path, root, rel))
    return out


def _first_glob_part(path: Path) -> int:
    for i, part in enumerate(path.parts):
        if any(c in part for c in _GLOB_CHARS):
            return i
    return len(path.parts)


def settings_fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of everything that decides an image's outputs.

    Args:
        settings: models (names, weight checksums), vocabulary, thresholds, formats. Keys in
            ``_NOT_FINGERPRINTED`` (device, batch sizes) are ignored at any depth.
    """
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in sorted(value.items()) if k not in _NOT_FINGERPRINTED}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    blob = json.dumps(clean(settings), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def fingerprint_of(coco: Any) -> str | None:
    """The settings fingerprint recorded in a per-image COCO dict, or ``None``."""
    try:
        return str(coco["info"]["samadapter_fingerprint"])
    except (KeyError, TypeError):
        return None


@dataclass
class ImageRecord:
    """What happened to one image."""

    file: str
    output: str
    status: str  # done | skipped | failed
    masks: int = 0
    classes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class BatchSummary:
    """Counts of a batch run and where its records are."""

    records: list[ImageRecord]
    out_dir: Path
    interrupted: bool = False

    def count(self, status: str) -> int:
        """Number of images with this status."""
        return sum(r.status == status for r in self.records)

    @property
    def ok(self) -> bool:
        """Every image done or skipped."""
        return not self.interrupted and self.count("failed") == 0


@dataclass
class BatchOptions:
    """How a batch writes.

    Attributes:
        out_dir: output folder.
        overwrite: redo images finished with the same settings too.
        max_size: cap on the image's long side before anything.
        cache_features: also store SAM masks and CLIP features per image (for ``relabel``).
        formats: which per-image outputs to write.
        exports: annotation-tool formats (see :mod:`samadapter.io.exports`).
        postprocess: class-aware post-processing (see :func:`postprocess_result`).
        reader_threads: images decoded ahead of the model.
        writer_threads: outputs written behind the model.
    """

    out_dir: Path
    overwrite: bool = False
    max_size: int | None = None
    cache_features: bool = False
    formats: tuple[str, ...] = FORMATS
    exports: tuple[str, ...] = ("coco",)
    postprocess: PostProcess = field(default_factory=lambda: PostProcess())
    reader_threads: int = 2
    writer_threads: int = field(default_factory=lambda: min(8, max(2, (os.cpu_count() or 2) // 2)))


Stage = Callable[[str], None]


@dataclass(frozen=True)
class PostProcess:
    """Class-aware clean-up of each image's named masks, applied in this order.

    Attributes:
        keep_ratio: per class, keep masks scoring above this share of the class's best
            (DESIGN.md §1.6: the official demo uses 0.8); ``None`` keeps all.
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


class BatchRunner:
    """Runs a loaded :class:`Segmenter` over many images.

    Args:
        segmenter: models and settings.
        vocab: the classes.
        options: output options.
        run_settings: what the run depends on beyond the segmenter's ``info`` (the model flags
            given, so ``relabel`` can load the same models); stored in ``run.json``.
        settings: the fingerprinted settings; default: the segmenter's ``info``, the vocabulary,
            the formats and ``max_size``.
    """

    def __init__(self, segmenter: Segmenter, vocab: Vocabulary, options: BatchOptions,
                 run_settings: dict[str, Any] | None = None,
                 settings: dict[str, Any] | None = None) -> None:
        self.segmenter = segmenter
        self.vocab = vocab
        self.options = options
        self.run_settings = dict(run_settings or {})
        self.settings = settings or {"models": segmenter.info, "vocabulary": vocab.to_dict(),
                                     "formats": list(options.formats),
                                     "exports": list(options.exports),
                                     "postprocess": asdict(options.postprocess),
                                     "max_size": options.max_size}
        self.fingerprint = settings_fingerprint(self.settings)
        self._to_cache: dict[InputImage, tuple[ImageFeatures, Proposals, np.ndarray]] = {}

    # -- planning -----------------------------------------------------------------------------

    def plan(self, items: Sequence[InputImage]
             ) -> tuple[list[InputImage], dict[InputImage, ImageRecord]]:
        """Split into images to do and the records of those finished with this run's settings
        (each finished image's JSON is read once, here); with ``overwrite`` nothing is skipped."""
        if self.options.overwrite:
            return list(items), {}
        todo: list[InputImage] = []
        skipped: dict[InputImage, ImageRecord] = {}
        for item in items:
            coco = _read_json(output_paths(self.options.out_dir / item.rel.parent,
                                           item.rel.name)["coco"])
            if fingerprint_of(coco) == self.fingerprint:
                skipped[item] = _skipped_record(item, coco)
            else:
                todo.append(item)
        return todo, skipped

    # -- running ------------------------------------------------------------------------------

    def run(self, items: Sequence[InputImage], on_stage: Stage | None = None,
            on_image: Callable[[ImageRecord, SegmentationResult | None], None] | None = None
            ) -> BatchSummary:
        """Process every image that is not finished; then write the run's records.

        Args:
            items: the images (from :func:`collect_inputs`).
            on_stage: called with a short stage description ("SAM a.jpg", ...).
            on_image: called once per image (done, skipped or failed) with its record and
                result (``None`` unless done); a done image is reported as soon as its outputs
                are written, from the writer thread (calls are serialised by a lock).

        Returns:
            the summary; ``interrupted`` is set when Ctrl-C stopped the run (outputs written so
            far are complete; the next run continues).
        """
        stage = on_stage or (lambda _: None)
        if on_image is not None:
            on_image = _serialised(on_image)
        todo, skipped = self.plan(items)
        records: dict[InputImage, ImageRecord] = dict(skipped)
        for record in skipped.values():
            if on_image:
                on_image(record, None)
        interrupted = False
        readers = ThreadPoolExecutor(max(1, self.options.reader_threads), "samadapter-read")
        writers = ThreadPoolExecutor(max(1, self.options.writer_threads), "samadapter-write")
        pending: deque[tuple[InputImage, ImageRecord, SegmentationResult, Future[Any]]] = deque()
        try:
            reads = self._prefetch(readers, todo)
            for item, future in reads:
                record = ImageRecord(item.file_name, str(item.rel), "done")
                records[item] = record
                try:
                    stage(f"reading {item.file_name}")
                    t0 = time.perf_counter()
                    image = future.result()
                    record.seconds["read"] = time.perf_counter() - t0
                    result = self._process(item, image, stage)
                    record.seconds.update(result.timings)
                    stage(f"writing {item.file_name}")
                    entry = (item, record, result,
                             writers.submit(self._write, item, image, result, record))
                    pending.append(entry)
                    # Reported the moment its write completes, not when the queue drains.
                    entry[3].add_done_callback(
                        lambda _, e=entry: self._finish_write(e, on_image))  # type: ignore[misc]
                except SamAdapterError as e:
                    self._fail(record, e, on_image)
                    continue
                while len(pending) > 2 * max(1, self.options.writer_threads):
                    _wait_write(pending.popleft())
        except KeyboardInterrupt:
            interrupted = True
        finally:
            readers.shutdown(wait=True, cancel_futures=True)
            while pending:  # writes in flight are atomic; let them land
                _wait_write(pending.popleft())
            writers.shutdown(wait=True)  # also waits for the writes' report callbacks
        ordered = [records[i] for i in items if i in records]
        summary = BatchSummary(ordered, self.options.out_dir, interrupted)
        self.write_records(items, summary)
        return summary

    def _prefetch(self, pool: ThreadPoolExecutor, todo: Sequence[InputImage]
                  ) -> Iterable[tuple[InputImage, Future[np.ndarray]]]:
        ahead: deque[tuple[InputImage, Future[np.ndarray]]] = deque()
        items = iter(todo)
        depth = max(1, self.options.reader_threads)
        for item in items:
            ahead.append((item, pool.submit(load_image, item.path, self.options.max_size)))
            if len(ahead) > depth:
                yield ahead.popleft()
        while ahead:
            yield ahead.popleft()

    def _process(self, item: InputImage, image: np.ndarray, stage: Stage) -> SegmentationResult:
        seg = self.segmenter
        stage(f"SAM {item.file_name}")
        proposals = seg.propose(image)
        stage(f"CLIP {item.file_name}")
        timings: dict[str, float] = {}
        features = seg.image_features(image, timings)
        stage(f"naming {len(proposals)} masks in {item.file_name}")
        embeddings = None
        if self.options.cache_features:  # every proposal's embedding, for relabel
            embeddings = seg.mask_embeddings(features, proposals.masks, timings=timings)
        result = seg.classify(features, proposals, self.vocab, file_name=item.file_name,
                              embeddings=embeddings)
        result.timings.update(timings)
        result = self._postprocess(result)
        if embeddings is not None:  # written by a writer thread, beside the outputs
            self._to_cache[item] = (features, proposals, embeddings)
        return result

    def _postprocess(self, result: SegmentationResult) -> SegmentationResult:
        t0 = time.perf_counter()
        timings = result.timings
        result = self.options.postprocess(result)
        result.timings = {**timings, "postprocess": time.perf_counter() - t0}
        return result

    def feature_path(self, item: InputImage) -> Path:
        """Where ``--cache-features`` stores ``item``'s masks and features."""
        return self.options.out_dir / FEATURES_DIR / f"{item.rel}.npz"

    def _write(self, item: InputImage, image: np.ndarray, result: SegmentationResult,
               record: ImageRecord) -> None:
        cached = self._to_cache.pop(item, None)
        if cached is not None:
            t0 = time.perf_counter()
            features, proposals, embeddings = cached
            save_features(self.feature_path(item), features, proposals,
                          {"file": item.file_name, "fingerprint": self.fingerprint},
                          embeddings={self.segmenter.settings.classifier: embeddings})
            record.seconds["cache_write"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_image_exports(result, self.options.out_dir, item.rel, self.options.exports,
                            item.file_name)
        write_all(image, result, self.options.out_dir / item.rel.parent, item.rel.name,
                  overwrite=True, formats=self.options.formats, file_name=item.file_name,
                  info={"samadapter_fingerprint": self.fingerprint})
        record.seconds["write"] = time.perf_counter() - t0

    def _finish_write(self, entry: tuple[InputImage, ImageRecord, SegmentationResult, Future[Any]],
                      on_image: Callable[[ImageRecord, SegmentationResult | None], None] | None
                      ) -> None:
        _, record, result, future = entry
        error = future.exception()
        if isinstance(error, SamAdapterError):
            self._fail(record, error, on_image)
            return
        if error is not None:
            return  # not ours to report: _wait_write raises it in the batch's thread
        record.masks = len(result)
        record.classes = dict(Counter(result.labels))
        if on_image:
            on_image(record, result)

    @staticmethod
    def _fail(record: ImageRecord, error: SamAdapterError,
              on_image: Callable[[ImageRecord, SegmentationResult | None], None] | None) -> None:
        record.status = "failed"
        record.error = str(error)
        if on_image:
            on_image(record, None)

    # -- records ------------------------------------------------------------------------------

    def write_records(self, items: Sequence[InputImage], summary: BatchSummary) -> None:
        """Write ``run.json``, ``failures.json`` and the merged ``annotations.json``."""
        out = self.options.out_dir
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / RUN_FILE, {
            "samadapter_version": __version__,
            "fingerprint": self.fingerprint,
            "settings": self.settings,
            "run": self.run_settings,
            "cache_features": self.options.cache_features,
            "interrupted": summary.interrupted,
            "counts": {s: summary.count(s) for s in ("done", "skipped", "failed")},
            "inputs": [{"path": str(i.path.resolve()), "root": str(i.root.resolve()),
                        "rel": str(i.rel)} for i in items],
            "images": [r.__dict__ for r in summary.records],
        })
        write_json_atomic(out / FAILURES_FILE,
                          [{"file": r.file, "error": r.error} for r in summary.records
                           if r.status == "failed"])
        if "coco" in self.options.formats:
            merge_coco(out, items, out / MERGED_FILE)
        names = list(self.vocab.names)
        if self.segmenter.settings.keep_unknown:
            names.append(UNKNOWN_NAME)
        write_run_exports(out, [i.rel for i in items], self.options.exports, names)


def _serialised(on_image: Callable[[ImageRecord, SegmentationResult | None], None]
                ) -> Callable[[ImageRecord, SegmentationResult | None], None]:
    """``on_image`` behind a lock: writer threads and the batch's thread report images."""
    lock = threading.Lock()

    def report(record: ImageRecord, result: SegmentationResult | None) -> None:
        with lock:
            on_image(record, result)

    return report


def _wait_write(entry: tuple[InputImage, ImageRecord, SegmentationResult, Future[Any]]) -> None:
    """Wait for one image's write; its own failures were reported by its callback."""
    with contextlib.suppress(SamAdapterError):
        entry[3].result()


def _skipped_record(item: InputImage, coco: dict[str, Any]) -> ImageRecord:
    """The record of an image finished earlier, counted from its COCO JSON."""
    names = {c["id"]: c["name"] for c in coco.get("categories", [])}
    annotations = coco.get("annotations", [])
    return ImageRecord(item.file_name, str(item.rel), "skipped", masks=len(annotations),
                       classes=dict(Counter(names.get(a["category_id"], "?")
                                            for a in annotations)))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def merge_coco(out_dir: Path, items: Sequence[InputImage], target: Path) -> dict[str, Any]:
    """One COCO file for the whole run from the per-image JSONs that exist.

    Image ids are ``1..N`` in input order (images without outputs are left out), ``file_name``
    is each image's path relative to its input root, annotation ids run over the whole file and
    category ids are the vocabulary's (``1..K``, ``unknown`` = K+1), the same in every image.

    Returns:
        the merged dict (also written atomically to ``target``).
    """
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    categories: dict[int, dict[str, Any]] = {}
    info: dict[str, Any] = {}
    for item in items:
        data = _read_json(output_paths(out_dir / item.rel.parent, item.rel.name)["coco"])
        if not data or not data.get("images"):
            continue
        image_id = len(images) + 1
        images.append({**data["images"][0], "id": image_id, "file_name": item.file_name})
        for cat in data.get("categories", []):
            categories.setdefault(int(cat["id"]), cat)
        for ann in data.get("annotations", []):
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": image_id})
        info = info or dict(data.get("info", {}))
    merged = {"info": info, "licenses": [], "images": images,
              "categories": [categories[k] for k in sorted(categories)],
              "annotations": annotations}
    write_json_atomic(target, merged)
    return merged


class RelabelRunner(BatchRunner):
    """Re-classifies a finished run's cached masks and features with another vocabulary.

    Neither SAM nor the CLIP image encoder runs: each image's masks, dense features and mask
    embeddings come from ``OUTPUT/features`` (written by ``segment --cache-features``), so with
    the same classifier only the text encoder and a matrix product run (the adapter too when the
    classifier changed); the original image is read only to draw the overlay. The new outputs
    carry the fingerprint a fresh ``segment`` with the new vocabulary would have, so such a
    ``segment`` run would skip them.
    """

    def _process(self, item: InputImage, image: np.ndarray, stage: Stage) -> SegmentationResult:
        stage(f"naming {item.file_name}")
        t0 = time.perf_counter()
        path = self.feature_path(item)
        proposals, embeddings = load_proposals(path)
        if proposals is None:
            raise OutputError(f"cached features of {item.file_name} hold no masks",
                              hint="run segment --cache-features again")
        if proposals.masks.shape[1:] != image.shape[:2]:
            raise ImageError(f"{item.path} is {image.shape[1]}x{image.shape[0]} now but was "
                             f"{proposals.masks.shape[2]}x{proposals.masks.shape[1]} when "
                             "cached", hint="run segment --cache-features again")
        cached = embeddings.get(self.segmenter.settings.classifier)
        # With cached embeddings only the text side runs; else the adapter needs the features.
        source = image if cached is not None else load_features(path, self.segmenter.device)[0]
        seconds = time.perf_counter() - t0
        result = self.segmenter.classify(source, proposals, self.vocab,
                                         file_name=item.file_name, embeddings=cached)
        result.timings["cache_read"] = seconds
        return self._postprocess(result)


class ClassifyRunner(BatchRunner):
    """Names masks the user brings (COCO JSON, mask PNG folders, label PNGs) instead of SAM's.

    Args:
        segmenter: CLIP + adapter (no proposer needed).
        vocab: the classes.
        options: output options.
        masks: one mask source for a single image, or, for several images, a folder holding per
            image ``<rel>.json``, ``<rel>.png`` or a folder ``<rel>/`` of mask PNGs, or one COCO
            JSON whose images are matched by ``file_name``.
        on_warning: called with one line per mask left out (wrong size, empty, unreadable).
        **kwargs: passed to :class:`BatchRunner`.
    """

    def __init__(self, segmenter: Segmenter, vocab: Vocabulary, options: BatchOptions,
                 masks: Path, single: bool, on_warning: Callable[[str], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(segmenter, vocab, options, **kwargs)
        self.masks = Path(masks)
        self.single = single
        self.on_warning = on_warning or (lambda _: None)
        self.settings["masks"] = str(self.masks.resolve())
        self.fingerprint = settings_fingerprint(self.settings)

    def mask_source(self, item: InputImage) -> Path:
        """Where ``item``'s masks are read from.

        Raises:
            ImageError: none of the candidate files exists.
        """
        if self.single or self.masks.is_file():
            return self.masks
        for candidate in (self.masks / f"{item.rel}.json", self.masks / f"{item.rel}.png",
                          self.masks / str(item.rel)):
            if candidate.exists():
                return candidate
        raise ImageError(f"no masks for {item.file_name} in {self.masks}",
                         hint=f"expected {item.rel}.json, {item.rel}.png or a folder {item.rel}/")

    def _process(self, item: InputImage, image: np.ndarray, stage: Stage) -> SegmentationResult:
        stage(f"reading masks of {item.file_name}")
        given = read_mask_input(self.mask_source(item), image.shape[:2], item.path.name,
                                skip_invalid=True)
        for line in given.skipped:
            self.on_warning(f"{item.file_name}: {line} - left out")
        stage(f"CLIP {item.file_name}")
        timings: dict[str, float] = {}
        features = self.segmenter.image_features(image, timings)
        stage(f"naming {len(given.masks)} masks in {item.file_name}")
        result = self.segmenter.classify(features, given.to_proposals(), self.vocab,
                                         file_name=item.file_name)
        result.timings.update(timings)
        return self._postprocess(result)


def load_run(out_dir: Path) -> dict[str, Any]:
    """The ``run.json`` of a finished run.

    Raises:
        OutputError: no run there, or it was made without ``--cache-features``.
    """
    data = _read_json(out_dir / RUN_FILE)
    if not isinstance(data, dict) or "inputs" not in data:
        raise OutputError(f"no samadapter run in {out_dir} ({RUN_FILE} missing or unreadable)",
                          hint="give the --output folder of a segment run")
    if not data.get("cache_features"):
        raise OutputError(f"the run in {out_dir} kept no features",
                          hint="run segment again with --cache-features")
    return data


def inputs_of_run(run: dict[str, Any]) -> list[InputImage]:
    """The images of a run, as ``run.json`` recorded them."""
    return [InputImage(Path(i["path"]), Path(i["root"]), PurePosixPath(i["rel"]))
            for i in run["inputs"]]


def relabel_settings(run: dict[str, Any], vocab: Vocabulary, pipeline: dict[str, Any]
                     ) -> dict[str, Any]:
    """A run's fingerprinted settings with a new vocabulary and classification settings."""
    settings = json.loads(json.dumps(run["settings"]))
    settings["vocabulary"] = vocab.to_dict()
    settings["models"]["pipeline"] = pipeline
    return settings

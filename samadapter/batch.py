"""Batch runs over many images: input collection, resume, error isolation, run records.

:class:`BatchRunner` feeds images through a :class:`~samadapter.pipeline.Segmenter` once the
models are loaded, with image decoding and output writing in small thread pools so the models do
not wait for the disk. Each finished image's COCO JSON carries the run's settings fingerprint: a
rerun skips images finished with the same settings and redoes the others. After the run it writes
``run.json`` (versions, models and checksums, vocabulary, settings, per-image timings and
counts), ``failures.json`` and one merged COCO file ``annotations.json``.

Output layout and the plan check that keeps a run from replacing anything it does not own:
:mod:`samadapter.io.layout`. One bad image (unreadable, too thin, a writer failing) fails alone
with one line; Ctrl-C and SIGTERM finish the same way (run files written, exit 130 / 143).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from samadapter import __version__
from samadapter.errors import ImageError, OutputError, SamAdapterError
from samadapter.io.atomic import write_json_atomic
from samadapter.io.exports import (
    EXPORT_DIRS,
    ExportOptions,
    check_exports,
    image_export_paths,
    write_image_exports,
    write_run_exports,
)
from samadapter.io.feature_store import (
    load_cdt_context,
    load_features,
    load_proposals,
    save_features,
)
from samadapter.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    check_image_shape,
    load_image,
)
from samadapter.io.layout import (
    FAILURES_FILE,
    FEATURES_DIR,
    MANIFEST_FILE,
    MERGED_FILE,
    PER_IMAGE_DIR,
    RUN_FILE,
    RUN_FILES,
    PlannedOutput,
    check_plan,
    feature_path,
    image_output_dir,
    owned_paths,
    read_manifest,
    remove_stale_temps,
    run_lock,
    safe_rel,
    write_manifest,
)
from samadapter.io.mask_inputs import DEFAULT_MAX_MASKS, MAX_LISTED_PROBLEMS, read_mask_input
from samadapter.io.writers import FORMAT_KEYS, FORMATS, check_formats, output_paths, write_all
from samadapter.modeling.proposer import Proposals
from samadapter.pipeline import ImageFeatures, PipelineSettings, Segmenter
from samadapter.postprocess import merge_same_class, per_class_keep, top_k
from samadapter.structures import UNKNOWN_NAME, SegmentationResult
from samadapter.vocab import Vocabulary, check_keep_unknown

_GLOB_CHARS = set("*?[")
# Settings that change speed or memory but not a single output byte.
_NOT_FINGERPRINTED = {"device", "mask_batch", "points_per_batch"}


@dataclass(frozen=True)
class InputImage:
    """One image of a batch.

    Attributes:
        path: the file, as found.
        root: the run's common root: the deepest folder holding every input (absolute).
        rel: the file's path relative to ``root``, extension included (``sub/a.jpg``). It is
            the image's COCO ``file_name`` and names every output (``per-image/sub/a.jpg.json``,
            ...); it never has ``..`` components.
    """

    path: Path
    root: Path
    rel: PurePosixPath

    @property
    def file_name(self) -> str:
        """The image's path relative to the run's root (COCO ``file_name``)."""
        return self.rel.as_posix()

    def identity(self) -> dict[str, int] | None:
        """Size and modification time (ns) of the file now, or ``None`` if it cannot be read."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _absolute(path: str | os.PathLike[str]) -> Path:
    """Absolute and normalised (``..`` folded) without resolving symbolic links."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


class _RunOutputs:
    """Recognises what samadapter runs wrote (the entries their manifests list), so scanning
    folders and globs never takes an earlier run's overlays or masks as new images."""

    def __init__(self) -> None:
        self._owned: dict[Path, frozenset[str]] = {}

    def owned(self, folder: Path) -> frozenset[str]:
        """Names a samadapter manifest in ``folder`` lists (empty without one)."""
        names = self._owned.get(folder)
        if names is None:
            try:
                names = (
                    frozenset(read_manifest(folder))
                    if (folder / MANIFEST_FILE).is_file()
                    else frozenset()
                )
            except OutputError:
                names = frozenset()
            self._owned[folder] = names
        return names

    def holds(self, path: Path) -> bool:
        """Whether the absolute ``path`` lies in an entry some run's manifest lists."""
        child = path
        for parent in path.parents:
            if child.name in self.owned(parent):
                return True
            child = parent
        return False


def _walk_images(folder: Path, skip: Sequence[Path], runs: _RunOutputs) -> list[Path]:
    """Images anywhere under ``folder``, not descending into ``skip`` nor into the entries
    of samadapter output folders (sorted)."""
    found: list[Path] = []
    for current, dirs, files in os.walk(folder):
        here = Path(current)
        owned = runs.owned(_absolute(here))
        dirs[:] = [d for d in dirs if d not in owned and not _inside(_absolute(here / d), skip)]
        found.extend(
            here / f
            for f in files
            if f not in owned and (here / f).suffix.lower() in IMAGE_SUFFIXES
        )
    return sorted(p for p in found if p.is_file())


def collect_inputs(
    inputs: Sequence[str | os.PathLike[str]],
    recursive: bool = False,
    output: str | os.PathLike[str] | None = None,
) -> list[InputImage]:
    """Expand files, folders and glob patterns into the batch's images.

    Every image is named by its path relative to the run's common root (the deepest folder
    holding every given folder, every glob's fixed prefix and every file), extension included,
    so two different files never get the same name and outputs mirror the input tree. A file
    given twice is taken once. Globs are matched as given but named by their normalised path,
    so a pattern with ``..`` still gets a name inside the root.

    Args:
        inputs: files, folders (their images; all levels with ``recursive``) and glob patterns.
        recursive: descend into sub-folders of folder inputs.
        output: the run's output folder; what earlier runs wrote there (its manifest's entries)
            is never taken as an input, so ``output`` may be an input folder. Folders and globs
            also skip the entries of any other samadapter output folder they meet; an image
            given by name is always taken.

    Raises:
        ImageError: a path that does not exist, or a folder / pattern with no images.
    """
    skip = owned_paths(output) if output is not None else []
    runs = _RunOutputs()
    found: list[Path] = []
    anchors: list[Path] = []
    for given in inputs:
        text = os.fspath(given)
        path = Path(text)
        if any(c in text for c in _GLOB_CHARS) and not path.exists():
            fixed = Path(*path.parts[: _first_glob_part(path)]) if path.parts else Path()
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            images = [
                m
                for m in matches
                if _is_image(m) and not _inside(_absolute(m), skip) and not runs.holds(_absolute(m))
            ]
            if not images:
                raise ImageError(
                    f"no images match {text}",
                    hint=f"expected files ending in {', '.join(IMAGE_SUFFIXES)}",
                )
            anchors.append(_absolute(fixed))
            found.extend(images)
        elif path.is_dir():
            if recursive:
                images = _walk_images(path, skip, runs)
            else:
                images = sorted(
                    p
                    for p in path.iterdir()
                    if _is_image(p)
                    and not _inside(_absolute(p), skip)
                    and not runs.holds(_absolute(p))
                )
            if not images:
                more = "" if recursive else "; add --recursive to look in sub-folders"
                raise ImageError(
                    f"no images in folder {path}",
                    hint=f"expected files ending in {', '.join(IMAGE_SUFFIXES)}{more}",
                )
            anchors.append(_absolute(path))
            found.extend(images)
        elif path.exists():
            found.append(path)
        else:
            raise ImageError(f"image not found: {path}", hint="check the path")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(_absolute(path), path)
    if not unique:
        raise ImageError("no images given", hint="pass image files, folders or glob patterns")
    root = Path(os.path.commonpath([*anchors, *(p.parent for p in unique)]))
    return [
        InputImage(
            path, root, safe_rel(Path(os.path.relpath(absolute, root)).as_posix(), "input name")
        )
        for absolute, path in unique.items()
    ]


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


def identity_of(coco: Any) -> Any:
    """The input identity (size, mtime) recorded in a per-image COCO dict, or ``None``."""
    try:
        return coco["info"]["samadapter_input"]
    except (KeyError, TypeError):
        return None


STATUSES = ("done", "skipped", "failed", "interrupted")
"""Final statuses of an image in ``run.json``; ``running`` only while it is in flight."""


@dataclass
class ImageRecord:
    """What happened to one image.

    ``status`` is ``running`` while the image is in flight, then ``done`` (all its outputs
    written), ``skipped`` (finished by an earlier run with the same settings and input),
    ``failed`` (``error`` says why) or ``interrupted`` (the run stopped before its outputs were
    complete).
    """

    file: str
    output: str
    status: str
    masks: int = 0
    classes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class BatchSummary:
    """Counts of a batch run and where its records are.

    Attributes:
        records: one per image, in input order.
        out_dir: the output folder.
        interrupted: Ctrl-C or SIGTERM stopped the run.
        signal: the signal number when SIGTERM stopped it (``None`` for Ctrl-C).
    """

    records: list[ImageRecord]
    out_dir: Path
    interrupted: bool = False
    signal: int | None = None

    def count(self, status: str) -> int:
        """Number of images with this status."""
        return sum(r.status == status for r in self.records)

    @property
    def ok(self) -> bool:
        """Every image done or skipped."""
        return not self.interrupted and self.count("failed") == 0

    @property
    def exit_code(self) -> int:
        """0 all good, 1 some failed, 130 after Ctrl-C, 143 after SIGTERM."""
        if self.interrupted:
            return 128 + (self.signal or signal.SIGINT)
        return 0 if self.ok else 1


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


Stage = Callable[[str], None]
OnImage = Callable[[ImageRecord, "SegmentationResult | None"], None]


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
        OutputError: see :func:`~samadapter.io.layout.check_plan`.
    """
    out = options.out_dir
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered to the main thread like Ctrl-C so the run finishes the same way."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within the block (main thread only), SIGTERM raises :class:`Terminated`; a second
    SIGTERM while the run is finishing its records is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class BatchRunner:
    """Runs a loaded :class:`Segmenter` over many images.

    Args:
        segmenter: models and settings.
        vocab: the classes.
        options: output options.
        run_settings: what the run depends on beyond the segmenter's ``info`` (the model flags
            given, so ``relabel`` can load the same models); stored in ``run.json``.
        settings: the fingerprinted settings; default: the segmenter's ``info``, the vocabulary,
            the formats, ``max_size`` and ``max_pixels``.
        on_warning: receives one line per warning (an image downscaled, a mask left out).
    """

    writes_features = True
    """Whether ``cache_features`` makes this runner write ``features/`` (relabel reads them)."""

    def __init__(
        self,
        segmenter: Segmenter,
        vocab: Vocabulary,
        options: BatchOptions,
        run_settings: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.segmenter = segmenter
        check_keep_unknown(vocab, segmenter.settings.keep_unknown)  # before any image
        self.vocab = vocab
        self.options = options
        self.run_settings = dict(run_settings or {})
        self.settings = settings or {
            "models": segmenter.info,
            "vocabulary": vocab.to_dict(),
            "formats": list(options.formats),
            "exports": list(options.exports),
            "postprocess": asdict(options.postprocess),
            "max_size": options.max_size,
            "max_pixels": options.max_pixels,
        }
        if options.per_mask_png and "per_mask_png" not in self.settings:
            self.settings["per_mask_png"] = True  # absent when off: older records still match
        self.fingerprint = settings_fingerprint(self.settings)
        self.on_warning = on_warning or (lambda _: None)
        self._to_cache: dict[InputImage, tuple[ImageFeatures, Proposals, np.ndarray]] = {}
        self._identity: dict[InputImage, dict[str, int] | None] = {}

    # -- planning -----------------------------------------------------------------------------

    def check_outputs(self, items: Sequence[InputImage]) -> set[str]:
        """:func:`check_outputs` for this runner (see there)."""
        return check_outputs(
            self.options, items, self.writes_features and self.options.cache_features
        )

    def plan(
        self, items: Sequence[InputImage]
    ) -> tuple[list[InputImage], dict[InputImage, ImageRecord]]:
        """Split into images to do and the records of those finished with this run's settings
        from the same input file (same size and modification time; each finished image's JSON
        is read once, here); with ``overwrite`` nothing is skipped."""
        for item in items:
            self._identity[item] = self.input_identity(item)
        if self.options.overwrite:
            return list(items), {}
        todo: list[InputImage] = []
        skipped: dict[InputImage, ImageRecord] = {}
        for item in items:
            coco = _read_json(image_outputs(self.options, item)["coco"])
            identity = self._identity[item]
            if (
                identity is not None
                and fingerprint_of(coco) == self.fingerprint
                and identity_of(coco) == identity
            ):
                skipped[item] = _skipped_record(item, coco)
            else:
                todo.append(item)
        return todo, skipped

    def input_identity(self, item: InputImage) -> dict[str, int] | None:
        """What must be unchanged for ``item``'s earlier outputs to count as finished: the
        image file's size and modification time (``None``: unreadable, so redone)."""
        return item.identity()

    # -- running ------------------------------------------------------------------------------

    def run(
        self,
        items: Sequence[InputImage],
        on_stage: Stage | None = None,
        on_image: OnImage | None = None,
    ) -> BatchSummary:
        """Process every image that is not finished; then write the run's records.

        Before anything is written the whole output plan is checked (:func:`check_outputs`),
        the output folder's manifest updated and temporary files of a killed earlier run
        removed.

        Args:
            items: the images (from :func:`collect_inputs`).
            on_stage: called with a short stage description ("SAM a.jpg", ...).
            on_image: called once per image (done, skipped or failed) with its record and
                result (``None`` unless done); a done image is reported as soon as its outputs
                are written, from the writer thread (calls are serialised by a lock).

        Returns:
            the summary; ``interrupted`` is set when Ctrl-C or SIGTERM stopped the run (outputs
            written so far are complete; the next run continues).

        Raises:
            OutputError: the output plan is refused (nothing was written).
        """
        with _sigterm_as_interrupt():
            try:
                return self._run(items, on_stage, on_image)
            except KeyboardInterrupt as e:  # while planning: no image was started
                return BatchSummary(
                    [],
                    self.options.out_dir,
                    True,
                    signal.SIGTERM if isinstance(e, Terminated) else None,
                )

    def _run(
        self, items: Sequence[InputImage], on_stage: Stage | None, on_image: OnImage | None
    ) -> BatchSummary:
        stage = on_stage or (lambda _: None)
        if on_image is not None:
            on_image = _serialised(on_image)
        self.check_outputs(items)  # before anything is created
        with run_lock(self.options.out_dir):
            owned = self.check_outputs(items)  # again, now that no other run can change it
            write_manifest(self.options.out_dir, owned)
            remove_stale_temps(self.options.out_dir, owned)
            return self._run_locked(items, stage, on_image)

    def _run_locked(
        self, items: Sequence[InputImage], stage: Stage, on_image: OnImage | None
    ) -> BatchSummary:
        todo, skipped = self.plan(items)
        records: dict[InputImage, ImageRecord] = dict(skipped)
        for record in skipped.values():
            if on_image:
                on_image(record, None)
        interrupted: Terminated | KeyboardInterrupt | None = None
        readers = ThreadPoolExecutor(max(1, self.options.reader_threads), "samadapter-read")
        writers = ThreadPoolExecutor(max(1, self.options.writer_threads), "samadapter-write")
        pending: deque[tuple[InputImage, ImageRecord, SegmentationResult, Future[Any]]] = deque()
        try:
            for item, future in self._prefetch(readers, todo):
                record = ImageRecord(item.file_name, str(item.rel), "running")
                records[item] = record
                try:
                    stage(f"reading {item.file_name}")
                    t0 = time.perf_counter()
                    image, notes = future.result()
                    record.seconds["read"] = time.perf_counter() - t0
                    for note in notes:
                        record.warnings.append(note)
                        self.on_warning(note)
                    result = self._process(item, image, stage)
                    record.seconds.update(result.timings)
                    stage(f"writing {item.file_name}")
                    entry = (
                        item,
                        record,
                        result,
                        writers.submit(self._write, item, image, result, record),
                    )
                    pending.append(entry)
                    # Reported the moment its write completes, not when the queue drains.
                    entry[3].add_done_callback(lambda _, e=entry: self._finish_write(e, on_image))  # type: ignore[misc]
                except Exception as e:  # one bad image fails alone
                    self._fail(record, e, on_image)
                    continue
                while len(pending) > 2 * max(1, self.options.writer_threads):
                    _wait_write(pending.popleft())
        except KeyboardInterrupt as e:
            interrupted = e
        finally:
            readers.shutdown(wait=True, cancel_futures=True)
            while pending:  # writes in flight are atomic; let them land
                _wait_write(pending.popleft())
            writers.shutdown(wait=True)  # also waits for the writes' report callbacks
        for record in records.values():
            if record.status == "running":  # stopped before its outputs were complete
                record.status = "interrupted"
        ordered = [records[i] for i in items if i in records]
        summary = BatchSummary(
            ordered,
            self.options.out_dir,
            interrupted is not None,
            signal.SIGTERM if isinstance(interrupted, Terminated) else None,
        )
        self.write_records(items, summary)
        return summary

    def _read(self, item: InputImage) -> tuple[np.ndarray, list[str]]:
        """Decode one image (reader thread): ``([H, W, 3] uint8, warnings)``."""
        notes: list[str] = []
        image = load_image(
            item.path,
            self.options.max_size,
            max_pixels=self.options.max_pixels,
            on_warning=notes.append,
        )
        check_image_shape(image, item.file_name)
        return image, notes

    def _prefetch(
        self, pool: ThreadPoolExecutor, todo: Sequence[InputImage]
    ) -> Iterable[tuple[InputImage, Future[tuple[np.ndarray, list[str]]]]]:
        ahead: deque[tuple[InputImage, Future[tuple[np.ndarray, list[str]]]]] = deque()
        items = iter(todo)
        depth = max(1, self.options.reader_threads)
        for item in items:
            ahead.append((item, pool.submit(self._read, item)))
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
        result = seg.classify(
            features, proposals, self.vocab, file_name=item.file_name, embeddings=embeddings
        )
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
        return feature_path(self.options.out_dir, item.rel)

    def _write(
        self, item: InputImage, image: np.ndarray, result: SegmentationResult, record: ImageRecord
    ) -> None:
        cached = self._to_cache.pop(item, None)
        if cached is not None:
            t0 = time.perf_counter()
            features, proposals, embeddings = cached
            save_features(
                self.feature_path(item),
                features,
                proposals,
                {"file": item.file_name, "fingerprint": self.fingerprint},
                embeddings={self.segmenter.settings.classifier: embeddings},
            )
            record.seconds["cache_write"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_image_exports(
            result, self.options.out_dir, item.rel, self.options.exports, item.file_name
        )
        write_all(
            image,
            result,
            image_output_dir(self.options.out_dir, item.rel),
            item.rel.name,
            overwrite=True,
            formats=self.options.formats,
            file_name=item.file_name,
            info={
                "samadapter_fingerprint": self.fingerprint,
                "samadapter_input": self._identity.get(item),
                "method": self.segmenter.settings.describe(),
            },
            per_mask=self.options.per_mask_png,
        )
        record.seconds["write"] = time.perf_counter() - t0

    def _finish_write(
        self,
        entry: tuple[InputImage, ImageRecord, SegmentationResult, Future[Any]],
        on_image: OnImage | None,
    ) -> None:
        item, record, result, future = entry
        error = future.exception()
        if error is not None:  # one bad image fails alone
            self._to_cache.pop(item, None)
            self._fail(
                record, error if isinstance(error, Exception) else RuntimeError(error), on_image
            )
            return
        record.status = "done"
        record.masks = len(result)
        record.classes = dict(Counter(result.labels))
        if on_image:
            on_image(record, result)

    @staticmethod
    def _fail(record: ImageRecord, error: Exception, on_image: OnImage | None) -> None:
        record.status = "failed"
        record.error = describe_failure(error)
        if on_image:
            on_image(record, None)

    # -- records ------------------------------------------------------------------------------

    def write_records(self, items: Sequence[InputImage], summary: BatchSummary) -> None:
        """Write ``run.json``, ``failures.json`` and the merged ``annotations.json``.

        The merged file holds only the images done or skipped (finished with this run's
        settings) in this run: an image that failed or was interrupted is left out even when an
        older output of it exists.
        """
        out = self.options.out_dir
        out.mkdir(parents=True, exist_ok=True)
        root = items[0].root if items else None
        write_json_atomic(
            out / RUN_FILE,
            {
                "samadapter_version": __version__,
                "fingerprint": self.fingerprint,
                "settings": self.settings,
                "run": self.run_settings,
                "cache_features": self.options.cache_features,
                "export_options": asdict(self.options.export_options),
                "interrupted": summary.interrupted,
                "counts": {s: summary.count(s) for s in STATUSES},
                "root": str(root) if root is not None else None,
                "layout": {"per_image": PER_IMAGE_DIR, "features": FEATURES_DIR},
                "inputs": [{"path": str(_absolute(i.path)), "rel": str(i.rel)} for i in items],
                "images": [r.__dict__ for r in summary.records],
            },
        )
        write_json_atomic(
            out / FAILURES_FILE,
            [{"file": r.file, "error": r.error} for r in summary.records if r.status == "failed"],
        )
        finished = {r.file for r in summary.records if r.status in ("done", "skipped")}
        kept = [i for i in items if i.file_name in finished]
        if "coco" in self.options.formats:
            merge_coco(out, kept, out / MERGED_FILE, self.options)
        names = list(self.vocab.names)
        if self.segmenter.settings.keep_unknown:
            names.append(UNKNOWN_NAME)
        write_run_exports(
            out,
            [i.rel for i in kept],
            self.options.exports,
            names,
            sources=[i.path for i in kept],
            options=self.options.export_options,
        )


_OUT_OF_MEMORY = re.compile(
    r"can't allocate memory|out of memory|tried to allocate (\d+) bytes", re.IGNORECASE
)


def describe_failure(error: BaseException) -> str:
    """One line for an image that failed: a :class:`SamAdapterError`'s own text; running out of
    memory named as such; anything else as ``unexpected <type>: <first line>``."""
    if isinstance(error, SamAdapterError):
        return str(error)
    text = str(error).splitlines()[0] if str(error) else ""
    if isinstance(error, MemoryError | RuntimeError) and (
        isinstance(error, MemoryError) or _OUT_OF_MEMORY.search(text)
    ):
        asked = re.search(r"tried to allocate (\d+) bytes", text)
        size = f" (an allocation of {int(asked.group(1)) / 2**30:.1f} GiB failed)" if asked else ""
        return (
            f"ran out of memory{size} (pass --max-size to shrink large images before the "
            "models, or lower --mask-batch)"
        )
    return f"unexpected {type(error).__name__}" + (f": {text}" if text else "")


def _serialised(
    on_image: Callable[[ImageRecord, SegmentationResult | None], None],
) -> Callable[[ImageRecord, SegmentationResult | None], None]:
    """``on_image`` behind a lock: writer threads and the batch's thread report images."""
    lock = threading.Lock()

    def report(record: ImageRecord, result: SegmentationResult | None) -> None:
        with lock:
            on_image(record, result)

    return report


def _wait_write(entry: tuple[InputImage, ImageRecord, SegmentationResult, Future[Any]]) -> None:
    """Wait for one image's write; its failure, if any, was reported by its callback."""
    with contextlib.suppress(Exception):
        entry[3].result()


def _skipped_record(item: InputImage, coco: dict[str, Any]) -> ImageRecord:
    """The record of an image finished earlier, counted from its COCO JSON."""
    names = {c["id"]: c["name"] for c in coco.get("categories", [])}
    annotations = coco.get("annotations", [])
    return ImageRecord(
        item.file_name,
        str(item.rel),
        "skipped",
        masks=len(annotations),
        classes=dict(Counter(names.get(a["category_id"], "?") for a in annotations)),
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def merge_coco(
    out_dir: Path, items: Sequence[InputImage], target: Path, options: BatchOptions | None = None
) -> dict[str, Any]:
    """One COCO file for the whole run from the per-image JSONs of ``items``.

    Image ids are ``1..N`` in input order (images without outputs are left out), ``file_name``
    is each image's path relative to the run's common root (recorded as ``info.images_root``,
    so ``images_root / file_name`` is the image), annotation ids run over the whole file and
    category ids are the vocabulary's (``1..K``, ``unknown`` = K+1), the same in every image.

    Returns:
        the merged dict (also written atomically to ``target``).
    """
    opts = options or BatchOptions(out_dir=out_dir)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    categories: dict[int, dict[str, Any]] = {}
    info: dict[str, Any] = {}
    for item in items:
        data = _read_json(image_outputs(opts, item)["coco"])
        if not isinstance(data, dict) or not data.get("images"):
            continue
        image_id = len(images) + 1
        images.append({**data["images"][0], "id": image_id, "file_name": item.file_name})
        for cat in data.get("categories", []):
            categories.setdefault(int(cat["id"]), cat)
        for ann in data.get("annotations", []):
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": image_id})
        if not info:
            info = {k: v for k, v in dict(data.get("info", {})).items() if k != "samadapter_input"}
    if items:
        info["images_root"] = str(items[0].root)
    merged = {
        "info": info,
        "licenses": [],
        "images": images,
        "categories": [categories[k] for k in sorted(categories)],
        "annotations": annotations,
    }
    write_json_atomic(target, merged)
    return merged


class RelabelRunner(BatchRunner):
    """Re-classifies a finished run's cached masks and features with another vocabulary.

    Neither SAM nor the CLIP image encoder runs: each image's masks, dense features and mask
    embeddings come from ``OUTPUT/features`` (written by ``segment --cache-features``), so with
    the same classifier only the text encoder and a matrix product run (the adapter too when the
    classifier changed); the original image is read only to draw the overlay. The new outputs
    carry the fingerprint a fresh ``segment`` with the new vocabulary would have, so such a
    ``segment`` run would skip them. A missing or corrupt feature file fails its image alone.
    """

    writes_features = False

    def _process(self, item: InputImage, image: np.ndarray, stage: Stage) -> SegmentationResult:
        stage(f"naming {item.file_name}")
        t0 = time.perf_counter()
        path = self.feature_path(item)
        proposals, embeddings = load_proposals(path)
        if proposals is None:
            raise OutputError(
                f"cached features of {item.file_name} hold no masks",
                hint="run segment --cache-features again",
            )
        if proposals.image_size != image.shape[:2]:
            raise ImageError(
                f"{item.path} is {image.shape[1]}x{image.shape[0]} now but was "
                f"{proposals.image_size[1]}x{proposals.image_size[0]} when "
                "cached",
                hint="run segment --cache-features again",
            )
        cached = embeddings.get(self.segmenter.settings.classifier)
        # MAFT+: the cdt refines the text with the image's cached context (None: not cached).
        context = load_cdt_context(path) if self.segmenter.uses_cdt else None
        # With cached embeddings (and context) only the text side runs; else the features.
        need_features = cached is None or (self.segmenter.uses_cdt and context is None)
        source = load_features(path, self.segmenter.device)[0] if need_features else image
        seconds = time.perf_counter() - t0
        result = self.segmenter.classify(
            source,
            proposals,
            self.vocab,
            file_name=item.file_name,
            embeddings=cached,
            cdt_context=context,
        )
        result.timings["cache_read"] = seconds
        return self._postprocess(result)


class ClassifyRunner(BatchRunner):
    """Names masks the user brings (COCO JSON, mask PNG folders, label PNGs) instead of SAM's.

    Args:
        segmenter: CLIP + adapter (no proposer needed).
        vocab: the classes.
        options: output options.
        masks: one mask source for a single image, or, for several images, a folder holding per
            image ``<name>.json``, ``<name>.png`` or a folder ``<name>/`` of mask PNGs (``name``
            with or without the image's extension), a previous run's output folder, or one COCO
            JSON whose images are matched by ``file_name``.
        on_warning: called with one line per mask left out (wrong size, empty, unreadable; at
            most :data:`~samadapter.io.mask_inputs.MAX_LISTED_PROBLEMS` an image, then a count)
            and one line when ``max_masks`` dropped some.
        max_masks: most masks taken from one image's mask input (the largest are kept).
        **kwargs: passed to :class:`BatchRunner`.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        vocab: Vocabulary,
        options: BatchOptions,
        masks: Path,
        single: bool,
        on_warning: Callable[[str], None] | None = None,
        max_masks: int = DEFAULT_MAX_MASKS,
        **kwargs: Any,
    ) -> None:
        super().__init__(segmenter, vocab, options, on_warning=on_warning, **kwargs)
        self.masks = Path(masks)
        self.single = single
        self.max_masks = max_masks
        self.settings["masks"] = str(self.masks.resolve())
        self.settings["max_masks"] = max_masks
        self.fingerprint = settings_fingerprint(self.settings)

    def mask_source(self, item: InputImage) -> Path:
        """Where ``item``'s masks are read from.

        Raises:
            ImageError: none of the candidate files exists.
        """
        if self.single or self.masks.is_file():
            return self.masks
        rel, stem = str(item.rel), str(item.rel.with_suffix(""))
        run_dir = self.masks / PER_IMAGE_DIR  # a previous run's output folder
        for candidate in (
            run_dir / f"{rel}.json",
            self.masks / f"{rel}.json",
            self.masks / f"{stem}.json",
            self.masks / f"{stem}.png",
            self.masks / stem,
        ):
            if candidate.exists():
                return candidate
        raise ImageError(
            f"no masks for {item.file_name} in {self.masks}",
            hint=f"expected {stem}.json, {stem}.png or a folder {stem}/",
        )

    def input_identity(self, item: InputImage) -> dict[str, int] | None:
        """The image's identity plus its mask source's (size and modification time of the file,
        or of every entry of a mask folder), so new masks under the same path are classified
        again instead of skipped with the old outputs."""
        identity = item.identity()
        if identity is None:
            return None
        try:
            source = self.mask_source(item)
            entries = sorted(source.iterdir()) if source.is_dir() else [source]
            stats = [(e.name, (st := e.stat()).st_size, st.st_mtime_ns) for e in entries]
        except (OSError, SamAdapterError):
            return None  # no readable masks: redone, and it fails with its own line
        digest = hashlib.sha256(repr(stats).encode("utf-8", "surrogateescape")).hexdigest()
        return {**identity, "masks": int(digest[:15], 16)}

    def _process(self, item: InputImage, image: np.ndarray, stage: Stage) -> SegmentationResult:
        stage(f"reading masks of {item.file_name}")
        given = read_mask_input(
            self.mask_source(item),
            image.shape[:2],
            item.path.name,
            skip_invalid=True,
            max_masks=self.max_masks,
        )
        for line in given.skipped[:MAX_LISTED_PROBLEMS]:
            self.on_warning(f"{item.file_name}: {line} - left out")
        if len(given.skipped) > MAX_LISTED_PROBLEMS:
            self.on_warning(
                f"{item.file_name}: and {len(given.skipped) - MAX_LISTED_PROBLEMS} "
                "more bad masks - left out"
            )
        for line in given.notes:
            self.on_warning(f"{item.file_name}: {line}")
        stage(f"CLIP {item.file_name}")
        timings: dict[str, float] = {}
        features = self.segmenter.image_features(image, timings)
        stage(f"naming {len(given.masks)} masks in {item.file_name}")
        result = self.segmenter.classify(
            features, given.to_proposals(), self.vocab, file_name=item.file_name
        )
        result.timings.update(timings)
        return self._postprocess(result)


_MODEL_KEYS = frozenset(
    {
        "preset",
        "sam",
        "sam_checkpoint",
        "adapter",
        "adapter_checkpoint",
        "clip",
        "clip_checkpoint",
        "weights_dir",
        "offline",
        "device",
        "precision",
        "runtime",
        "two_pass",
    }
)


def load_run(out_dir: Path) -> dict[str, Any]:
    """The ``run.json`` of a finished run, checked as untrusted input.

    Every path it names for writing (``inputs[].rel``) must stay inside ``out_dir``; types are
    checked so a damaged or hostile file gives one error, never a traceback.

    Raises:
        OutputError: no run there, it was made without ``--cache-features``, or it is malformed.
    """
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise OutputError(
            f"{out_dir} is a file, not a run's output folder",
            hint="give the --output folder of a segment run",
        )
    data = _read_json(out_dir / RUN_FILE)
    if not isinstance(data, dict) or "inputs" not in data:
        raise OutputError(
            f"no samadapter run in {out_dir} ({RUN_FILE} missing or unreadable)",
            hint="give the --output folder of a segment run",
        )
    if not data.get("cache_features"):
        raise OutputError(
            f"the run in {out_dir} kept no features", hint="run segment again with --cache-features"
        )

    def bad(what: str) -> OutputError:
        return OutputError(
            f"{out_dir / RUN_FILE} is malformed: {what}",
            hint="run segment --cache-features again into a new --output",
        )

    inputs, settings, models = data.get("inputs"), data.get("settings"), data.get("run")
    if not isinstance(inputs, list) or not all(
        isinstance(i, dict) and isinstance(i.get("path"), str) for i in inputs
    ):
        raise bad("'inputs' must be a list of {path, rel}")
    for entry in inputs:
        safe_rel(entry.get("rel"), f"'rel' in {out_dir / RUN_FILE}")
    if not isinstance(data.get("root", ""), str | None):
        raise bad("'root' must be a path")
    if (
        not isinstance(settings, dict)
        or not isinstance(settings.get("models"), dict)
        or not isinstance(settings["models"].get("pipeline"), dict)
    ):
        raise bad("'settings.models.pipeline' missing")
    if (
        not isinstance(models, dict)
        or not set(models) <= _MODEL_KEYS
        or not all(v is None or isinstance(v, str | bool) for v in models.values())
    ):
        raise bad(f"'run' must map {', '.join(sorted(_MODEL_KEYS))} to strings")
    try:
        check_formats(settings.get("formats", FORMATS))
        check_exports(settings.get("exports", ["coco"]))
        PostProcess(**settings.get("postprocess", {}))
        for key in ("max_size", "max_pixels"):
            if not isinstance(settings.get(key), int | None) or isinstance(settings.get(key), bool):
                raise TypeError(f"'{key}' must be an integer")
    except (SamAdapterError, TypeError, AttributeError) as e:
        raise bad(f"settings: {e}") from None
    return data


def inputs_of_run(run: dict[str, Any]) -> list[InputImage]:
    """The images of a run, as ``run.json`` recorded them (see :func:`load_run`)."""
    root = Path(run.get("root") or "/")
    return [
        InputImage(Path(i["path"]), root, safe_rel(i["rel"], "'rel' in run.json"))
        for i in run["inputs"]
    ]


def relabel_settings(
    run: dict[str, Any], vocab: Vocabulary, pipeline: dict[str, Any]
) -> dict[str, Any]:
    """A run's fingerprinted settings with a new vocabulary and classification settings."""
    settings = json.loads(json.dumps(run["settings"]))
    settings["vocabulary"] = vocab.to_dict()
    settings["models"]["pipeline"] = pipeline
    if "method" in settings["models"]:
        settings["models"]["method"] = PipelineSettings(**pipeline).describe()
    return settings

"""Batch runners: images through the models with threads, resume and error isolation.

:class:`BatchRunner` feeds images through a :class:`~samadapter.pipeline.Segmenter` once the
models are loaded, with image decoding and output writing in small thread pools so the models do
not wait for the disk. Each finished image's COCO JSON carries the run's settings fingerprint: a
rerun skips images finished with the same settings and redoes the others. After the run it writes
the run files (:mod:`samadapter.batch.records`).

Output layout and the plan check that keeps a run from replacing anything it does not own:
:mod:`samadapter.io.layout`. One bad image (unreadable, too thin, a writer failing) fails alone
with one line; Ctrl-C and SIGTERM finish the same way (run files written, exit 130 / 143).
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from samadapter.batch.inputs import InputImage
from samadapter.batch.options import BatchOptions, check_outputs, image_outputs
from samadapter.batch.records import (
    BatchSummary,
    ImageRecord,
    _skipped_record,
    describe_failure,
    fingerprint_of,
    identity_of,
    write_records,
)
from samadapter.config import fingerprint
from samadapter.errors import ImageError, OutputError, SamAdapterError
from samadapter.io.atomic import read_json_object
from samadapter.io.exports import write_image_exports
from samadapter.io.feature_store import (
    load_cdt_context,
    load_features,
    load_proposals,
    save_features,
)
from samadapter.io.images import check_image_shape, load_image
from samadapter.io.layout import (
    PER_IMAGE_DIR,
    feature_path,
    image_output_dir,
    remove_stale_temps,
    run_lock,
    write_manifest,
)
from samadapter.io.mask_inputs import DEFAULT_MAX_MASKS, MAX_LISTED_PROBLEMS, read_mask_input
from samadapter.io.writers import write_all
from samadapter.modeling.mask_generator import Proposals
from samadapter.pipeline import ImageFeatures, Segmenter
from samadapter.structures import UNKNOWN_NAME, SegmentationResult
from samadapter.vocab import Vocabulary, check_keep_unknown

Stage = Callable[[str], None]
OnImage = Callable[[ImageRecord, "SegmentationResult | None"], None]
Executor = Callable[
    [Sequence[InputImage], dict[InputImage, ImageRecord], Stage, "OnImage | None"],
    "KeyboardInterrupt | None",
]
"""Runs a batch's planned images: ``(todo, records, stage, on_image)``. It adds a record per
image to ``records`` as it starts it, reports each image through ``on_image`` once it is done or
failed, and returns the Ctrl-C / SIGTERM that stopped it (``None`` when it ran to the end)."""


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
        self.fingerprint = fingerprint(self.settings)
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
            coco = read_json_object(image_outputs(self.options, item)["coco"])
            identity = self._identity[item]
            if (
                coco is not None
                and identity is not None
                and fingerprint_of(coco) == self.fingerprint
                and identity_of(coco) == identity
            ):
                skipped[item] = _skipped_record(item, coco)
            else:
                todo.append(item)
        return todo, skipped

    def planned_identity(self, item: InputImage) -> dict[str, int] | None:
        """``item``'s input identity as :meth:`plan` found it (what its outputs record)."""
        return self._identity.get(item)

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
        executor: Executor | None = None,
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
            executor: runs the planned images elsewhere (see :data:`Executor`; e.g. on a Ray
                cluster, :mod:`samadapter.batch.ray_runner`); default: here, with reader and
                writer threads.

        Returns:
            the summary; ``interrupted`` is set when Ctrl-C or SIGTERM stopped the run (outputs
            written so far are complete; the next run continues).

        Raises:
            OutputError: the output plan is refused (nothing was written).
        """
        with _sigterm_as_interrupt():
            try:
                return self._run(items, on_stage, on_image, executor or self._execute)
            except KeyboardInterrupt as e:  # while planning: no image was started
                return self._summary([], e)

    def _run(
        self,
        items: Sequence[InputImage],
        on_stage: Stage | None,
        on_image: OnImage | None,
        executor: Executor,
    ) -> BatchSummary:
        stage = on_stage or (lambda _: None)
        if on_image is not None:
            on_image = _serialised(on_image)
        self.check_outputs(items)  # before anything is created
        with run_lock(self.options.out_dir):
            owned = self.check_outputs(items)  # again, now that no other run can change it
            write_manifest(self.options.out_dir, owned)
            remove_stale_temps(self.options.out_dir, owned)
            return self._run_locked(items, stage, on_image, executor)

    def _run_locked(
        self,
        items: Sequence[InputImage],
        stage: Stage,
        on_image: OnImage | None,
        executor: Executor,
    ) -> BatchSummary:
        todo, skipped = self.plan(items)
        records: dict[InputImage, ImageRecord] = dict(skipped)
        for record in skipped.values():
            if on_image:
                on_image(record, None)
        interrupted = executor(todo, records, stage, on_image)
        for record in records.values():
            if record.status == "running":  # stopped before its outputs were complete
                record.status = "interrupted"
        summary = self._summary([records[i] for i in items if i in records], interrupted)
        names = list(self.vocab.names)
        if self.segmenter.settings.keep_unknown:
            names.append(UNKNOWN_NAME)
        write_records(
            self.options,
            items,
            summary,
            fingerprint=self.fingerprint,
            settings=self.settings,
            run_settings=self.run_settings,
            class_names=names,
        )
        return summary

    def _summary(
        self, records: list[ImageRecord], interrupted: KeyboardInterrupt | None
    ) -> BatchSummary:
        stopped_by = signal.SIGTERM if isinstance(interrupted, Terminated) else None
        return BatchSummary(records, self.options.out_dir, interrupted is not None, stopped_by)

    def _execute(
        self,
        todo: Sequence[InputImage],
        records: dict[InputImage, ImageRecord],
        stage: Stage,
        on_image: OnImage | None,
    ) -> KeyboardInterrupt | None:
        """The local :data:`Executor`: reader threads, the models here, writer threads."""
        interrupted: KeyboardInterrupt | None = None
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
        return interrupted

    def read_image(self, item: InputImage) -> tuple[np.ndarray, list[str]]:
        """Decode one image as this run reads them (``max_size``, ``max_pixels``, the shape
        checks): ``([H, W, 3] uint8, warnings)``.

        Raises:
            ImageError: unreadable, corrupt, too thin or too elongated.
        """
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
            ahead.append((item, pool.submit(self.read_image, item)))
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

    def process_image(
        self,
        item: InputImage,
        image: np.ndarray,
        record: ImageRecord,
        identity: dict[str, int] | None,
    ) -> SegmentationResult | None:
        """Process one decoded image and write its outputs, here and now (for executors that
        run images elsewhere). ``record`` ends ``done`` or ``failed``; a failure is never raised.

        Args:
            item: the image.
            image: ``[H, W, 3]`` uint8, from :meth:`read_image`.
            record: its record (``seconds`` may hold the read time already).
            identity: its input identity as planned (:meth:`planned_identity`), written into
                its outputs so a rerun recognises them.

        Returns:
            the result, or ``None`` when the image failed.
        """
        self._identity[item] = identity
        try:
            result = self._process(item, image, lambda _: None)
            record.seconds.update(result.timings)
            self._write(item, image, result, record)
        except Exception as e:  # one bad image fails alone
            self._to_cache.pop(item, None)
            self._fail(record, e, None)
            return None
        finally:
            self._identity.pop(item, None)
        self._done(record, result)
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
        self._done(record, result)
        if on_image:
            on_image(record, result)

    @staticmethod
    def _done(record: ImageRecord, result: SegmentationResult) -> None:
        record.status = "done"
        record.masks = len(result)
        record.classes = dict(Counter(result.labels))

    @staticmethod
    def _fail(record: ImageRecord, error: Exception, on_image: OnImage | None) -> None:
        record.status = "failed"
        record.error = describe_failure(error)
        if on_image:
            on_image(record, None)


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
        self.fingerprint = fingerprint(self.settings)

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

"""Run records: each image's :class:`ImageRecord`, the :class:`BatchSummary`, and the run files
(``run.json``, ``failures.json``, the merged ``annotations.json``) written after a run and read
back, as untrusted input, by ``relabel`` (:func:`load_run`, :func:`run_config`).
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samadapter import __version__
from samadapter.batch.inputs import InputImage, _absolute
from samadapter.batch.options import BatchOptions, PostProcess, image_outputs
from samadapter.config import ModelConfig, PipelineSettings, RunConfig, from_json, to_json
from samadapter.errors import OutputError, SamAdapterError
from samadapter.io.atomic import read_json_object, write_json_atomic
from samadapter.io.exports import check_exports, write_run_exports
from samadapter.io.layout import (
    FAILURES_FILE,
    FEATURES_DIR,
    MERGED_FILE,
    PER_IMAGE_DIR,
    RUN_FILE,
    safe_rel,
)
from samadapter.io.writers import FORMATS, check_formats
from samadapter.vocab import Vocabulary

if TYPE_CHECKING:
    from samadapter.pipeline import Segmenter


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
        data = read_json_object(image_outputs(opts, item)["coco"])
        if data is None or not data.get("images"):
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


def write_records(
    options: BatchOptions,
    items: Sequence[InputImage],
    summary: BatchSummary,
    *,
    fingerprint: str,
    settings: dict[str, Any],
    run_settings: dict[str, Any],
    class_names: Sequence[str],
) -> None:
    """Write ``run.json``, ``failures.json`` and the merged ``annotations.json``.

    The merged file holds only the images done or skipped (finished with this run's
    settings) in this run: an image that failed or was interrupted is left out even when an
    older output of it exists.

    Args:
        options: the run's output options.
        items: its images, in input order.
        summary: what happened to them.
        fingerprint: the run's settings fingerprint.
        settings: the fingerprinted settings.
        run_settings: the model flags given (``run`` in ``run.json``).
        class_names: the classes the exports name (``unknown`` last when kept).
    """
    out = options.out_dir
    root = items[0].root if items else None
    write_json_atomic(
        out / RUN_FILE,
        {
            "samadapter_version": __version__,
            "fingerprint": fingerprint,
            "settings": settings,
            "run": run_settings,
            "cache_features": options.cache_features,
            "export_options": asdict(options.export_options),
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
    if "coco" in options.formats:
        merge_coco(out, kept, out / MERGED_FILE, options)
    write_run_exports(
        out,
        [i.rel for i in kept],
        options.exports,
        list(class_names),
        sources=[i.path for i in kept],
        options=options.export_options,
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
    data = read_json_object(out_dir / RUN_FILE)
    if data is None or "inputs" not in data:
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

    inputs, settings = data.get("inputs"), data.get("settings")
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
    try:
        run_config(data)
    except SamAdapterError as e:
        raise bad(str(e)) from None
    try:
        check_formats(settings.get("formats", FORMATS))
        check_exports(settings.get("exports", ["coco"]))
        from_json(PostProcess, settings.get("postprocess", {}), "'postprocess'")
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


def run_config(run: dict[str, Any]) -> RunConfig:
    """The models and classification settings a run recorded (``run.json``'s ``run`` and
    ``settings.models.pipeline``), read as untrusted data.

    Raises:
        ConfigError: an unknown key or a value of the wrong type.
    """
    return RunConfig(
        models=from_json(ModelConfig, run.get("run"), f"{RUN_FILE} 'run'"),
        pipeline=from_json(PipelineSettings, run["settings"]["models"]["pipeline"], "'pipeline'"),
    )


def models_record(models: ModelConfig, segmenter: Segmenter) -> dict[str, Any]:
    """``run.json``'s ``run``: the models a run asked for, with the precision and runtime they
    resolved to on this machine (``relabel`` loads the same, see :func:`run_config`)."""
    runtime = str(segmenter.info.get("runtime", models.runtime))
    return to_json(replace(models, precision=segmenter.settings.precision, runtime=runtime))


def relabel_settings(
    run: dict[str, Any], vocab: Vocabulary, pipeline: PipelineSettings
) -> dict[str, Any]:
    """A run's fingerprinted settings with a new vocabulary and classification settings."""
    settings = json.loads(json.dumps(run["settings"]))
    settings["vocabulary"] = vocab.to_dict()
    settings["models"]["pipeline"] = to_json(pipeline)
    if "method" in settings["models"]:
        settings["models"]["method"] = pipeline.describe()
    return settings

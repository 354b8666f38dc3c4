"""Batch runs on a Ray cluster through Ray Data: the outputs and resume of a local run.

The driver (the machine running ``samadapter ... --ray``) plans the run exactly as a local one:
the output plan is checked and locked, and images finished with the same settings fingerprint
are left out before anything is scheduled (:meth:`~samadapter.batch.BatchRunner.plan`). The
planned images become a Ray dataset of paths; tasks decode them (``max_size`` and the shape
checks applied, as locally), and ``map_batches`` hands them one at a time to a pool of actors
that each load the models once and write each image's outputs with the local runner's own
per-image code (:meth:`~samadapter.batch.BatchRunner.process_image`), so a Ray run writes the
same bytes as a local run with the same settings. Only the decoded image goes to an actor and
only a small record (status, counts, timings, warnings) comes back: masks and CLIP features
stay on the worker. The driver reports each record as it arrives (progress, failures) and
writes ``run.json``, ``failures.json`` and ``annotations.json`` once at the end.

Every worker must reach ``-o`` (a shared filesystem): the driver writes a marker file there that
each node and each actor checks before the first image. Ray itself is an optional dependency
(``pip install 'samadapter[ray]'``); this module imports it only when a run starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from samadapter.batch.inputs import InputImage
from samadapter.batch.records import BatchSummary, ImageRecord, describe_failure
from samadapter.batch.runner import BatchRunner, OnImage, Stage
from samadapter.config import PipelineSettings
from samadapter.errors import ConfigError, OutputError, SamAdapterError
from samadapter.io.layout import RUN_FILE

if TYPE_CHECKING:
    from samadapter.pipeline import Segmenter

RAY_HINT = "pip install 'samadapter[ray]'"
READ_CPUS = 0.25
"""CPUs a decoding task asks for."""
_RESERVED_CPUS = 0.5
"""CPUs of the cluster left to the decoding tasks when sizing the actor pool (with every CPU
taken by actors, the reads starve and the job hangs)."""
_MARKER_PREFIX = f".{RUN_FILE}."  # a temporary name of run.json: a stale one is cleaned up


@dataclass(frozen=True)
class RayOptions:
    """How a batch runs on Ray.

    Attributes:
        address: the cluster: ``auto`` (the one ``ray start`` made on this machine, or the one
            ``RAY_ADDRESS`` names), ``host:6379``, ``ray://host:10001``, or ``local`` (a Ray
            started on this machine for the run); ``None``: ``RAY_ADDRESS``, else ``local``.
        actors: most model actors; default: one per GPU on GPU clusters, else as many as the
            CPUs allow at ``cpus_per_actor`` each.
        cpus_per_actor: CPUs each actor reserves (also its torch threads, rounded down, at
            least 1); default: at most 4, fewer when the pool would leave no CPU for decoding.
        gpus_per_actor: GPUs each actor reserves; default 1 on clusters with GPUs, else 0.
        max_retries: how often Ray may try an image again after the worker running it died
            (crashed, killed for memory, node lost); after that it is a failure record.
        verbose: keep Ray's own log lines (quiet otherwise).
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float | None = None
    gpus_per_actor: float | None = None
    max_retries: int = 2
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise ConfigError(f"--ray-actors must be at least 1, not {self.actors}")
        for name in ("cpus_per_actor", "gpus_per_actor"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} must not be negative, not {value}")


@dataclass(frozen=True)
class PoolSize:
    """The actor pool of a run: ``actors`` actors of ``cpus`` CPUs and ``gpus`` GPUs each."""

    actors: int
    cpus: float
    gpus: float

    @property
    def threads(self) -> int:
        """torch threads of one actor."""
        return max(1, int(self.cpus))


def pool_size(options: RayOptions, cluster: dict[str, float]) -> PoolSize:
    """Size the actor pool for a cluster's resources (``ray.cluster_resources()``).

    Args:
        options: what the user asked for.
        cluster: ``{"CPU": n, "GPU": m, ...}``.

    Returns:
        the pool, leaving at least ``_RESERVED_CPUS`` of the cluster's CPUs to decoding tasks
        (never less than 0.1 CPU an actor).
    """
    cpus = float(cluster.get("CPU", 1.0))
    gpus = float(cluster.get("GPU", 0.0))
    spare = max(cpus - _RESERVED_CPUS, 0.1)
    gpu = options.gpus_per_actor if options.gpus_per_actor is not None else float(gpus >= 1)
    if gpu > 0:
        actors = options.actors or max(1, int(gpus // gpu))
        cpu = options.cpus_per_actor or min(1.0, spare / actors)
    else:
        cpu = options.cpus_per_actor or min(4.0, spare)
        actors = options.actors or max(1, int(spare // cpu))
        if options.actors and options.cpus_per_actor is None:
            cpu = min(cpu, spare / actors)
    return PoolSize(actors, round(max(cpu, 0.1), 3), gpu)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("--ray needs Ray Data, which is not installed", hint=RAY_HINT) from None
    return ray


def _quiet(verbose: bool) -> None:
    """Keep Ray's log lines (start-up, execution plans, progress) out of the user's output."""
    if verbose:
        return
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # the driver's C++ core worker
    for name in ("ray", "ray.data"):  # a failed image is our record, not Ray's traceback
        logging.getLogger(name).setLevel(logging.CRITICAL)
    import ray._private.worker as driver

    # The cluster's notices ("(raylet) Task ... failed, 2 retries remaining", an actor
    # restarted) reach the driver through this function whatever the logging levels; a dead
    # worker's image is reported as our own record instead.
    if hasattr(driver, "print_to_stdstream"):
        driver.print_to_stdstream = _drop_cluster_notice


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null for the block: Ray's C++ core worker logs there directly
    while it starts (a failed start still raises, and is reported from the exception)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _drop_cluster_notice(data: dict[str, Any], ignore_prefix: bool = False) -> None:
    """Stands in for Ray's printer of cluster notices on the driver (see :func:`_quiet`)."""


def connect(address: str | None, verbose: bool = False) -> bool:
    """Join the cluster at ``address`` (see :class:`RayOptions`) unless Ray is up already.

    Returns:
        whether this call started Ray (the caller then shuts it down at the end).

    Raises:
        ConfigError: Ray is missing, or no cluster answers at the address.
    """
    ray = _import_ray()
    _quiet(verbose)
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {
        "address": target,
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.CRITICAL,
    }
    if target in (None, "local"):  # a Ray of our own on this machine
        kwargs["include_dashboard"] = False
    try:
        with contextlib.nullcontext() if verbose else _stderr_silenced():
            ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"no Ray cluster answers at {target}: {first}",
            hint="start one with `ray start --head`, or pass --ray local to run a Ray on this "
            "machine alone",
        ) from None
    _quiet(verbose)  # ray.init configures its loggers again
    data = ray.data.DataContext.get_current()
    data.enable_progress_bars = verbose
    data.print_on_execution_start = verbose
    data.enable_auto_log_stats = False
    return True


def _worker_env() -> dict[str, Any]:
    """The runtime environment of every task and actor: samadapter's settings from the driver's
    environment (weights folder, offline, compile, runtime), so workers resolve models alike."""
    env = {k: v for k, v in os.environ.items() if k.startswith("SAMADAPTER_")}
    return {"env_vars": env} if env else {}


@dataclass(frozen=True)
class ModelFacts:
    """What the driver knows of the workers' models: the segmenter's ``info`` and settings.

    It stands in for the :class:`~samadapter.pipeline.Segmenter` of the driver's runner, which
    only plans and writes the run's records and so never runs a model.
    """

    info: dict[str, Any]
    settings: PipelineSettings


def _describe(build: Callable[[], BatchRunner]) -> BatchRunner:
    """(A Ray task.) Build the run's runner as an actor would, then drop its models."""
    runner = build()
    runner.segmenter = cast(
        "Segmenter", ModelFacts(runner.segmenter.info, runner.segmenter.settings)
    )
    return runner


def _check_marker(marker: tuple[str, str]) -> None:
    """Raise :class:`OutputError` unless the driver's marker file is readable here."""
    path, token = marker
    try:
        found = Path(path).read_text(encoding="utf-8")
    except OSError:
        found = None
    if found != token:
        import socket

        raise OutputError(
            f"the output folder {Path(path).parent} cannot be reached from the Ray worker on "
            f"{socket.gethostname()}",
            hint="-o must be on a filesystem every node of the cluster mounts at the same path",
        )


def _encode(path: Path | PurePosixPath | str) -> bytes:
    return os.fsencode(str(path))  # names that are not UTF-8 survive Arrow as bytes


def _decode_row(row: dict[str, Any], reader: BatchRunner) -> dict[str, Any]:
    """(Ray Data ``map``, a task.) One row of paths to one row holding the decoded image."""
    t0 = time.perf_counter()
    pixels, height, width, notes, error = b"", 0, 0, "[]", ""
    try:
        image, found = reader.read_image(_item(row))
        pixels, (height, width) = np.ascontiguousarray(image).tobytes(), image.shape[:2]
        notes = json.dumps(found)
    except Exception as e:  # one bad image fails alone
        error = describe_failure(e)
    return {
        **row,
        "pixels": pixels,
        "height": height,
        "width": width,
        "notes": notes,
        "error": error,
        "read": time.perf_counter() - t0,
    }


def _item(row: dict[str, Any]) -> InputImage:
    return InputImage(
        Path(os.fsdecode(row["path"])),
        Path(os.fsdecode(row["root"])),
        PurePosixPath(os.fsdecode(row["rel"])),
    )


class _ImageWorker:
    """(Ray Data actor.) Loads the models once, then processes and writes image after image."""

    def __init__(
        self,
        build: Callable[[], BatchRunner],
        fingerprint: str,
        marker: tuple[str, str],
        threads: int,
    ) -> None:
        _check_marker(marker)
        self.marker = Path(marker[0])
        import torch

        torch.set_num_threads(threads)
        self.runner = build()
        if self.runner.fingerprint != fingerprint:
            raise ConfigError(
                "a Ray worker loaded models that differ from the planned run's (settings "
                f"fingerprint {self.runner.fingerprint}, planned {fingerprint})",
                hint="give every node the same weight files and samadapter version",
            )
        self.warnings: list[str] = []
        self.runner.on_warning = self.warnings.append

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        done: dict[str, list[Any]] = {"index": [], "record": []}
        for i in range(len(batch["index"])):
            row = {key: values[i] for key, values in batch.items()}
            item = _item(row)
            record = ImageRecord(item.file_name, str(item.rel), "running")
            self.warnings.clear()
            if not self.marker.exists():  # the driver stopped the run (Ctrl-C): start nothing
                record.status = "interrupted"
            elif row["error"]:
                record.status, record.error = "failed", str(row["error"])
            else:
                record.seconds["read"] = float(row["read"])
                notes = json.loads(str(row["notes"]))
                record.warnings.extend(notes)
                self.warnings.extend(notes)
                shape = (int(row["height"]), int(row["width"]), 3)
                image = np.frombuffer(row["pixels"], dtype=np.uint8).reshape(shape).copy()
                identity = json.loads(str(row["identity"]))
                self.runner.process_image(item, image, record, identity)
            payload = {"record": dataclasses.asdict(record), "warnings": list(self.warnings)}
            done["index"].append(int(row["index"]))
            done["record"].append(json.dumps(payload))
        return done


class RayBatch:
    """Runs a batch on Ray with the semantics of :meth:`BatchRunner.run`.

    Args:
        build: makes the run's runner with its models loaded (called once on a worker to learn
            the settings fingerprint, then once per actor); it must be picklable (a function
            or closure over plain settings) and give the same runner wherever it runs.
        options: the cluster and the actor pool.
        on_warning: receives the workers' warning lines (an image downscaled, a mask left out).
        on_ready: called with a line once the models are known (how many actors, where).
    """

    def __init__(
        self,
        build: Callable[[], BatchRunner],
        options: RayOptions | None = None,
        on_warning: Callable[[str], None] | None = None,
        on_ready: Callable[[str], None] | None = None,
    ) -> None:
        self.build = build
        self.options = options or RayOptions()
        self.on_warning = on_warning or (lambda _: None)
        self.on_ready = on_ready or (lambda _: None)
        self.runner: BatchRunner | None = None
        self.pool: PoolSize | None = None

    def run(
        self,
        items: Sequence[InputImage],
        on_stage: Stage | None = None,
        on_image: OnImage | None = None,
    ) -> BatchSummary:
        """Process every image that is not finished on the cluster; then write the records.

        See :meth:`BatchRunner.run` (same arguments, same outputs, same summary). An image
        whose worker died more than ``max_retries`` times is a failure record.

        Raises:
            ConfigError: Ray is missing, the cluster cannot be reached, a worker's models
                differ from the plan.
            OutputError: the output plan is refused, or ``-o`` is not shared with a worker.
            WeightsError: a worker lacks weights (raised as the worker raised it).
        """
        ray = _import_ray()
        started = connect(self.options.address, self.options.verbose)
        try:
            self.pool = pool_size(self.options, ray.cluster_resources())
            self.runner = self._describe(ray)
            self.on_ready(
                f"Ray: {self.pool.actors} actor(s) of {self.pool.cpus:g} CPU"
                + (f" and {self.pool.gpus:g} GPU" if self.pool.gpus else "")
                + f" on {len(ray.nodes())} node(s)"
            )
            return self.runner.run(items, on_stage, on_image, executor=self._execute)
        finally:
            if started:
                ray.shutdown()

    def _describe(self, ray: Any) -> BatchRunner:
        assert self.pool is not None
        # max_calls=1: its process exits after, and the models it loaded leave the node.
        task = ray.remote(max_calls=1)(_describe).options(
            num_cpus=min(self.pool.cpus, 1.0),
            num_gpus=self.pool.gpus,
            runtime_env=_worker_env(),
            max_retries=self.options.max_retries,
        )
        return cast(BatchRunner, _get(ray, task.remote(self.build)))

    def _execute(
        self,
        todo: Sequence[InputImage],
        records: dict[InputImage, ImageRecord],
        stage: Stage,
        on_image: OnImage | None,
    ) -> KeyboardInterrupt | None:
        """The Ray :data:`~samadapter.batch.Executor` (see :meth:`run`)."""
        if not todo:
            return None
        ray = _import_ray()
        assert self.runner is not None and self.pool is not None
        runner, pool = self.runner, self.pool
        out = runner.options.out_dir
        marker = out / f"{_MARKER_PREFIX}{secrets.token_hex(4)}.tmp"
        token = secrets.token_hex(16)
        marker.write_text(token, encoding="utf-8")
        interrupted: KeyboardInterrupt | None = None
        rows: Iterator[dict[str, Any]] | None = None
        try:
            _check_nodes(ray, (str(marker), token))
            for item in todo:
                records[item] = ImageRecord(item.file_name, str(item.rel), "running")
            dataset = self._dataset(ray, todo, (str(marker), token))
            stage(f"{pool.actors} Ray actor(s)")
            rows = iter(dataset.iter_rows())
            for row in rows:
                payload = json.loads(row["record"])
                record = ImageRecord(**payload["record"])
                records[todo[int(row["index"])]] = record
                for line in payload["warnings"]:
                    self.on_warning(line)
                if on_image:
                    on_image(record, None)
        except KeyboardInterrupt as e:
            interrupted = e
            marker.unlink(missing_ok=True)  # actors still holding images start none of them
        except Exception as e:
            cause = _cause(e)
            if isinstance(cause, SamAdapterError):
                raise cause from None
            raise
        finally:
            if rows is not None:
                with contextlib.suppress(Exception):
                    rows.close()  # type: ignore[attr-defined]  # stops the dataset's execution
            marker.unlink(missing_ok=True)
        if interrupted is None:
            for item in todo:  # a block Ray gave up on after its workers died
                record = records[item]
                if record.status == "running":
                    record.status = "failed"
                    record.error = (
                        "its Ray worker died while processing it, also when it was tried again "
                        "(out of memory? see Ray's logs under /tmp/ray; rerun to try again)"
                    )
                    if on_image:
                        on_image(record, None)
        return interrupted

    def _dataset(self, ray: Any, todo: Sequence[InputImage], marker: tuple[str, str]) -> Any:
        assert self.runner is not None
        runner = self.runner
        context = ray.data.DataContext.get_current()
        context.max_errored_blocks = len(todo)  # a lost image is a failure record, not an abort
        context.actor_init_max_retries = 0
        identities = [json.dumps(runner.planned_identity(item)) for item in todo]
        paths = ray.data.from_items(
            [
                {
                    "index": i,
                    "path": _encode(item.path),
                    "root": _encode(item.root),
                    "rel": _encode(item.rel),
                    "identity": identities[i],
                }
                for i, item in enumerate(todo)
            ],
            override_num_blocks=min(len(todo), 200),
        )
        env = _worker_env()
        decoded = paths.map(
            _decode_row, fn_kwargs={"reader": runner}, num_cpus=READ_CPUS, runtime_env=env
        )
        with warnings.catch_warnings():  # Ray 2.60 deprecates the retry arguments below, but
            # its defaults retry an image that kills its worker forever; they are kept.
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._actors(ray, decoded, marker)

    def _actors(self, ray: Any, decoded: Any, marker: tuple[str, str]) -> Any:
        assert self.runner is not None and self.pool is not None
        pool = self.pool
        return decoded.map_batches(
            _ImageWorker,
            batch_size=1,
            batch_format="numpy",
            # One image at a time per actor: an image queued behind one that kills the worker
            # would otherwise die with it and spend its retries on someone else's crash.
            compute=ray.data.ActorPoolStrategy(
                min_size=1, max_size=pool.actors, max_tasks_in_flight_per_actor=1
            ),
            fn_constructor_kwargs={
                "build": self.build,
                "fingerprint": self.runner.fingerprint,
                "marker": marker,
                "threads": pool.threads,
            },
            num_cpus=pool.cpus,
            num_gpus=pool.gpus,
            runtime_env=_worker_env(),
            max_restarts=-1,
            max_task_retries=self.options.max_retries,
        )


def _check_nodes(ray: Any, marker: tuple[str, str], always: bool = False) -> None:
    """Check on every alive node that ``-o`` is the driver's folder (the marker file); not
    needed (unless ``always``) when the cluster is the driver's machine alone."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    nodes = [node["NodeID"] for node in ray.nodes() if node.get("Alive")]
    if nodes == [here] and not always:
        return  # a Ray of this machine alone sees the driver's files
    check = ray.remote(_check_marker)
    calls = [
        check.options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
        ).remote(marker)
        for node in nodes
    ]
    for call in calls:
        _get(ray, call)


def _get(ray: Any, ref: Any) -> Any:
    """``ray.get``, re-raising a worker's :class:`SamAdapterError` as itself (one line)."""
    try:
        return ray.get(ref)
    except Exception as e:
        cause = _cause(e)
        if isinstance(cause, SamAdapterError):
            raise cause from None
        raise


def _cause(error: BaseException) -> BaseException:
    """The first :class:`SamAdapterError` in a Ray error's chain of causes (else ``error``)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, SamAdapterError) and not hasattr(current, "cause"):
            return current  # the worker's own error, not Ray's wrapper of it
        stack.extend([getattr(current, "cause", None), current.__cause__, current.__context__])
    return error

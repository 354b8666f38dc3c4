"""The page's work queue: one worker thread runs the model jobs in order, one at a time.

Each job is at most one image's work (SAM + CLIP for one photo, or a relabel), so a request
waits at most for the jobs ahead of it, and the page shows its position. A run's relabel runs
beside the queue (``samadapter relabel`` in a child process), one at a time.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from samadapter.errors import SamAdapterError

KEPT_JOBS = 256
"""Finished jobs remembered (the oldest are forgotten first)."""


@dataclass
class Job:
    """One piece of work and what became of it.

    Attributes:
        id: the page's handle.
        kind: what it does (``photo``, ``label``, ``run-relabel``).
        state: ``queued``, ``running``, ``done`` or ``error``.
        result: the JSON-able result when done.
        error: one line for the page when it failed (never a traceback).
        progress: the latest progress line.
    """

    id: str
    kind: str
    work: Callable[[Job], Any] = field(repr=False)
    state: str = "queued"
    result: Any = None
    error: str | None = None
    progress: str = ""
    started: float = 0.0
    finished: float = 0.0


def describe_error(error: BaseException) -> str:
    """One line for the page: a user-fixable error as the CLI prints it; anything else as an
    internal error (its traceback goes to the server's stderr, never to the page)."""
    if isinstance(error, SamAdapterError):
        return str(error)
    print("samadapter app: internal error", file=sys.stderr)
    traceback.print_exception(error, file=sys.stderr)
    text = str(error).splitlines()[0] if str(error) else ""
    return f"internal error ({type(error).__name__}{': ' + text if text else ''}); see the log"


class JobQueue:
    """A FIFO of model jobs served by one worker thread, plus one side job at a time."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: deque[Job] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._side: Job | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name="samadapter-app-worker")
        self._worker.daemon = True
        self._worker.start()

    def submit(self, kind: str, work: Callable[[Job], Any]) -> Job:
        """Queue ``work(job)``; its return value becomes the job's result."""
        with self._cond:
            job = self._register(kind, work)
            self._pending.append(job)
            self._cond.notify()
        return job

    def run_beside(self, kind: str, work: Callable[[Job], Any]) -> Job:
        """Run ``work(job)`` on its own thread, beside the queue (one such job at a time).

        Raises:
            SamAdapterError: another side job is still running.
        """
        with self._cond:
            if self._side is not None and self._side.state in ("queued", "running"):
                raise SamAdapterError(
                    "a run relabel is already running", hint="wait for it to finish"
                )
            job = self._register(kind, work)
            self._side = job
        thread = threading.Thread(target=self._run, args=(job,), name="samadapter-app-side")
        thread.daemon = True
        thread.start()
        return job

    def _register(self, kind: str, work: Callable[[Job], Any]) -> Job:
        job = Job(str(next(self._ids)), kind, work)
        self._jobs[job.id] = job
        while len(self._jobs) > KEPT_JOBS:
            oldest = next(iter(self._jobs.values()))
            if oldest.state in ("queued", "running"):
                break
            self._jobs.popitem(last=False)
        return job

    def status(self, job_id: str) -> dict[str, Any] | None:
        """The job's state for the page: ``position`` is 1 for the next job to run, 0 once
        running; ``None`` for an unknown id."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            position = 0
            if job.state == "queued":
                position = next((i + 1 for i, j in enumerate(self._pending) if j is job), 0)
            return {
                "id": job.id,
                "kind": job.kind,
                "state": job.state,
                "position": position,
                "ahead": max(0, position - 1) + (1 if position and self._busy() else 0),
                "progress": job.progress,
                "result": job.result if job.state == "done" else None,
                "error": job.error,
            }

    def _busy(self) -> bool:
        return any(j.state == "running" and j is not self._side for j in self._jobs.values())

    def queued(self) -> int:
        """Jobs waiting (not counting the one running)."""
        with self._cond:
            return len(self._pending)

    def close(self) -> None:
        """Stop the worker after the job it is running (queued jobs are dropped)."""
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._pending.popleft()
                job.state = "running"
            self._run(job)

    def _run(self, job: Job) -> None:
        job.state, job.started = "running", time.perf_counter()
        try:
            result = job.work(job)
        except BaseException as e:  # the page gets one line, the worker lives on
            job.error, job.state = describe_error(e), "error"
            if not isinstance(e, Exception):
                raise
        else:
            job.result, job.state = result, "done"
        finally:
            job.finished = time.perf_counter()

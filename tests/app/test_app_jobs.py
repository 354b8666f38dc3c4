"""The page's work queue (samadapter/app/jobs.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from samadapter.app.jobs import Job, JobQueue
from samadapter.errors import ImageError, SamAdapterError


def wait(queue: JobQueue, job: Job, timeout: float = 10.0) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = queue.status(job.id)
        assert status is not None
        if status["state"] in ("done", "error"):
            return status
        time.sleep(0.01)
    raise AssertionError(f"job {job.id} did not finish")


def test_jobs_run_in_order_one_at_a_time_with_visible_positions() -> None:
    queue = JobQueue()
    gate = threading.Event()
    order: list[str] = []

    def blocked(job: Job) -> str:
        gate.wait(10)
        order.append("a")
        return "a"

    first = queue.submit("photo", blocked)
    while queue.status(first.id)["state"] != "running":  # type: ignore[index]
        time.sleep(0.01)
    second = queue.submit("label", lambda job: order.append("b") or "b")
    third = queue.submit("label", lambda job: order.append("c") or "c")
    assert queue.status(first.id)["position"] == 0  # type: ignore[index]
    s2, s3 = queue.status(second.id), queue.status(third.id)
    assert (s2["state"], s2["position"], s2["ahead"]) == ("queued", 1, 1)  # type: ignore[index]
    assert (s3["state"], s3["position"], s3["ahead"]) == ("queued", 2, 2)  # type: ignore[index]
    assert queue.queued() == 2
    gate.set()
    assert wait(queue, third)["result"] == "c"
    assert order == ["a", "b", "c"]
    assert queue.status("999") is None
    queue.close()


def test_errors_are_one_line_and_the_worker_lives_on(capsys: pytest.CaptureFixture[str]) -> None:
    queue = JobQueue()

    def user_error(job: Job) -> None:
        raise ImageError("x.png is corrupt", hint="re-export it")

    def bug(job: Job) -> None:
        raise RuntimeError("boom\nsecond line")

    assert wait(queue, queue.submit("photo", user_error))["error"] == (
        "x.png is corrupt (re-export it)"
    )
    status = wait(queue, queue.submit("photo", bug))
    assert status["state"] == "error"
    assert status["error"] == "internal error (RuntimeError: boom); see the log"
    assert "Traceback" in capsys.readouterr().err  # the trace goes to the server's log only
    assert wait(queue, queue.submit("label", lambda job: 7))["result"] == 7
    queue.close()


def test_one_side_job_at_a_time() -> None:
    queue = JobQueue()
    gate = threading.Event()
    side = queue.run_beside("run-relabel", lambda job: gate.wait(10))
    with pytest.raises(SamAdapterError, match="already running"):
        queue.run_beside("run-relabel", lambda job: None)
    # the queue is not blocked by the side job
    assert wait(queue, queue.submit("label", lambda job: "quick"))["result"] == "quick"
    gate.set()
    assert wait(queue, side)["state"] == "done"
    assert wait(queue, queue.run_beside("run-relabel", lambda job: 1))["result"] == 1
    queue.close()

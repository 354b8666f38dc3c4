"""The batch commands' runner: the models here, or a Ray cluster with ``--ray``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from samadapter.cli.common import console, print_warning

if TYPE_CHECKING:
    from samadapter.batch import BatchRunner
    from samadapter.batch.ray_runner import RayBatch


def batch_runner(
    build: Callable[[], BatchRunner],
    ray: str | None,
    *,
    ray_actors: int | None = None,
    threads: int | None = None,
    verbose: bool = False,
    quiet: bool = False,
    ready: Callable[[BatchRunner, float], str] | None = None,
) -> BatchRunner | RayBatch:
    """What runs a batch command's images.

    Args:
        build: loads the models and makes the command's runner; with ``ray`` it runs on the
            cluster's workers instead (so it must be picklable: a closure over settings).
        ray: the ``--ray`` address, or ``None`` to run here.
        ray_actors: ``--ray-actors``.
        threads: ``--threads``; with ``ray``, the CPUs (and torch threads) of each actor.
        verbose: keep Ray's own log lines.
        quiet: print nothing but errors.
        ready: the line printed once the models are loaded here (given the runner and the
            seconds it took).
    """
    if ray is None:
        t0 = time.perf_counter()
        runner = build()
        if ready is not None and not quiet:
            console.print(ready(runner, time.perf_counter() - t0))
        return runner
    from samadapter.batch.ray_runner import RayBatch, RayOptions

    options = RayOptions(
        address=ray, actors=ray_actors, cpus_per_actor=threads or None, verbose=verbose
    )
    return RayBatch(
        build, options, on_warning=print_warning, on_ready=None if quiet else console.print
    )

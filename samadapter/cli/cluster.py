"""The batch commands' runner: the models here, or a Ray cluster with ``--ray``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from samadapter.cli.common import console, print_warning
from samadapter.cli.options import RAY_PANEL, Flag, QuietOpt, ThreadsOpt, flag, flag_group

if TYPE_CHECKING:
    from samadapter.batch import BatchRunner
    from samadapter.batch.ray_runner import RayBatch


@dataclass(frozen=True)
class BatchFlags:
    """How a batch command runs (``--threads``, ``--quiet``, ``--ray``, ``--ray-actors``,
    ``--verbose``).

    Attributes:
        threads: CPU threads for torch; with ``ray``, the CPUs (and torch threads) of each actor.
        quiet: print nothing but errors.
        ray: the ``--ray`` address, or ``None`` to run here.
        ray_actors: most model actors with ``ray``.
        verbose: keep Ray's own log lines.
    """

    threads: int | None = None
    quiet: bool = False
    ray: str | None = None
    ray_actors: int | None = None
    verbose: bool = False

    @property
    def progress(self) -> bool:
        """Whether model loading shows progress (here, and not quiet)."""
        return not (self.quiet or self.ray)

    def runner(
        self, build: Callable[[], BatchRunner], ready: Callable[[Any, float], str]
    ) -> BatchRunner | RayBatch:
        """What runs a batch command's images.

        Args:
            build: loads the models and makes the command's runner; with ``ray`` it runs on the
                cluster's workers instead (so it must be picklable: a closure over settings).
            ready: the line printed once the models are loaded here (given the runner and the
                seconds it took).
        """
        if self.ray is None:
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            t0 = time.perf_counter()
            runner = build()
            if not self.quiet:
                console.print(ready(runner, time.perf_counter() - t0))
            return runner
        from samadapter.batch.ray_runner import RayBatch, RayOptions

        options = RayOptions(
            address=self.ray,
            actors=self.ray_actors,
            cpus_per_actor=self.threads or None,
            verbose=self.verbose,
        )
        return RayBatch(
            build, options, on_warning=print_warning, on_ready=None if self.quiet else console.print
        )


BATCH_FLAGS: dict[str, Flag] = {
    "threads": Flag(ThreadsOpt),
    "quiet": Flag(QuietOpt, False),
    "ray": flag(
        str | None,
        None,
        "--ray",
        metavar="ADDRESS",
        panel=RAY_PANEL,
        help="Spread the images over a Ray cluster: auto (the cluster `ray start` made, or "
        "RAY_ADDRESS), HOST:6379, ray://HOST:10001, or local (a Ray on this machine alone). "
        "The inputs and --output must be on a filesystem every node mounts.",
    ),
    "ray_actors": flag(
        int | None,
        min=1,
        panel=RAY_PANEL,
        help="Most model actors with --ray (each loads the models once). "
        "[default: one per GPU, else one per 4 CPUs]",
    ),
    "verbose": flag(
        bool, False, panel=RAY_PANEL, help="With --ray, also show Ray's own log lines."
    ),
}
"""The flags of :class:`BatchFlags`."""

batch_flags = flag_group("batch", BATCH_FLAGS, BatchFlags)
"""Give a command :data:`BATCH_FLAGS` in place of its ``batch`` parameter, a
:class:`BatchFlags`."""


def ready_line(classes: int, images: int) -> Callable[[Any, float], str]:
    """The line a batch command prints once its models are loaded (given the runner and the
    seconds it took)."""
    return lambda built, seconds: (
        f"models ready in {seconds:.1f} s on {built.segmenter.device}; {classes} classes, "
        f"{images} image(s)"
    )

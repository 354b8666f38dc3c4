"""Console and error printing shared by the CLI commands.

Progress bars and every human message go to stderr (:data:`console`), so ``samadapter ... >
log.txt`` still shows the progress and a pipe's stdout carries only a command's own product
(:data:`out_console`: tables of ``benchmark``, ``--version``). Neither console wraps long lines
(``soft_wrap``): a path in a log file or a pipe stays whole whatever the width.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec

import typer
from rich.console import Console
from rich.markup import escape

from samadapter.errors import SamAdapterError

P = ParamSpec("P")

console = Console(stderr=True, soft_wrap=True)
"""Progress, status lines and summaries (stderr)."""
out_console = Console(soft_wrap=True)
"""A command's own output (stdout)."""
err_console = console


def print_error(error: SamAdapterError | str) -> None:
    """One red line on stderr: ``error: <what> (<how to fix>)``."""
    err_console.print(
        f"[bold red]error:[/] {escape(str(error))}", markup=True, highlight=False, soft_wrap=True
    )


def print_warning(text: str) -> None:
    """One yellow line on stderr: ``warning: <text>``."""
    err_console.print(
        f"[bold yellow]warning:[/] {escape(text)}", markup=True, highlight=False, soft_wrap=True
    )


def command(run: Callable[P, int]) -> Callable[P, None]:
    """A Typer command from a function that returns its exit code; a
    :class:`~samadapter.errors.SamAdapterError` it raises is one error line and its exit code."""

    @functools.wraps(run)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            code = run(*args, **kwargs)
        except SamAdapterError as e:
            print_error(e)
            raise typer.Exit(e.exit_code) from None
        raise typer.Exit(code)

    return wrapper

"""Console and error printing shared by the CLI commands."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from samadapter.errors import SamAdapterError

console = Console()
err_console = Console(stderr=True)


def print_error(error: SamAdapterError | str) -> None:
    """One red line on stderr: ``error: <what> (<how to fix>)``."""
    err_console.print(f"[bold red]error:[/] {escape(str(error))}", markup=True, highlight=False,
                      soft_wrap=True)


def print_warning(text: str) -> None:
    """One yellow line on stderr: ``warning: <text>``."""
    err_console.print(f"[bold yellow]warning:[/] {escape(text)}", markup=True, highlight=False,
                      soft_wrap=True)

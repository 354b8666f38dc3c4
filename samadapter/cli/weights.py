"""``samadapter weights``: list, download and verify the model files of the registry."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from samadapter.cli.common import command
from samadapter.cli.help import HelpCommand
from samadapter.cli.options import WeightsDirOpt
from samadapter.errors import SamAdapterError
from samadapter.weights import (
    REGISTRY,
    find_file,
    get_spec,
    resolve_weights,
    search_dirs,
    verify_file,
)

app = typer.Typer(
    rich_markup_mode=None,
    name="weights",
    help="List, download and verify model weights (SAM, CLIP, Mask-Adapter).",
    no_args_is_help=True,
    add_completion=False,
)


def _human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover - loop always returns


@app.command("list", cls=HelpCommand)
def list_weights(
    weights_dir: WeightsDirOpt = None,
    as_table: Annotated[
        bool | None,
        typer.Option(
            "--table/--plain",
            show_default=False,
            help="A table, or one tab-separated line per entry. [default: a table on a terminal, "
            "plain lines when piped or redirected]",
        ),
    ] = None,
) -> None:
    """Show every registry entry, its file, size, whether it is present, and notes.

    On a terminal this is a table; piped or redirected, one tab-separated line per entry (name,
    kind, size, present, file, supported, note) under a header line, never wrapped, for grep and
    cut.
    """
    listed = [(spec, find_file(spec, weights_dir)) for spec in REGISTRY.values()]
    if not (sys.stdout.isatty() if as_table is None else as_table):
        print("\t".join(("name", "kind", "size", "present", "file", "supported", "note")))
        for spec, path in listed:
            present, supported = ("yes" if path else "no"), ("yes" if spec.supported else "no")
            shown = str(path) if path else spec.filename
            size = _human_size(spec.size_bytes)
            print("\t".join((spec.name, spec.kind, size, present, shown, supported, spec.note)))
        return
    table = Table(title="samadapter weights")
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("kind", no_wrap=True)
    table.add_column("size", no_wrap=True, justify="right")
    table.add_column("present", no_wrap=True)
    table.add_column("file", overflow="fold")
    table.add_column("supported", no_wrap=True)
    for spec, path in listed:
        present = "[green]yes[/green]" if path else "[dim]no[/dim]"
        shown = escape(str(path)) if path else escape(spec.filename)
        supported = "yes" if spec.supported else "[yellow]no[/yellow]"
        table.add_row(spec.name, spec.kind, _human_size(spec.size_bytes), present, shown, supported)
    console = Console()
    console.print(table)
    for spec, _ in listed:
        if spec.note:
            console.print(f"[bold]{escape(spec.name)}[/bold]: {escape(spec.note)}")
    folders = ", ".join(str(folder) for folder in search_dirs(weights_dir))
    console.print(f"[dim]searched: {escape(folders)}[/dim]")


@app.command("download", cls=HelpCommand)
@command
def download_weights(
    names: Annotated[list[str], typer.Argument(help="Registry names, e.g. sam_vit_b demo.")],
    weights_dir: WeightsDirOpt = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show progress bars.")
    ] = True,
) -> int:
    """Download weight files that are not present yet (checksums verified)."""
    paths = resolve_weights(names, weights_dir=weights_dir, progress=progress)
    console = Console(soft_wrap=True)
    for name, path in paths.items():
        console.print(f"{escape(name)}: {escape(str(path))}")
    return 0


@app.command("verify", cls=HelpCommand)
@command
def verify_weights(
    names: Annotated[
        list[str] | None, typer.Argument(help="Registry names (default: all supported).")
    ] = None,
    weights_dir: WeightsDirOpt = None,
) -> int:
    """Check present weight files: OK, BAD, unverified or missing. Exit 1 if any is BAD.

    A file is OK when it matches the registry's published checksum or, for files without one,
    the sha256 recorded when samadapter downloaded it; a file with neither is "unverified".
    """
    specs = (
        [get_spec(name) for name in names]
        if names
        else [spec for spec in REGISTRY.values() if spec.supported]
    )
    console = Console(soft_wrap=True)
    bad = 0
    for spec in specs:
        path = find_file(spec, weights_dir)
        if path is None:
            console.print(f"[dim]missing[/dim] {spec.name}: {escape(spec.filename)}")
            continue
        try:
            checked = verify_file(path, spec)
        except SamAdapterError as err:
            bad += 1
            console.print(f"[red]BAD[/red]     {spec.name}: {escape(err.message)}")
            continue
        if checked == "unverified":
            console.print(
                f"[yellow]unverified[/yellow] {spec.name}: {escape(str(path))} (no "
                "published checksum, and not downloaded by samadapter: nothing to "
                "compare it with)"
            )
            continue
        console.print(f"[green]OK[/green]      {spec.name}: {escape(str(path))} ({checked})")
    return 1 if bad else 0

"""``samadapter vocab``: list the builtin vocabularies and show their classes."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from samadapter.cli.help import HelpCommand
from samadapter.errors import VocabularyError
from samadapter.vocab import BUILTIN, Vocabulary, load_builtin, read_classes_file

app = typer.Typer(
    rich_markup_mode=None,
    help="Class lists: the builtin benchmark vocabularies (--vocab NAME) and their classes.",
    no_args_is_help=True,
)


def _fail(err: VocabularyError) -> typer.Exit:
    """Print ``error: ...`` in red on one stderr line; return the exit to raise."""
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


@app.command("list", cls=HelpCommand)
def list_vocabs() -> None:
    """List the builtin vocabularies: name, number of classes, description."""
    table = Table(title="builtin vocabularies (use with --vocab NAME)")
    table.add_column("name", style="bold")
    table.add_column("classes", justify="right")
    table.add_column("description")
    for spec in BUILTIN.values():
        table.add_row(spec.name, str(spec.num_classes), spec.description)
    Console().print(table)


def _load(name: str) -> Vocabulary:
    """A builtin by name, else an existing class file by path (builtin errors win otherwise)."""
    key = name.strip().lower().replace("_", "-")
    if key not in BUILTIN and Path(name).is_file():
        return read_classes_file(name)
    return load_builtin(name)


@app.command("show", cls=HelpCommand)
def show(
    name: str = typer.Argument(..., help="A builtin vocabulary (see 'list') or a class file."),
    as_json: bool = typer.Option(
        False, "--json", help="Print {name, classes, ids} as JSON instead of text."
    ),
) -> None:
    """Show the classes of a vocabulary: id, display name and synonyms of each."""
    try:
        vocab = _load(name)
    except VocabularyError as err:
        raise _fail(err) from None
    if as_json:
        typer.echo(json.dumps(vocab.to_dict(), indent=2, ensure_ascii=False))
        return
    spec = BUILTIN.get(vocab.name or "")
    title = f"{vocab.name or name}: {len(vocab)} classes"
    typer.echo(f"{title}, {spec.description}" if spec else title)
    width = max(len(str(i)) for i in vocab.ids)
    for class_id, names in zip(vocab.ids, vocab.classes, strict=True):
        line = f"{class_id:>{width}}  {names[0]}"
        if len(names) > 1:
            line += f"  ({', '.join(names[1:])})"
        typer.echo(line)

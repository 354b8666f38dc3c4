"""``samadapter`` command line: thin Typer commands over the Python API."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from samadapter import __version__
from samadapter.cli.app import serve_app
from samadapter.cli.benchmark import benchmark
from samadapter.cli.classify import classify
from samadapter.cli.common import out_console, print_error
from samadapter.cli.help import HelpCommand
from samadapter.cli.relabel import relabel
from samadapter.cli.segment import segment
from samadapter.cli.train import train
from samadapter.cli.vocab import app as vocab_app
from samadapter.cli.weights import app as weights_app

app = typer.Typer(
    name="samadapter",
    help="Open-vocabulary segmentation: SAM cuts out every object, CLIP + Mask-Adapter names it "
    "from YOUR class list.\n\nStart with: samadapter segment photo.jpg --classes "
    '"cat,sofa|couch"',
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click layout: readable at 80 columns (cli/help.py)
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command(no_args_is_help=True, cls=HelpCommand)(segment)
app.command(no_args_is_help=True, cls=HelpCommand)(relabel)
app.command(no_args_is_help=True, cls=HelpCommand)(classify)
app.command(no_args_is_help=True, cls=HelpCommand)(benchmark)
app.command(no_args_is_help=True, cls=HelpCommand)(train)
app.command("app", cls=HelpCommand)(serve_app)
app.add_typer(weights_app, name="weights", help="List, download and verify model weights.")
app.add_typer(vocab_app, name="vocab", help="Built-in class lists (ADE20K, COCO, Pascal, ...).")


def _version(value: bool) -> None:
    if value:
        out_console.print(f"samadapter {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Open-vocabulary segmentation with SAM + CLIP + Mask-Adapter."""


def undecodable_argument(argv: list[str]) -> str | None:
    """The first argument that is not valid UTF-8, shown with its odd bytes as ``\\xNN``.

    Python hands over command-line bytes that are not UTF-8 as lone surrogates; such a string
    cannot be written into any JSON, XML or log line later, so it is refused at the door.
    """
    for arg in argv:
        if any("\udc80" <= ch <= "\udcff" for ch in arg):
            raw = arg.encode("utf-8", "surrogateescape")
            return raw.decode("utf-8", "backslashreplace")
    return None


def main() -> None:
    """Console-script entry point."""
    bad = undecodable_argument(sys.argv[1:])
    if bad is not None:
        print_error(
            f"command-line argument '{bad}' is not valid UTF-8 text; samadapter writes "
            "names into JSON and XML, which need UTF-8 (rename the file to a UTF-8 name, "
            "e.g. convmv -f latin1 -t utf8 --notest FILE, or retype the text)"
        )
        raise SystemExit(2)
    app(prog_name="samadapter")


if __name__ == "__main__":  # pragma: no cover
    main()

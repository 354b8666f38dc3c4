"""``samadapter app``: serve the local web page (see :mod:`samadapter.app`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from samadapter.cli.common import command, console, print_warning
from samadapter.cli.options import ConfigFlags, config_flags


@command
@config_flags(only=("preset", "weights_dir", "offline", "device"))
def serve_app(
    output: Annotated[
        Path | None,
        typer.Argument(
            metavar="OUTPUT_DIR",
            help="A run's --output folder to browse (optional).",
            show_default=False,
        ),
    ] = None,
    *,
    flags: ConfigFlags,
    host: Annotated[
        str,
        typer.Option(help="Address to listen on; 0.0.0.0 lets other machines in (a warning)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 7860,
) -> int:
    """Open a local web page: try classes on a photo, browse and relabel a run.

    The first run on a photo computes SAM and CLIP once; every later change of classes or keep
    rule only renames the kept masks. Needs no extra packages (`pip install samadapter[app]`
    adds none today).

    Example: samadapter app samadapter_out --preset fast
    """
    from samadapter.app.runs import RunFolder
    from samadapter.app.server import App, attach, is_loopback, make_server
    from samadapter.models import load_segmenter

    if output is not None:
        RunFolder(output)  # a wrong folder fails before the models load
    local = is_loopback(host)
    server = make_server(None, host, port)  # so does a busy port
    t0 = time.perf_counter()
    try:
        segmenter = load_segmenter(config=flags.config())
    except BaseException:
        server.server_close()
        raise
    app = App(segmenter, output, allow_open=local)
    attach(server, app)
    if not local:
        print_warning(
            f"listening on {host}: anyone who can reach this machine can use the page, its "
            "models and the run folder given; the page cannot open other folders"
        )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(
        f"models ready in {time.perf_counter() - t0:.1f} s; open "
        f"http://{shown}:{server.server_port} (Ctrl-C to stop)",
        highlight=False,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped", highlight=False)
    finally:
        server.server_close()
        app.close()
    return 0

"""``python -m pipeline view``: the run as an interactive map in the browser.

::

    python -m pipeline view --run-dir DIR [--port 8765] [--host 127.0.0.1]
    python -m pipeline view --run-dir DIR --export SITE/

The first builds the run's tile pyramid if it is missing or out of date and renders
the page (:func:`prepare`: :func:`pipeline.viewer.pyramid.build_pyramid` under the run
directory's lock, :mod:`pipeline.viewer.page`), then serves the map on the loopback
interface and prints its URL until Ctrl-C (:func:`serve_map`, :mod:`pipeline.viewer.server`;
another ``--host`` prints a warning and the addresses others can use). The second
writes the same map as a static folder (``index.html``, ``static/``, ``tiles/``) that
any static web host serves, into a new or empty folder or one of an earlier export
only, checked before the pyramid is built (:func:`export_map`, :mod:`pipeline.viewer.export`).
:func:`main` parses the settings and calls these steps. Nothing is fetched from the internet: BokehJS comes
from the installed ``bokeh`` package. The run directory may be a path or an
object-store URL (``--storage-option``); the tiles are then served from the object
store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from pipeline.program import command
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location
from pipeline.rundir.verified import finished_classification
from pipeline.viewer.export import export_site
from pipeline.viewer.page import Page, render_page
from pipeline.viewer.pyramid import Pyramid, build_pyramid
from pipeline.viewer.server import MapServer

logger = logging.getLogger(__name__)

__all__ = ["export_map", "prepare", "serve_map", "view_command"]


def view_command(run_dir: Path | str, storage_options: dict[str, Any] | None = None) -> str:
    """The command that shows a run's map (what ``run`` prints at its end).

    Parameters
    ----------
    run_dir : Path or str
        The run directory (a path or a URL).
    storage_options : dict, optional
        fsspec options of a URL run directory (screened: they hold no credentials).

    Returns
    -------
    str
        ``PROGRAM view --run-dir DIR [--storage-option KEY=VALUE ...]``, spelled by
        :func:`pipeline.program.command` (it works as printed in a new shell).
    """
    options = [
        word
        for key, value in (storage_options or {}).items()
        for word in ("--storage-option", f"{key}={value if isinstance(value, str) else json.dumps(value)}")
    ]
    return command("view", "--run-dir", run_dir, *options)


def prepare(
    run_dir: Location, *, echo: Any = print, rebuild: bool = False, threads: int | None = None, client: Any = None
) -> tuple[Pyramid, Page]:
    """Build (or reuse) the tile pyramid under the run's lock and render the page.

    Parameters
    ----------
    run_dir : Location
        The run directory.
    echo : callable
        Where progress lines go.
    rebuild : bool
        Rebuild the pyramid even when it is up to date.
    threads : int, optional
        Threads of Dask's threaded scheduler (when ``client`` is ``None``).
    client : distributed.Client, optional
        Build on this cluster instead.

    Returns
    -------
    tuple of (Pyramid, Page)
    """
    import dask

    from pipeline.rundir.lock import run_lock

    finished_classification(run_dir)  # before the lock: a folder without a run stays as it was
    with run_lock(run_dir, "view"), dask.config.set(num_workers=threads) if threads else contextlib.nullcontext():
        pyramid = build_pyramid(run_dir, client=client, echo=echo, rebuild=rebuild)
    return pyramid, render_page(pyramid, RunLayout(run_dir))


def export_map(pyramid: Pyramid, page: Page, site: Path | str, *, echo: Any = print) -> Path:
    """Write the map as a static folder (:func:`pipeline.viewer.export.export_site`) and say how to open it.

    Parameters
    ----------
    pyramid, page : Pyramid, Page
        What :func:`prepare` returns.
    site : Path or str
        The folder of ``--export``.
    echo : callable
        Where the closing line goes.

    Returns
    -------
    pathlib.Path
        The folder's ``index.html``.
    """
    index = export_site(pyramid, page, site)
    echo(
        f"map written to {site} ({page.objects} catalog objects): serve it with any static web server, e.g. "
        f"'{shlex.join([sys.executable, '-m', 'http.server', '-d', str(site)])}', or open {index}"
    )
    return index


def serve_map(pyramid: Pyramid, page: Page, run_dir: Location, *, host: str, port: int, echo: Any = print) -> None:
    """Serve the map until Ctrl-C (:class:`pipeline.viewer.server.MapServer`).

    Prints its URL, the addresses other machines can use, and on stderr a warning when
    it is visible to the network; Ctrl-C stops it (and returns).

    Parameters
    ----------
    pyramid, page : Pyramid, Page
        What :func:`prepare` returns.
    run_dir : Location
        The run directory (named in the first line).
    host : str
        Interface (``127.0.0.1``: this machine only).
    port : int
        Port (0: any free one).
    echo : callable
        Where the addresses go.

    Raises
    ------
    InputError
        The interface is unknown or the port is taken.
    """
    server = MapServer(pyramid, page, host=host, port=port)
    echo(f"map of {run_dir} ({page.objects} catalog objects) at {server.url}  (Ctrl-C to stop)")
    others = [url for url in server.urls if url != server.url]
    if others:
        echo(f"  from other machines: {', '.join(others)}")
    sys.stdout.flush()  # the addresses show now, whatever buffers the output
    if server.exposed:
        print(
            f"warning: serving on {host} port {server.port}: the map is visible to the network, to anyone who can "
            "reach this machine, with no authentication (--host 127.0.0.1 keeps it to this machine)",
            file=sys.stderr,
            flush=True,
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.httpd.server_close()

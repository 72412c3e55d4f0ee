"""``python -m pipeline view``: the run as an interactive map in the browser.

::

    python -m pipeline view --run-dir DIR [--port 8765] [--host 127.0.0.1]
    python -m pipeline view --run-dir DIR --export SITE/

The first builds the run's tile pyramid if it is missing or out of date
(:func:`pipeline.pyramid.build_pyramid`, under the run directory's lock), then serves
the map (:mod:`pipeline.view_page`) on the loopback interface and prints its URL
until Ctrl-C. The second writes the same map as a static folder (``index.html``,
``static/``, ``tiles/``) that any static web host serves. Nothing is fetched from the
internet: BokehJS comes from the installed ``bokeh`` package. The run directory may be
a path or an object-store URL (``--storage-option``); the tiles are then served from
the object store.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import logging
import re
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import InputError, RunError
from pipeline.layout import RunLayout
from pipeline.options import add_location_options, add_options, from_args, setting, storage_options_from
from pipeline.pyramid import Pyramid, build_pyramid
from pipeline.storage import Location
from pipeline.view_page import Page, render_page

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_PORT", "MapServer", "ViewSettings", "add_parser", "export_site", "main", "prepare",
           "view_command"]

#: Port of ``view`` unless ``--port`` says otherwise.
DEFAULT_PORT = 8765
_TILE_PATH = re.compile(r"^/tiles/([a-z0-9_-]+)/(\d+)/(\d+)/(\d+)\.png$")


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
        ``python -m pipeline view --run-dir DIR [--storage-option KEY=VALUE ...]``.
    """
    options = "".join(f" --storage-option {key}={json.dumps(value) if not isinstance(value, str) else value}"
                      for key, value in (storage_options or {}).items())
    return f"python -m pipeline view --run-dir {run_dir}{options}"


@dataclass(frozen=True)
class ViewSettings:
    """How ``view`` shows a run (its command-line options are generated from these
    fields, :mod:`pipeline.options`).

    Attributes
    ----------
    port : int
        Port to serve on (0: any free one).
    host : str
        Interface to serve on: loopback by default, so only this machine sees the map.
    export : Path, optional
        Write the map as a static folder here instead of serving it.
    rebuild : bool
        Rebuild the tile pyramid even if it is up to date.
    threads : int, optional
        Threads that build the tile pyramid (default: one per core).
    """

    port: int = setting(DEFAULT_PORT, help="port to serve on (0: any)")
    host: str = setting("127.0.0.1", help="interface to serve on (127.0.0.1: this machine only; 0.0.0.0: all)")
    export: Path | None = setting(None, metavar="SITE", help="write the map as a static folder instead of serving it")
    rebuild: bool = setting(False, help="rebuild the tile pyramid even if it is up to date")
    threads: int | None = setting(None, help="threads that build the tile pyramid (default: one per core)")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``view`` sub-command to an ``argparse`` sub-parsers object."""
    p = sub.add_parser("view", help="show a run as an interactive map in the browser (or export it as a static site)",
                       description="Serve the run's classification images, colour images, segmentation and catalog "
                                   "as a web map (offline: BokehJS from the installed bokeh package), or write it as "
                                   "a static folder with --export. Builds the tile pyramid on first use.")
    add_location_options(p, required=True)
    add_options(p, ViewSettings)
    return p


def prepare(run_dir: Location, *, echo: Any = print, rebuild: bool = False, threads: int | None = None,
            client: Any = None) -> tuple[Pyramid, Page]:
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

    from pipeline.lock import run_lock

    if not (run_dir / "manifest.json").exists():
        raise InputError(f"{run_dir}: not a run directory (manifest.json not found)")
    with run_lock(run_dir, "view"), dask.config.set(num_workers=threads) if threads else contextlib.nullcontext():
        pyramid = build_pyramid(run_dir, client=client, echo=echo, rebuild=rebuild)
    return pyramid, render_page(pyramid, RunLayout(run_dir))


def export_site(pyramid: Pyramid, page: Page, site: Path) -> Path:
    """Write the map as a static folder: ``index.html``, ``static/`` and ``tiles/``.

    Parameters
    ----------
    pyramid : Pyramid
        The run's tile pyramid (its tiles are copied).
    page : Page
        The rendered page.
    site : pathlib.Path
        The folder (created; its ``index.html``, ``static/`` and ``tiles/`` are replaced).

    Returns
    -------
    pathlib.Path
        ``site / "index.html"``.
    """
    site.mkdir(parents=True, exist_ok=True)
    for name in ("static", "tiles"):
        if (site / name).exists():
            shutil.rmtree(site / name)
    for url, source in page.static.items():
        (site / url).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, site / url)
    tiles = pyramid.tiles_location
    for layer in pyramid.layers:
        where = tiles / layer
        if where.is_local:
            shutil.copytree(where.path, site / "tiles" / layer)
        else:
            where.fs.get(where._key, str(site / "tiles" / layer), recursive=True)
    (site / "index.html").write_text(page.html, encoding="utf-8")
    return site / "index.html"


class MapServer:
    """Serves a map page, its static files and its tiles over HTTP (a background thread).

    Parameters
    ----------
    pyramid : Pyramid
        The tiles.
    page : Page
        The page.
    host : str
        Interface (``127.0.0.1``: this machine only).
    port : int
        Port (0: any free one).
    """

    def __init__(self, pyramid: Pyramid, page: Page, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        handler = _handler(pyramid, page)
        try:
            self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise InputError(f"cannot serve on {host}:{port} ({exc}); choose another --port") from exc
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's URL."""
        host, port = self.httpd.server_address[:2]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"

    def start(self) -> MapServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="map-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self.httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(pyramid: Pyramid, page: Page) -> type[http.server.BaseHTTPRequestHandler]:
    index = page.html.encode("utf-8")
    layers = set(pyramid.layers)
    tiles = pyramid.tiles_location

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            path = urlsplit(self.path).path
            if path in ("/", "/index.html"):
                return self._send(index, "text/html; charset=utf-8", cache=False)
            if path.lstrip("/") in page.static:
                source = page.static[path.lstrip("/")]
                kind = "text/css" if source.suffix == ".css" else "text/javascript"
                return self._send(source.read_bytes(), kind, cache=False)
            match = _TILE_PATH.match(path)
            if match and match[1] in layers:
                target = tiles / f"{match[1]}/{int(match[2])}/{int(match[3])}/{int(match[4])}.png"
                try:
                    data = target.path.read_bytes() if target.is_local else target.read_bytes()
                except (FileNotFoundError, OSError):
                    data = None
                if data is not None:
                    return self._send(data, "image/png", cache=True)
            self.send_error(404, "not found")

        def _send(self, data: bytes, kind: str, *, cache: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "max-age=86400" if cache else "no-cache")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server API
            logger.debug("%s %s", self.address_string(), format % args)

    return Handler


def main(args: argparse.Namespace) -> int:
    """Run the ``view`` sub-command; returns the exit code (0, 1 or 2)."""
    try:
        run_dir = Location(args.run_dir, storage_options_from(args.storage_option))
        settings = ViewSettings(**from_args(args, ViewSettings))
        pyramid, page = prepare(run_dir, rebuild=settings.rebuild, threads=settings.threads)
        if settings.export is not None:
            index = export_site(pyramid, page, settings.export)
            print(f"map written to {settings.export} ({page.objects} catalog objects): serve it with any static web "
                  f"server, e.g. 'python -m http.server -d {settings.export}', or open {index}")
            return 0
        server = MapServer(pyramid, page, host=settings.host, port=settings.port)
        print(f"map of {run_dir} ({page.objects} catalog objects) at {server.url}  (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
        finally:
            server.httpd.server_close()
        return 0
    except InputError as exc:
        logger.error("input error: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RunError, OSError) as exc:
        logger.error("view failed: %s", exc)
        print(f"view failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume building the map", file=sys.stderr)
        return 1

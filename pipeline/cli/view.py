"""``python -m pipeline view``: the command line of the interactive map.

The options are generated from :class:`~pipeline.settings.view.ViewSettings`; what the
command does is :mod:`pipeline.viewer.command` (prepare the tile pyramid and the page,
then serve the map or export it as a static folder).
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.cli.options import add_location_options, add_options, from_args, storage_options_from
from pipeline.errors import RunError
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location
from pipeline.settings.view import ViewSettings
from pipeline.viewer.command import export_map, prepare, serve_map
from pipeline.viewer.export import check_export_site

__all__ = ["add_parser", "main"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``view`` sub-command to an ``argparse`` sub-parsers object."""
    p = sub.add_parser(
        "view",
        help="show a run as an interactive map in the browser (or export it as a static site)",
        description="Serve the run's classification images, colour images, segmentation and catalog "
        "as a web map (offline: BokehJS from the installed bokeh package), or write it as "
        "a static folder with --export. Builds the tile pyramid on first use.",
    )
    add_location_options(p, required=True)
    add_options(p, ViewSettings)
    return p


def main(args: argparse.Namespace) -> int:
    """Run the ``view`` sub-command; returns the exit code (0, 1 or 2: :func:`pipeline.cli.exits.run_command`)."""
    from pipeline.cli.exits import run_command

    return run_command("view", lambda: _view(args))


def _view(args: argparse.Namespace) -> None:
    """Build the map, then serve or export it."""
    try:
        run_dir = Location(args.run_dir, storage_options_from(args.storage_option))
        settings = ViewSettings(**from_args(args, ViewSettings))
        if settings.export is not None:  # before the pyramid is built
            check_export_site(settings.export, RunLayout(run_dir).viewer)
        pyramid, page = prepare(run_dir, rebuild=settings.rebuild, threads=settings.threads)
        if settings.export is not None:
            export_map(pyramid, page, settings.export)
        else:
            serve_map(
                pyramid,
                page,
                run_dir,
                host=settings.host,
                port=settings.port,
                echo=lambda line: print(line, flush=True),
            )
    except OSError as exc:  # a port in use, a folder that cannot be written: one line, no traceback
        raise RunError(str(exc)) from exc

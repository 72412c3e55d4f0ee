"""Settings of ``view``: how the interactive map of a run is served or exported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.settings.fields import setting

__all__ = ["DEFAULT_PORT", "ViewSettings"]

#: Port of ``view`` unless ``--port`` says otherwise.
DEFAULT_PORT = 8765


@dataclass(frozen=True)
class ViewSettings:
    """How ``view`` shows a run (its command-line options are generated from these
    fields, :mod:`pipeline.cli.options`).

    Attributes
    ----------
    port : int
        Port to serve on (0: any free one).
    host : str
        Interface to serve on: loopback by default, so only this machine sees the map
        (another prints a warning and the addresses others can use).
    export : Path, optional
        Write the map as a static folder here instead of serving it: a new or empty
        folder, or one of an earlier export (:mod:`pipeline.viewer.export`).
    rebuild : bool
        Rebuild the tile pyramid even if it is up to date.
    threads : int, optional
        Threads that build the tile pyramid (default: one per core).
    """

    port: int = setting(DEFAULT_PORT, help="port to serve on (0: any)")
    host: str = setting(
        "127.0.0.1",
        help="interface to serve on (127.0.0.1: this machine only; 0.0.0.0: all, "
        "visible to the network without authentication)",
    )
    export: Path | None = setting(
        None,
        metavar="SITE",
        help="write the map as a static folder instead of serving it "
        "(a new or empty folder, or one of an earlier export)",
    )
    rebuild: bool = setting(False, help="rebuild the tile pyramid even if it is up to date")
    threads: int | None = setting(None, help="threads that build the tile pyramid (default: one per core)")

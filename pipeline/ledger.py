"""The ledger of a run: which tiles are finished, failed or pending.

Each tile's state lives in its own small file in ``<run>/ledger/``, written atomically
(on a file system: temporary file, then rename; in an object store: one upload, see
:mod:`pipeline.storage`), so concurrent workers never corrupt each other and a crash
never leaves a half-written record:

- ``<tile>.done``: the tile's partial statistics are safely in ``<run>/partials/``;
  written only *after* the partial file is in place, so a tile without this mark is
  not finished, whatever else exists;
- ``<tile>.failed``: the tile kept failing; holds the error and traceback;
- ``executions/<tile>.<n>``: one file per started execution (counts retries and
  recomputations).

The run directory may be a local (shared) path or an fsspec URL such as
``s3://bucket/run``; the driver reads the state of all tiles with a few listings
and concurrent reads rather than one request per tile.
"""

from __future__ import annotations

import io
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from morpheus_core.stats import WindowStats
from morpheus_core.tiling import Tile
from pipeline.storage import Location, as_location


def tile_id(tile: Tile) -> str:
    """Stable name of a tile, e.g. ``t0002_0013``."""
    return f"t{tile.index[0]:04d}_{tile.index[1]:04d}"


def atomic_write_bytes(path: Path | Location, data: bytes) -> None:
    """Write a file so that readers see either the old or the complete new content."""
    as_location(path).write_bytes(data)


def atomic_write_json(path: Path | Location, data: dict[str, Any]) -> None:
    """Atomically write a JSON document."""
    as_location(path).write_json(data)


def _stems(names: Iterable[str], suffix: str) -> set[str]:
    return {n[: -len(suffix)] for n in names if n.endswith(suffix) and not n.startswith(".")}


class Ledger:
    """Tile bookkeeping of one run directory.

    Parameters
    ----------
    run_dir : Path, str or Location
        The run directory: a local path, a URL (``s3://bucket/run``) or a
        :class:`~pipeline.storage.Location`.
    storage_options : mapping, optional
        fsspec options for a URL (ignored for a :class:`Location`, which has its own).
    """

    def __init__(self, run_dir: Path | str | Location,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        self.root = as_location(run_dir, storage_options)
        self.dir = self.root / "ledger"
        self.partials = self.root / "partials"
        self._executions = self.dir / "executions"
        for d in (self._executions, self.partials):
            d.makedirs()

    @property
    def run_dir(self) -> Path | str:
        """The run directory (a path, or a URL string)."""
        return self.root.path if self.root.is_local else self.root.url

    # -- written by workers -------------------------------------------------------
    def record_start(self, name: str) -> None:
        """Note that an execution of tile ``name`` has started."""
        marker = self._executions / f"{name}.{uuid.uuid4().hex[:12]}"
        marker.write_json({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})

    def save_partial(self, name: str, stats: WindowStats, info: dict[str, Any]) -> None:
        """Persist a tile's partial statistics, then mark the tile finished."""
        with (self.partials / f"{name}.npz").open_atomic() as fh:
            np.savez(fh, n=stats.n, mean=stats.mean, m2=stats.m2, votes=stats.votes)
        (self.dir / f"{name}.done").write_json(info)
        (self.dir / f"{name}.failed").remove()

    # -- read and written by the driver -------------------------------------------
    def load_partial(self, name: str) -> WindowStats:
        """The partial statistics of a finished tile."""
        where = self.partials / f"{name}.npz"
        source: Any = where.path if where.is_local else io.BytesIO(where.read_bytes())
        with np.load(source) as data:
            return WindowStats(data["n"], data["mean"], data["m2"], data["votes"])

    def is_finished(self, name: str) -> bool:
        """True if the tile's partial result is complete and marked done."""
        return (self.dir / f"{name}.done").exists() and (self.partials / f"{name}.npz").exists()

    def finished(self) -> set[str]:
        """All finished tiles (two listings, whatever the number of tiles)."""
        return _stems(self.dir.listdir(), ".done") & _stems(self.partials.listdir(), ".npz")

    def mark_failed(self, name: str, error: str, traceback_text: str) -> None:
        """Record that a tile kept failing."""
        (self.dir / f"{name}.failed").write_json(
            {"error": error, "traceback": traceback_text, "time": time.time()})

    def clear_failed(self) -> list[str]:
        """Forget failure records (before a resubmit); returns the tiles cleared."""
        names = sorted(_stems(self.dir.listdir(), ".failed"))
        for name in names:
            (self.dir / f"{name}.failed").remove()
        return names

    def failed(self) -> dict[str, dict[str, Any]]:
        """Failed tiles with their error records."""
        names = sorted(_stems(self.dir.listdir(), ".failed"))
        found = self.dir.read_many(f"{name}.failed" for name in names)
        return {name: json.loads(found[f"{name}.failed"]) for name in names
                if f"{name}.failed" in found}

    def done_info(self, name: str) -> dict[str, Any]:
        """The record a worker wrote when it finished the tile."""
        return (self.dir / f"{name}.done").read_json()

    def done_infos(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The records of several finished tiles (read concurrently from object
        stores); tiles without a record are left out."""
        found = self.dir.read_many(f"{name}.done" for name in names)
        return {key[: -len(".done")]: json.loads(value) for key, value in found.items()}

    def executions(self) -> dict[str, int]:
        """How many times each tile was started (retries and reruns included)."""
        counts: dict[str, int] = {}
        for entry in self._executions.listdir():
            if entry.startswith("."):
                continue
            name = entry.split(".")[0]
            counts[name] = counts.get(name, 0) + 1
        return counts

    def summary(self, names: list[str]) -> dict[str, list[str]]:
        """Tiles by state: finished, failed, pending."""
        failed = _stems(self.dir.listdir(), ".failed")
        finished = self.finished()
        out: dict[str, list[str]] = {"finished": [], "failed": [], "pending": []}
        for name in names:
            if name in finished:
                out["finished"].append(name)
            elif name in failed:
                out["failed"].append(name)
            else:
                out["pending"].append(name)
        return out

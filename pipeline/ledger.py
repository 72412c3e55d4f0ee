"""The ledger of a run: which tiles are finished, failed or pending.

Each tile's state lives in its own small file in ``<run>/ledger/``, written atomically
(temporary file, then rename), so concurrent workers never corrupt each other and a
crash never leaves a half-written record:

- ``<tile>.done``: the tile's partial statistics are safely in ``<run>/partials/``;
  written only *after* the partial file has been renamed into place, so a tile without
  this mark is not finished, whatever else exists;
- ``<tile>.failed``: the tile kept failing; holds the error and traceback;
- ``executions/<tile>.<n>``: one file per started execution (counts retries and
  recomputations).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from morpheus_core.stats import WindowStats
from morpheus_core.tiling import Tile


def tile_id(tile: Tile) -> str:
    """Stable name of a tile, e.g. ``t0002_0013``."""
    return f"t{tile.index[0]:04d}_{tile.index[1]:04d}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see either the old or the complete new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically write a JSON document."""
    atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode())


class Ledger:
    """Tile bookkeeping of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / "ledger"
        self.partials = self.run_dir / "partials"
        for d in (self.dir / "executions", self.partials):
            d.mkdir(parents=True, exist_ok=True)

    # -- written by workers -------------------------------------------------------
    def record_start(self, name: str) -> None:
        """Note that an execution of tile ``name`` has started."""
        marker = self.dir / "executions" / f"{name}.{uuid.uuid4().hex[:12]}"
        atomic_write_json(marker, {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})

    def save_partial(self, name: str, stats: WindowStats, info: dict[str, Any]) -> None:
        """Persist a tile's partial statistics, then mark the tile finished."""
        path = self.partials / f"{name}.npz"
        tmp = path.with_name(f".{name}.{uuid.uuid4().hex}.tmp.npz")
        np.savez(tmp, n=stats.n, mean=stats.mean, m2=stats.m2, votes=stats.votes)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        atomic_write_json(self.dir / f"{name}.done", info)
        failed = self.dir / f"{name}.failed"
        if failed.exists():
            failed.unlink()

    # -- read and written by the driver -------------------------------------------
    def load_partial(self, name: str) -> WindowStats:
        """The partial statistics of a finished tile."""
        with np.load(self.partials / f"{name}.npz") as data:
            return WindowStats(data["n"], data["mean"], data["m2"], data["votes"])

    def is_finished(self, name: str) -> bool:
        """True if the tile's partial result is complete and marked done."""
        return (self.dir / f"{name}.done").exists() and (self.partials / f"{name}.npz").exists()

    def mark_failed(self, name: str, error: str, traceback_text: str) -> None:
        """Record that a tile kept failing."""
        atomic_write_json(self.dir / f"{name}.failed", {"error": error, "traceback": traceback_text, "time": time.time()})

    def clear_failed(self) -> list[str]:
        """Forget failure records (before a resubmit); returns the tiles cleared."""
        names = [p.stem for p in self.dir.glob("*.failed")]
        for name in names:
            (self.dir / f"{name}.failed").unlink()
        return names

    def failed(self) -> dict[str, dict[str, Any]]:
        """Failed tiles with their error records."""
        return {p.stem: json.loads(p.read_text()) for p in sorted(self.dir.glob("*.failed"))}

    def done_info(self, name: str) -> dict[str, Any]:
        """The record a worker wrote when it finished the tile."""
        return json.loads((self.dir / f"{name}.done").read_text())

    def executions(self) -> dict[str, int]:
        """How many times each tile was started (retries and reruns included)."""
        counts: dict[str, int] = {}
        for p in (self.dir / "executions").iterdir():
            name = p.name.split(".")[0]
            counts[name] = counts.get(name, 0) + 1
        return counts

    def summary(self, names: list[str]) -> dict[str, list[str]]:
        """Tiles by state: finished, failed, pending."""
        failed = set(self.failed())
        out: dict[str, list[str]] = {"finished": [], "failed": [], "pending": []}
        for name in names:
            if self.is_finished(name):
                out["finished"].append(name)
            elif name in failed:
                out["failed"].append(name)
            else:
                out["pending"].append(name)
        return out

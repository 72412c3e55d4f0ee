"""The ledger of a run: which tiles are finished, failed or pending.

Each tile's state lives in its own small file in ``<run>/ledger/``, written atomically
(on a file system: temporary file, then rename; in an object store: one upload, see
:mod:`pipeline.rundir.location`), so concurrent workers never corrupt each other and a crash
never leaves a half-written record:

- ``<tile>.done``: the tile's partial statistics are safely in ``<run>/partials/``;
  written only *after* the partial file is in place, so a tile without this mark is
  not finished, whatever else exists. It records the run id, the tile id and the
  size and SHA-256 of the partial file, and the partial itself holds its tile and
  run ids: :meth:`Ledger.verify` and :meth:`Ledger.load_partial` refuse a partial that
  is missing, truncated, altered, or another tile's or another run's, so such a tile
  counts as pending (and is recomputed) instead of being merged;
- ``<tile>.failed``: the tile kept failing; holds the error and traceback;
- ``merged.json``: every partial is merged into the complete classification store
  (written after the store's ``complete`` mark and its checksum record,
  ``classification.checksums.json``, which it names: :mod:`pipeline.rundir.checksums`);
  the partials are then removed unless the run keeps them (``--keep-partials``), and
  a resumed run verifies the store and goes straight to the products;
- ``executions/<tile>.<id>``: one file per started execution (a random id) (counts retries and
  recomputations).

The run directory may be a local (shared) path or an fsspec URL such as
``s3://bucket/run``; the driver reads the state of all tiles with a few listings
and concurrent reads rather than one request per tile.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from morpheus_core.stats import WindowStats
from morpheus_core.tiling import Tile
from pipeline.errors import RunError
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location, as_location

__all__ = ["PARTIAL_ARRAYS", "Ledger", "PartialError", "compact_partial", "merged_record", "tile_id"]

#: Arrays of a partial file (besides its ``tile`` and ``run_id`` labels).
PARTIAL_ARRAYS = ("n", "mean", "m2", "votes")


class PartialError(RunError):
    """A finished tile's partial statistics cannot be trusted (missing, corrupt, or
    another tile's or run's); the message names the tile and the file.
    """

    def __init__(self, name: str, where: Location | str, problem: str) -> None:
        super().__init__(f"tile {name}: partial {where} {problem}")
        self.tile, self.where, self.problem = name, str(where), problem

    def __reduce__(self) -> tuple:  # raised in Dask tasks: must survive pickling
        return (PartialError, (self.tile, self.where, self.problem))


def compact_partial(stats: WindowStats) -> dict[str, np.ndarray]:
    """A tile's partial statistics in the dtypes they are stored in.

    Means and sums of squared deviations as float32: their relative rounding (6e-8)
    is far below the float32 precision of the products they are merged into, and
    the merge itself (:meth:`~morpheus_core.stats.WindowStats.merge_`) runs in
    float64. Counts and votes as uint16 when they fit (a pixel is counted by at most
    ``((window - 2 border) / stride)**2 = 900`` windows), else int32: exact either way.
    """

    def counts(a: np.ndarray) -> np.ndarray:
        return a.astype(np.uint16) if a.size == 0 or (a.min() >= 0 and a.max() <= np.iinfo(np.uint16).max) else a

    return {
        "n": counts(stats.n),
        "mean": stats.mean.astype(np.float32),
        "m2": stats.m2.astype(np.float32),
        "votes": counts(stats.votes),
    }


def tile_id(tile: Tile) -> str:
    """Stable name of a tile, e.g. ``t0002_0013``."""
    return f"t{tile.index[0]:04d}_{tile.index[1]:04d}"


class Ledger:
    """Tile bookkeeping of one run directory.

    Parameters
    ----------
    run_dir : Location or path-like
        The run directory (a local path is made a :class:`~pipeline.rundir.location.Location`).
    """

    def __init__(self, run_dir: Location | str | os.PathLike[str]) -> None:
        self.root = as_location(run_dir)
        self.layout = RunLayout(self.root)
        self.dir = self.layout.ledger
        self.partials = self.layout.partials
        for d in (self.layout.executions, self.partials):
            d.makedirs()

    # -- written by workers -------------------------------------------------------
    def record_start(self, name: str) -> None:
        """Note that an execution of tile ``name`` has started."""
        marker = self.layout.execution_record(name, uuid.uuid4().hex[:12])
        marker.write_json({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})

    def save_partial(self, name: str, stats: WindowStats, info: dict[str, Any], *, run_id: str = "") -> None:
        """Persist a tile's partial statistics, then mark the tile finished.

        The partial (:func:`compact_partial`, in a compressed ``.npz``) holds the tile and
        run ids; the ``.done`` record adds its size and SHA-256, so that a later reader
        can tell it was not truncated, altered or replaced.
        """
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **compact_partial(stats), tile=np.array(name), run_id=np.array(run_id))
        data = buffer.getvalue()
        with self.layout.partial(name).open_atomic() as fh:
            fh.write(data)
        record = {
            **info,
            "tile": name,
            "run_id": run_id,
            "partial": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        }
        self.layout.done_record(name).write_json(record)
        self.layout.failed_record(name).remove()

    # -- read and written by the driver -------------------------------------------
    def load_partial(
        self, name: str, *, run_id: str | None = None, record: dict[str, Any] | None = None
    ) -> WindowStats:
        """The partial statistics of a finished tile, verified against its record.

        Parameters
        ----------
        name : str
            The tile.
        run_id : str, optional
            The run the partial must belong to (checked when given).
        record : dict, optional
            The tile's ``.done`` record if already read.

        Raises
        ------
        PartialError
            The partial or its record is missing, its size or checksum differ from
            the record, or it belongs to another tile or run.
        """
        where, data, record = self._checked_bytes(name, run_id, record)
        return _parse_partial(name, where, data, run_id)

    def _checked_bytes(
        self, name: str, run_id: str | None, record: dict[str, Any] | None = None
    ) -> tuple[Location, bytes, dict[str, Any]]:
        """A partial's bytes, checked against its record (size, SHA-256, tile, run)."""
        where = self.layout.partial(name)
        try:
            record = record if record is not None else self.done_info(name)
            if not isinstance(record, dict):
                raise json.JSONDecodeError("not a JSON object", "", 0)
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PartialError(
                name, self.layout.done_record(name), f"has no readable record ({type(exc).__name__})"
            ) from None
        try:
            data = where.read_bytes()
        except FileNotFoundError:
            raise PartialError(name, where, "is missing") from None
        _check_against_record(name, where, data, record, run_id)
        return where, data, record

    def verify(self, names: Iterable[str], *, run_id: str | None = None) -> tuple[set[str], dict[str, str]]:
        """Finished tiles whose partials pass :meth:`load_partial`'s checks.

        Reads every finished tile's partial (concurrently) and checks its size and
        SHA-256 against the record, which names its tile and run; the arrays are parsed
        only for records without a checksum (runs written before they had one).

        Returns
        -------
        verified : set of str
            Tiles finished with a trustworthy partial.
        problems : dict
            Tile -> what is wrong, for tiles marked done whose partial fails a check
            (they count as pending).
        """
        done = sorted(set(names) & self.layout.tiles_listed(self.dir.listdir(), "done"))

        def check(name: str) -> str | None:
            try:
                where, data, record = self._checked_bytes(name, run_id)
                if "partial" not in record:  # written before records carried checksums
                    _parse_partial(name, where, data, run_id)
            except PartialError as exc:
                return str(exc)
            return None

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(check, done))
        problems = {name: why for name, why in zip(done, results) if why is not None}
        return set(done) - set(problems), problems

    # -- after the merge -------------------------------------------------------------
    def mark_merged(self, run_id: str, tiles: int) -> None:
        """Record that every tile's partial is merged into the complete classification
        store of run ``run_id``: from now on the store, not the partials, is the result,
        and the partials may be removed (:meth:`remove_partials`).

        Written after the store's checksum record (``classification.checksums.json``,
        :mod:`pipeline.rundir.checksums`), which the record names: a store is trusted only
        when its files match it. A ``merged.json`` without ``checksums`` is of a run
        made before they were recorded.
        """
        self.layout.merged_record.write_json(
            {
                "run_id": run_id,
                "tiles": tiles,
                "time": time.time(),
                "checksums": self.layout.classification_checksums.name,
            }
        )

    def merged(self, run_id: str) -> bool:
        """True if the tiles of run ``run_id`` are merged (:meth:`mark_merged`)."""
        return merged_record(self.root, run_id) is not None

    def remove_partials(self) -> int:
        """Remove the partial files (after :meth:`mark_merged`); returns their number."""
        names = [n for n in self.partials.listdir() if not n.startswith(".")]
        for name in names:
            (self.partials / name).remove()
        return len(names)

    def discard(self, name: str) -> None:
        """Forget a finished tile (its partial failed a check): it becomes pending."""
        self.layout.done_record(name).remove()

    def is_finished(self, name: str) -> bool:
        """True if the tile's partial result is complete and marked done."""
        return self.layout.done_record(name).exists() and self.layout.partial(name).exists()

    def finished(self) -> set[str]:
        """All finished tiles (two listings, whatever the number of tiles)."""
        return self.layout.tiles_listed(self.dir.listdir(), "done") & self.layout.tiles_listed(
            self.partials.listdir(), "partial"
        )

    def mark_failed(self, name: str, error: str, traceback_text: str) -> None:
        """Record that a tile kept failing."""
        self.layout.failed_record(name).write_json({"error": error, "traceback": traceback_text, "time": time.time()})

    def clear_failed(self) -> list[str]:
        """Forget failure records (before a resubmit); returns the tiles cleared."""
        names = sorted(self.layout.tiles_listed(self.dir.listdir(), "failed"))
        for name in names:
            self.layout.failed_record(name).remove()
        return names

    def failed(self) -> dict[str, dict[str, Any]]:
        """Failed tiles with their error records."""
        files = {
            name: self.layout.failed_record(name)
            for name in sorted(self.layout.tiles_listed(self.dir.listdir(), "failed"))
        }
        found = self.dir.read_many(where.name for where in files.values())
        out = {}
        for name, where in files.items():
            if where.name in found:
                record = _parse_record(found[where.name])
                out[name] = record if record is not None else {"error": f"unreadable failure record {where}"}
        return out

    def done_info(self, name: str) -> dict[str, Any]:
        """The record a worker wrote when it finished the tile."""
        return self.layout.done_record(name).read_json()

    def done_infos(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The records of several finished tiles (read concurrently from object
        stores); tiles without a record are left out.
        """
        files = {self.layout.done_record(name).name: name for name in names}
        found = self.dir.read_many(files)
        records = {files[key]: _parse_record(value) for key, value in found.items()}
        return {name: record for name, record in records.items() if record is not None}

    def executions(self) -> dict[str, int]:
        """How many times each tile was started (retries and reruns included)."""
        counts: dict[str, int] = {}
        for entry in self.layout.executions.listdir():
            if entry.startswith("."):
                continue
            name = self.layout.execution_tile(entry)
            counts[name] = counts.get(name, 0) + 1
        return counts

    def summary(self, names: list[str], untrusted: set[str] = frozenset()) -> dict[str, list[str]]:
        """Tiles by state: finished, failed, pending (``untrusted``: finished tiles
        whose partial failed :meth:`verify`, counted as pending).
        """
        failed = self.layout.tiles_listed(self.dir.listdir(), "failed")
        finished = self.finished() - set(untrusted)
        out: dict[str, list[str]] = {"finished": [], "failed": [], "pending": []}
        for name in names:
            if name in finished:
                out["finished"].append(name)
            elif name in failed:
                out["failed"].append(name)
            else:
                out["pending"].append(name)
        return out


def merged_record(run_dir: Location, run_id: str | None = None) -> dict[str, Any] | None:
    """``merged.json`` of a run directory (of run ``run_id`` when given), or None when it
    is missing, unreadable or another run's.
    """
    try:
        record = _parse_record(RunLayout(run_dir).merged_record.read_bytes())
    except FileNotFoundError:
        return None
    if record is None or (run_id is not None and record.get("run_id") != run_id):
        return None
    return record


def _parse_record(data: bytes) -> dict[str, Any] | None:
    """A ledger record's JSON object, or None if it is truncated or not one."""
    try:
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _check_against_record(name: str, where: Location, data: bytes, record: dict[str, Any], run_id: str | None) -> None:
    """A partial's bytes against the tile's record: the record's tile and run, the size
    and the SHA-256 (records written before checksums existed carry none).
    """
    if str(record.get("tile", name)) != name:
        raise PartialError(name, where, f"has the record of tile {record['tile']}")
    if run_id is not None and str(record.get("run_id", "")) not in ("", run_id):
        raise PartialError(name, where, f"belongs to run {record['run_id']}, not {run_id}")
    expected = record.get("partial")
    if expected is None:
        return
    if len(data) != expected["bytes"]:
        raise PartialError(
            name, where, f"has {len(data)} bytes, its record says {expected['bytes']} (truncated or replaced)"
        )
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise PartialError(name, where, "does not match its recorded SHA-256 (corrupted or replaced)")


def _parse_partial(name: str, where: Location, data: bytes, run_id: str | None) -> WindowStats:
    """The statistics in a partial's bytes, checking the tile and run ids it holds."""
    try:
        with np.load(io.BytesIO(data)) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:  # a damaged file: zip, header or array errors alike
        raise PartialError(name, where, f"cannot be read ({type(exc).__name__}: {exc})") from None
    if not set(PARTIAL_ARRAYS) <= set(arrays):
        raise PartialError(name, where, f"lacks arrays {sorted(set(PARTIAL_ARRAYS) - set(arrays))}")
    if "tile" in arrays and str(arrays["tile"]) != name:
        raise PartialError(name, where, f"belongs to tile {arrays['tile']}")
    if run_id is not None and str(arrays.get("run_id", "")) not in ("", run_id):
        raise PartialError(name, where, f"belongs to run {arrays['run_id']}, not {run_id}")
    return WindowStats(arrays["n"].astype(np.int32), arrays["mean"], arrays["m2"], arrays["votes"].astype(np.int32))

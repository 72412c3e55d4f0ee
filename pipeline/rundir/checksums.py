"""Checksums of a finished Zarr store: recorded once, verified before the store is used.

After the merge the partial statistics are removed, so ``classification.zarr`` is the
only copy of the classification; ``segmentation.zarr`` is reused by ``catalog``. Zarr
reads a missing chunk file as its fill value (0), so a deleted chunk would give zeros
without any error, and a truncated or altered one wrong numbers or a decoding error.
So when a store is finished the size and SHA-256 of each of its files (every chunk
file ``<array>/c/<i>/<j>/...`` and every ``zarr.json``) are recorded
(:func:`record_store`, :func:`write_record`), and a command checks the files against
the record before it uses the store (:func:`verify_record`): a recorded file that is
missing, has another size or another checksum, or a chunk file that is not in the
record, is a :class:`StoreProblem` that names the array, the chunk index and the file.

A chunk whose every value is the fill value has no file (Zarr does not write it); the
record lists the files that exist, so such a chunk is known to be absent, and a chunk
file that appears later is reported.

Where the files live does not matter: a local folder is walked, an object store
(:class:`~pipeline.rundir.location.Location` with an fsspec URL) is listed with one recursive
listing and each object is read once. Reading and hashing run in threads (``hashlib``
and file reads release the GIL); with a Dask client, :func:`record_store` spreads the
files over the workers. The cost at GOODS-S size (10^8 pixels, 2.95 GB of files) is
measured by ``benchmarks/store_verify.py`` (``docs/performance.md``).

The record (a JSON document in the run's ``ledger/``, :class:`pipeline.rundir.layout.RunLayout`)::

    {"store": "classification.zarr", "run_id": "...", "algorithm": "sha256", "time": ...,
     "files": {"zarr.json": [1234, "<hex>"], "mean/c/0/3/4": [2016554, "<hex>"], ...}}
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipeline.rundir.location import ZARR_METADATA, Location

__all__ = [
    "ALGORITHM",
    "StoreCheck",
    "StoreProblem",
    "chunk_of",
    "file_fingerprint",
    "hash_files",
    "list_files",
    "read_record",
    "record_store",
    "verify_files",
    "verify_record",
    "write_record",
]

#: Checksum of every file (``hashlib`` name). SHA-256, the partials' checksum too, is
#: faster than BLAKE2b on CPUs with SHA extensions: 0.65-0.92 GB/s read and hashed per
#: thread on the development machine, BLAKE2b 0.47-0.52 GB/s (``benchmarks/store_verify.py``).
ALGORITHM = "sha256"

#: Bytes read at a time from a local file.
_BLOCK = 4 << 20


@dataclass(frozen=True)
class StoreProblem:
    """One file of a store that does not match its record.

    Attributes
    ----------
    store : str
        The store (path or URL).
    key : str
        The file, relative to the store (``mean/c/0/1/2``).
    problem : str
        What is wrong (``is missing``, ``has 10 bytes, recorded 2016554``, ...).
    """

    store: str
    key: str
    problem: str

    @property
    def array(self) -> str:
        """The array the file belongs to (``""`` for the store's own ``zarr.json``)."""
        return chunk_of(self.key)[0]

    @property
    def chunk(self) -> tuple[int, ...] | None:
        """The chunk index, or None for a metadata file."""
        return chunk_of(self.key)[1]

    def __str__(self) -> str:
        where = f"file {self.store.rstrip('/')}/{self.key} {self.problem}"
        if not _is_store_key(self.key):  # the record itself
            return where
        what = (
            f"array {self.array!r} chunk {self.chunk}"
            if self.chunk is not None
            else f"metadata of array {self.array!r}"
            if self.array
            else "group metadata"
        )
        return f"{what}: {where}"


@dataclass
class StoreCheck:
    """The result of checking a store against its record.

    Attributes
    ----------
    store : Location
        The store.
    problems : list of StoreProblem
        Files that do not match (empty: the store is as recorded).
    recorded : bool
        False when there is no checksum record to check against (a store finished
        before records were kept); ``problems`` then holds what could be checked
        without one.
    files : int
        Files checked.
    bytes_read : int
        Bytes read to hash them (0 when only sizes were compared).
    """

    store: Location
    problems: list[StoreProblem] = field(default_factory=list)
    recorded: bool = True
    files: int = 0
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def message(self, limit: int = 3) -> str:
        """The problems in one line: ``<store> is damaged: <first problems> (and N more)``."""
        shown = "; ".join(str(p) for p in self.problems[:limit])
        more = f" (and {len(self.problems) - limit} more)" if len(self.problems) > limit else ""
        return f"{self.store} is damaged: {shown}{more}"


def chunk_of(key: str) -> tuple[str, tuple[int, ...] | None]:
    """The array and chunk index of a store key (Zarr v3 default chunk keys).

    ``"mean/c/0/1/2"`` -> ``("mean", (0, 1, 2))``; ``"mean/zarr.json"`` -> ``("mean", None)``;
    ``"zarr.json"`` -> ``("", None)``.
    """
    parts = key.split("/")
    if "c" in parts[:-1]:
        at = len(parts) - 1 - parts[::-1].index("c")
        index = parts[at + 1 :]
        if index and all(p.isdigit() for p in index):
            return "/".join(parts[:at]), tuple(int(p) for p in index)
    return "/".join(parts[:-1]), None


def _is_store_key(key: str) -> bool:
    """True for what Zarr reads: ``zarr.json`` files and chunk files (not temporary files)."""
    return key.rsplit("/", 1)[-1] == ZARR_METADATA or chunk_of(key)[1] is not None


def list_files(store: Location) -> dict[str, int]:
    """Every metadata and chunk file of a store, key -> size in bytes (one listing).

    Files Zarr does not read (hidden or temporary files) are left out.
    """
    out: dict[str, int] = {}
    if store.is_local:
        root = store.path
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = os.path.relpath(folder, root)
            for name in files:
                key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                if not name.startswith(".") and _is_store_key(key):
                    out[key] = os.stat(os.path.join(folder, name)).st_size
        return out
    prefix = store.fs._strip_protocol(store.url).rstrip("/")
    try:
        found = store.fs.find(prefix, detail=True)
    except FileNotFoundError:
        return {}
    for path, info in found.items():
        key = path[len(prefix) + 1 :] if path.startswith(prefix + "/") else None
        if key and info.get("type", "file") == "file" and _is_store_key(key):
            out[key] = int(info["size"])
    return out


def _digest(store: Location, key: str) -> tuple[int, str] | None:
    """Size and checksum of one file (None if it is missing)."""
    h = hashlib.new(ALGORITHM)
    if store.is_local:
        try:
            with open(store.path / key, "rb") as fh:
                size = 0
                while block := fh.read(_BLOCK):
                    h.update(block)
                    size += len(block)
        except FileNotFoundError:
            return None
        return size, h.hexdigest()
    try:
        data = (store / key).read_bytes()
    except FileNotFoundError:
        return None
    h.update(data)
    return len(data), h.hexdigest()


def file_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Size and SHA-256 of a file, read in 4 MiB blocks.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    dict
        ``{"size": int (bytes), "sha256": str (hex digest)}``.
    """
    digest = hashlib.sha256()
    buffer = bytearray(_BLOCK)
    view = memoryview(buffer)
    size = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
            size += n
    return {"size": size, "sha256": digest.hexdigest()}


def hash_files(store: Location, keys: Iterable[str], *, threads: int | None = None) -> dict[str, list]:
    """Size and checksum of each file, ``key -> [bytes, hexdigest]`` (missing files left out).

    Parameters
    ----------
    store : Location
        The store.
    keys : iterable of str
        Files relative to the store.
    threads : int, optional
        Files read at once (default: the CPUs for a local store, 8 for an object store,
        whose reads wait on the network).
    """
    keys = list(keys)
    threads = threads or ((os.cpu_count() or 2) if store.is_local else 8)
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(keys) or 1))) as pool:
        results = list(pool.map(lambda k: _digest(store, k), keys))
    return {key: list(result) for key, result in zip(keys, results) if result is not None}


def record_store(store: Location, *, client: Any = None, batches: int = 8) -> dict[str, list]:
    """Size and checksum of every metadata and chunk file of a finished store.

    The files are hashed in ``batches`` tasks (:func:`pipeline.tasks.run_tasks`:
    on the client's workers, where they read the store, or Dask's threaded scheduler
    here without one).
    """
    import dask

    from pipeline.tasks import run_tasks

    keys = sorted(list_files(store))
    size = max(1, -(-len(keys) // max(1, batches)))
    tasks = [
        dask.delayed(hash_files, pure=False)(store, keys[i : i + size], threads=1) for i in range(0, len(keys), size)
    ]
    out: dict[str, list] = {}
    for part in run_tasks(client, tasks):
        out.update(part)
    return dict(sorted(out.items()))


def verify_files(
    store: Location, files: Mapping[str, list], *, hashes: bool = True, threads: int | None = None
) -> StoreCheck:
    """Check a store's files against recorded ``key -> [bytes, hexdigest]``.

    Parameters
    ----------
    store : Location
        The store.
    files : mapping
        The record (:func:`record_store`).
    hashes : bool
        Also read every file and compare its checksum; else compare the listing's
        sizes only (one listing: finds missing, truncated, extended and unexpected
        files, not altered bytes).
    threads : int, optional
        As :func:`hash_files`.
    """
    listed = list_files(store)
    problems = []
    for key, (size, _) in files.items():
        if key not in listed:
            problems.append(StoreProblem(str(store), key, "is missing"))
        elif listed[key] != size:
            problems.append(
                StoreProblem(str(store), key, f"has {listed[key]} bytes, recorded {size} (truncated or replaced)")
            )
    for key in sorted(set(listed) - set(files)):
        problems.append(StoreProblem(str(store), key, "is not in the record (written after the store was finished)"))
    check = StoreCheck(store, files=len(files))
    if hashes:
        same_size = [k for k in files if k in listed and listed[k] == files[k][0]]
        found = hash_files(store, same_size, threads=threads)
        check.bytes_read = sum(size for size, _ in found.values())
        for key in same_size:
            if key not in found:
                problems.append(StoreProblem(str(store), key, "is missing"))
            elif found[key][1] != files[key][1]:
                problems.append(
                    StoreProblem(str(store), key, f"does not match its recorded {ALGORITHM} (corrupted or replaced)")
                )
    check.problems = sorted(problems, key=lambda p: p.key)
    return check


def write_record(
    record_file: Location, store: Location, files: Mapping[str, list], *, run_id: str | None = None
) -> None:
    """Write a store's checksum record (atomically)."""
    record_file.write_json(
        {"store": store.name, "run_id": run_id or "", "algorithm": ALGORITHM, "time": time.time(), "files": dict(files)}
    )


def read_record(record_file: Location, *, run_id: str | None = None) -> tuple[dict[str, list] | None, str]:
    """The files of a checksum record, or None and why it cannot be used.

    ``run_id``, when given, must be the record's run.
    """
    try:
        record = json.loads(record_file.read_bytes())
    except FileNotFoundError:
        return None, "is missing"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, "is unreadable (truncated or corrupted)"
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        return None, "is not a checksum record"
    if record.get("algorithm", ALGORITHM) != ALGORITHM:
        return None, f"uses checksum {record['algorithm']!r}, not {ALGORITHM!r}"
    if run_id is not None and record.get("run_id") not in ("", run_id):
        return None, f"belongs to run {record['run_id']}, not {run_id}"
    return record["files"], ""


def verify_record(
    store: Location, record_file: Location, *, run_id: str | None = None, hashes: bool = True
) -> StoreCheck:
    """Check a store against the checksum record in ``record_file`` (:func:`verify_files`).

    A missing, unreadable or other run's record is itself a problem: the store cannot
    be trusted without it.
    """
    files, why = read_record(record_file, run_id=run_id)
    if files is None:
        folder = record_file.url.rsplit("/", 1)[0]
        return StoreCheck(
            store, [StoreProblem(folder, record_file.name, f"(the checksum record of {store.name}) {why}")]
        )
    return verify_files(store, files, hashes=hashes)

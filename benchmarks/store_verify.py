"""What recording and verifying the checksums of a classification store cost at GOODS-S size.

Builds a classification-like Zarr store of ``side**2`` pixels (default 10,000², 10^8
pixels, GOODS-S's size) exactly as a run lays it out
(:func:`pipeline.classify.tasks.create_output_store`: ``mean``, ``variance``, ``rank`` as
5 classes x float32, ``n`` int32, chunks of ``tile``² pixels, Zarr v3's Zstd codec),
filled without the network with synthetic values that compress about as much as a
run's (means and variances with their low 16 mantissa bits cleared, rank votes ``k /
900``, counts 850-900: 2.9 GB here against 2.7 GB for the survey-scale run in
``docs/performance.md``). Then prints, for the store's files:

- ``record``: list + read + SHA-256 every file, in threads on this machine
  (:func:`pipeline.rundir.checksums.record_store` without a client), and with ``--workers``
  on a local Dask cluster as the merge does it;
- ``verify``: the same against the record (:func:`~pipeline.rundir.checksums.verify_files`),
  with the page cache warm (just written) and cold (each file's pages dropped with
  ``posix_fadvise(DONTNEED)``, which needs no privileges and touches no other file);
- ``verify sizes``: one listing, sizes compared, nothing read;
- the read + hash rate of SHA-256 and BLAKE2b over the same files (one thread).

Usage (from the repository, ``PYTHONPATH=.``)::

    python benchmarks/store_verify.py                       # 10,000², tile 1024
    python benchmarks/store_verify.py --keep /tmp/store     # keep the store; again: reuse it
    python benchmarks/store_verify.py --side 4000            # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from morpheus_core import CLASSES
from morpheus_core.tiling import chunk_boxes
from pipeline.classify.tasks import create_output_store
from pipeline.rundir import checksums as store_check
from pipeline.rundir.location import Location


def build(where: Location, side: int, tile: int, seed: int = 0) -> None:
    """The store, chunk by chunk (two threads: Zstd releases the GIL)."""
    create_output_store(where, (side, side), tile, {"classes": list(CLASSES), "run_id": "benchmark"})
    group = where.open_group(mode="r+")
    keep = np.uint32(0xFFFF0000)  # sign, exponent and 7 mantissa bits

    def chunk(args: tuple[int, object]) -> None:
        i, box = args
        rng = np.random.default_rng([seed, i])
        ys, xs = box.slices
        shape = (len(CLASSES), *box.shape)
        mean = rng.random(shape, dtype=np.float32)
        group["mean"][:, ys, xs] = (mean.view(np.uint32) & keep).view(np.float32)
        group["variance"][:, ys, xs] = ((0.1 * mean).view(np.uint32) & keep).view(np.float32)
        group["rank"][:, ys, xs] = (np.round(mean * 900) / 900).astype(np.float32)
        group["n"][ys, xs] = rng.integers(850, 901, box.shape).astype(np.int32)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(chunk, enumerate(chunk_boxes((side, side), tile))))


def drop_cache(root: Path) -> None:
    """Drop the store's files from the page cache (each file only)."""
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def hash_rate(root: Path, files: dict[str, list], algorithm: str) -> float:
    """Read + hash every file in one thread with ``algorithm``; MB/s."""
    t0 = time.perf_counter()
    total = 0
    for key in files:
        h = hashlib.new(algorithm)
        with open(root / key, "rb") as fh:
            while block := fh.read(4 << 20):
                h.update(block)
                total += len(block)
    return total / 1e6 / (time.perf_counter() - t0)


def timed(fn, *args, **kwargs):
    """``fn``'s result and its wall time in seconds."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=10_000, help="pixels per side (default 10,000: 10^8 pixels)")
    parser.add_argument("--tile", type=int, default=1024, help="chunk side, as a run's --tile (default 1024)")
    parser.add_argument("--workers", type=int, default=2, help="local Dask workers for the record (0: skip)")
    parser.add_argument(
        "--keep",
        type=Path,
        help="build the store here and keep it, or reuse the one built there (default: a temporary folder)",
    )
    args = parser.parse_args(argv)

    base = args.keep or Path(tempfile.mkdtemp(prefix="store-verify-"))
    store = Location(base / "classification.zarr")
    try:
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        if args.keep and (store / "zarr.json").exists():  # built by an earlier run with --keep
            seconds = 0.0
        else:
            _, seconds = timed(build, store, args.side, args.tile)
        listed = store_check.list_files(store)
        size = sum(listed.values())
        raw = args.side**2 * (3 * len(CLASSES) + 1) * 4
        print(
            f"store: {args.side}x{args.side} pixels, tile {args.tile}, {len(listed)} files, "
            f"{size / 1e9:.2f} GB ({raw / 1e9:.2f} GB raw), built in {seconds:.1f} s"
        )

        files, seconds = timed(store_check.record_store, store)
        print(f"record (threads here): {seconds:.2f} s, {size / 1e9:.2f} GB read, {size / 1e6 / seconds:.0f} MB/s")
        if args.workers:
            from distributed import Client, LocalCluster

            with (
                LocalCluster(
                    n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
                ) as cluster,
                Client(cluster) as client,
            ):
                on_workers, seconds = timed(store_check.record_store, store, client=client)
            assert on_workers == files
            print(f"record ({args.workers} Dask workers): {seconds:.2f} s")

        check, seconds = timed(store_check.verify_files, store, files)
        assert check.ok
        print(
            f"verify, warm cache: {seconds:.2f} s, {check.bytes_read / 1e9:.2f} GB read, "
            f"{check.bytes_read / 1e6 / seconds:.0f} MB/s"
        )
        drop_cache(store.path)
        check, seconds = timed(store_check.verify_files, store, files)
        assert check.ok
        print(
            f"verify, cold cache: {seconds:.2f} s, {check.bytes_read / 1e9:.2f} GB read, "
            f"{check.bytes_read / 1e6 / seconds:.0f} MB/s"
        )
        check, seconds = timed(store_check.verify_files, store, files, hashes=False)
        assert check.ok and check.bytes_read == 0
        print(f"verify sizes only: {seconds * 1e3:.1f} ms, 0 bytes read")
        for algorithm in ("sha256", "blake2b"):
            print(f"read + {algorithm}, one thread, warm cache: {hash_rate(store.path, files, algorithm):.0f} MB/s")
        record = Path(base / "record.json")
        store_check.write_record(Location(record), store, files, run_id="benchmark")
        print(f"record file: {record.stat().st_size / 1e3:.0f} kB")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

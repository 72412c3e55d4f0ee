"""Test-only fault injection: tiles that always fail, and tiles that take longer.

The pipeline has no such settings: a test swaps the tile task that :mod:`pipeline.classify.driver`
submits for :func:`run_tile` below (bound to its faults with :func:`functools.partial`).
Dask sends the task by reference, so every worker process runs it too (workers import
this module; the test processes put the repository on ``sys.path``).

- in-process tests: the :func:`inject` context manager (or pytest's ``monkeypatch``);
- command-line tests: ``python -m tests.faults [--fail-tile T]... [--tile-delay S] --
  <pipeline arguments>``, which injects, then runs ``python -m pipeline``.

A later command without injection (``resubmit``) runs the real task again.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from morpheus_core.tiling import Tile
from pipeline.classify import driver as run_module
from pipeline.classify import tasks as classify
from pipeline.classify.job import ClassificationJob
from pipeline.rundir.ledger import tile_id


def run_tile(tile: Tile, job: ClassificationJob, *, fail: tuple[str, ...] = (), delay: float = 0.0) -> dict[str, Any]:
    """The pipeline's tile task, failing for the tiles in ``fail`` (after recording the
    start, as a real failure would) and sleeping ``delay`` seconds before the others."""
    name = tile_id(tile)
    if name in fail:
        if not job.ledger.is_finished(name):
            job.ledger.record_start(name)
            raise RuntimeError(f"injected failure in tile {name} (tests/faults.py)")
    if delay:
        time.sleep(delay)
    return classify.run_tile(tile, job)


def faulty_task(fail: Iterable[str] = (), delay: float = 0.0) -> Any:
    """The tile task with these faults."""
    return functools.partial(run_tile, fail=tuple(fail), delay=float(delay))


@contextlib.contextmanager
def inject(fail: Iterable[str] = (), delay: float = 0.0) -> Iterator[None]:
    """Runs inside the block submit the faulty tile task."""
    real = run_module.run_tile
    run_module.run_tile = faulty_task(fail, delay)
    try:
        yield
    finally:
        run_module.run_tile = real


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.faults [--fail-tile T]... [--tile-delay S] -- ARGS``."""
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="python -m tests.faults")
    parser.add_argument("--fail-tile", action="append", default=[])
    parser.add_argument("--tile-delay", type=float, default=0.0)
    faults = parser.parse_args(argv[:split])
    from pipeline.cli import main as pipeline_main

    with inject(faults.fail_tile, faults.tile_delay):
        return pipeline_main(argv[split + 1 :])


if __name__ == "__main__":
    # Through the importable module, so the task is sent to workers by reference.
    from tests.faults import main as faults_main

    sys.exit(faults_main())

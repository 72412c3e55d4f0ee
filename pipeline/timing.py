"""Stage timing: each stage of a run logs when it starts and how long it took.

Lines in ``pipeline.log`` read ``stage classify: start`` and ``stage classify: done in
12.3 s``; ``benchmarks/survey_scale.py`` reads them to attribute time and memory to
the stages (ingest, classify, merge, fits, segmentation, labels, deblending, colour,
catalog, products).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

__all__ = ["stage"]

logger = logging.getLogger("pipeline.stage")


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Log the start and the duration of stage ``name`` (also when it fails)."""
    logger.info("stage %s: start", name)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        logger.info("stage %s: done in %.2f s", name, time.perf_counter() - t0)

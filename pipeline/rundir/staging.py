"""Writing whole stores and product files safely: the one "build aside and swap in"
(:func:`staged`) and the one "write locally, then upload" (:class:`written_locally`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location

__all__ = ["staged", "written_locally"]


@contextlib.contextmanager
def staged(store: Location) -> Iterator[Location]:
    """Build a store (a folder) aside and swap it in: the one "build aside" helper.

    On a file system the block writes into :meth:`RunLayout.staging(store)
    <pipeline.rundir.layout.RunLayout.staging>` (a leftover one from
    an interrupted build is removed first); when the block ends without error the old
    store is renamed away, the new one renamed in and the old one deleted, so readers
    find the old store or the whole new one. On error the staging folder is removed
    and ``store`` is untouched. An object store cannot rename a folder: the block gets
    ``store`` itself, rebuilt in place, and the caller's completion mark, written
    last, tells a finished store from an interrupted one.

    Parameters
    ----------
    store : Location
        The store's final location.

    Yields
    ------
    Location
        Where to build the store.
    """
    if not store.is_local:
        yield store
        return
    final = store.path
    work = RunLayout.staging(store).path
    if work.exists():
        shutil.rmtree(work)
    try:
        yield Location(work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if final.exists():
        old = final.with_name(f"{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
        os.replace(work, final)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(work, final)


class written_locally(contextlib.AbstractContextManager):  # noqa: N801 - used like a function
    """A local folder standing for a run directory: the one "write locally, then upload".

    Writers that need local files (FITS, PNG, Parquet) write under :attr:`root`: the
    run directory itself on a file system; for an object store a temporary folder
    whose files are uploaded, one object each under the same relative names, when the
    block ends without error. :meth:`final` maps a local file to where it ends up.

    Parameters
    ----------
    target : Location
        The run directory.
    """

    def __init__(self, target: Location) -> None:
        self.target = target
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.root = target.path if target.is_local else None

    def __enter__(self) -> "written_locally":
        if self.root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="morpheus-upload-")
            self.root = Path(self._tmp.name)
        return self

    def relative(self, path: Path) -> str:
        """``path`` relative to the run directory (POSIX separators)."""
        return Path(path).relative_to(self.root).as_posix()

    def final(self, path: Path) -> Path | str:
        """Where a file written under :attr:`root` ends up (a path, or a URL)."""
        return Path(path) if self.target.is_local else f"{self.target}/{self.relative(path)}"

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if self._tmp is None:
            return
        try:
            if kind is None:
                for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
                    (self.target / self.relative(path)).upload(path)
        finally:
            self._tmp.cleanup()

"""Exceptions that the command line turns into exit codes.

The CLI catches these two and prints ``str(exc)`` as one line:

- :class:`InputError` -> exit status 2 (the user can fix it: a missing file, bands on
  different grids, a store written from other inputs).
- :class:`RunError` -> exit status 1 (something failed while the run was under way).

Everything else is a bug and gets a traceback in the run's log file.
"""

from __future__ import annotations

__all__ = ["InputError", "RunError"]


class InputError(ValueError):
    """Bad user input; the message names the offending file(s) and the problem.

    A :class:`ValueError`, so that callers of the Python API that catch bad values
    see it too; the command line maps only this class to exit status 2 (any other
    error, e.g. a ``ValueError`` raised inside a Dask task, is a failure: exit 1).

    Messages are written to be shown as they are, e.g.
    ``/data/demo_J.fits: shape (512, 511) differs from /data/demo_H.fits (512, 512)``.
    """


class RunError(Exception):
    """A failure during a run (I/O error while writing, a tile that keeps failing)."""

"""Where a command's log records go, and nowhere once it returns.

A write command (``run``, ``resubmit``, ``segment``, ``catalog``) keeps its records in
memory until it holds the run directory's lock, then writes them to
``<run-dir>/pipeline.log`` and logs there (:meth:`CommandLog.claim`): a refused command
adds nothing to the folder. ``train`` logs to ``<out>/train.log`` from the start;
``status`` and ``view`` have no log file. Every handler a command adds is removed, and
the root logger's level restored, when it returns (:meth:`CommandLog.close`), so that
commands called one after another in one process (tests, the Python API) do not
write into each other's files.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import InputError

__all__ = ["LOG_FORMAT", "CommandLog", "log_path"]

#: Format of the lines of ``pipeline.log`` and ``train.log``.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_path(run_dir: Path | str) -> Path:
    """The log file of a run directory: in it, or ``./pipeline.log`` for a URL."""
    return run_dir / "pipeline.log" if isinstance(run_dir, Path) else Path("pipeline.log").absolute()


class _Forwarding(logging.Handler):
    """Passes records on to another handler (which applies its own level and format)."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        """Hand the record to the target handler."""
        self.target.handle(record)


class CommandLog:
    """The log of one command: nothing, records kept in memory until a file can be
    opened, or a file from the start.

    Parameters
    ----------
    path : Path, optional
        The log file. Opened at once unless ``deferred``.
    deferred : bool
        Keep the records in memory until :meth:`open` (or the :meth:`claim` of the run
        directory) opens ``path``; if it never does, they are dropped.

    Attributes
    ----------
    path : Path or None
        The log file once it is open (``None`` before, and for a command without one).
    """

    def __init__(self, path: Path | None = None, *, deferred: bool = False) -> None:
        self._target = path
        self.path: Path | None = None
        self._root = logging.getLogger()
        self._level = self._root.level
        self._added: list[tuple[logging.Logger, logging.Handler]] = []
        self._buffer: logging.handlers.MemoryHandler | None = None
        if path is not None and deferred:
            self._buffer = logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1)
            self._add(self._root, self._buffer)
            self._root.setLevel(logging.INFO)
        elif path is not None:
            self.open()

    @property
    def keeps_records(self) -> bool:
        """Whether records logged now reach (or may still reach) a log file."""
        return self._target is not None

    def _add(self, logger: logging.Logger, handler: logging.Handler) -> None:
        logger.addHandler(handler)
        self._added.append((logger, handler))

    def open(self) -> Path:
        """Open the log file (appending), write the records kept in memory, and log there.

        Dask's own logger does not propagate to the root: its warnings (a worker lost, a
        nanny killing a worker at shutdown) reach the file through a handler of their own
        (a local cluster sets the level of the ``distributed`` logger's handlers to
        WARNING while it runs; the file's handler keeps INFO).

        Raises
        ------
        InputError
            The log file cannot be opened (naming it and why).
        """
        if self.path is not None or self._target is None:
            return self.path  # type: ignore[return-value]
        try:
            self._target.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self._target)
        except OSError as exc:
            raise InputError(f"{self._target}: cannot write the log file ({exc.strerror or exc})") from None
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        if self._buffer is not None:
            self._buffer.setTarget(handler)
            self._buffer.flush()
            self._remove(self._root, self._buffer)
            self._buffer = None
        self._add(self._root, handler)
        self._root.setLevel(logging.INFO)
        forward = _Forwarding(handler)
        forward.setLevel(logging.WARNING)
        self._add(logging.getLogger("distributed"), forward)
        self.path = self._target
        return self.path

    def claim(self, command: str) -> Any:
        """The :data:`pipeline.run.Claim` of ``command``: the run directory's lock, then
        the log file.
        """

        @contextlib.contextmanager
        def claim(location: Any) -> Iterator[Any]:
            from pipeline.rundir.lock import run_lock

            with run_lock(location, command) as held:
                self.open()
                yield held

        return claim

    def _remove(self, logger: logging.Logger, handler: logging.Handler) -> None:
        logger.removeHandler(handler)
        handler.close()
        self._added = [(lg, h) for lg, h in self._added if h is not handler]

    def close(self) -> None:
        """Remove every handler this log added (records kept in memory are dropped) and
        restore the root logger's level.
        """
        for logger, handler in reversed(self._added):
            logger.removeHandler(handler)
            if isinstance(handler, logging.handlers.MemoryHandler):
                handler.setTarget(None)  # type: ignore[arg-type]
                handler.buffer.clear()
            handler.close()
        self._added = []
        self._buffer = None
        self._root.setLevel(self._level)

    def __enter__(self) -> CommandLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

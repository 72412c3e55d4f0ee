"""The command line's exit codes, for every sub-command: one mapping.

- :class:`~pipeline.errors.InputError` -> 2, ``error: <message>`` (bad input: the user
  can fix it; nothing was lost);
- :class:`~pipeline.errors.RunError` -> 1, ``run failed: <message>`` (a failure while
  the command was under way);
- ``KeyboardInterrupt`` -> 1, ``interrupted: <what is kept and how to resume>``;
- anything else -> 1, one line; the traceback goes to the command's log file when it
  has one (else to standard error, as nothing else would keep it).

Each line is printed once on standard error; the log file (if any) gets it too, the
terminal does not get it twice. The command's log handlers are removed when it
returns (:class:`~pipeline.cli.logs.CommandLog`).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable

from pipeline.cli.logs import CommandLog
from pipeline.errors import InputError, RunError

__all__ = ["INTERRUPTED", "run_command"]

logger = logging.getLogger("pipeline")

#: What an interrupted command keeps, and how to go on (printed after ``interrupted:``).
INTERRUPTED = {
    "run": "finished tiles are kept; run the same command again to resume",
    "resubmit": "finished tiles are kept; run the same command again to resume",
    "segment": "the classification is kept; run the same command again to make the segmentation and catalog",
    "catalog": "the classification is kept; run the same command again to make the catalog",
    "status": "nothing was changed",
    "train": "no weights are written before the last epoch; training_log.csv has the epochs so far; run the "
    "same command again to start over",
    "view": "run the same command again to resume building the map",
}


def _failed(command: str) -> str:
    """The first words of a failure's line: ``run failed`` (``train``, ``view``: theirs)."""
    return {"train": "training failed", "view": "view failed"}.get(command, "run failed")


def run_command(command: str, body: Callable[[], object], log: CommandLog | None = None) -> int:
    """Run one sub-command and map what it raises to its exit code.

    Parameters
    ----------
    command : str
        The sub-command's name (a key of :data:`INTERRUPTED`).
    body : callable
        Does the command's work; raises on failure.
    log : CommandLog, optional
        The command's log, closed (its handlers removed) when the command returns.

    Returns
    -------
    int
        0 success, 2 bad input, 1 a failure or an interruption.
    """
    log = log if log is not None else CommandLog()
    # Recorded in the log file only: with no handler, logging's last resort would print
    # the line a second time.
    record = logger.error if log.keeps_records else logger.debug
    try:
        body()
        return 0
    except InputError as exc:
        record("input error: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunError as exc:
        record("%s: %s", _failed(command), exc)
        print(f"{_failed(command)}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        record("interrupted")
        print(f"interrupted: {INTERRUPTED.get(command, 'run the same command again')}", file=sys.stderr)
        return 1
    except Exception as exc:  # unexpected: one line here, the traceback in the log
        line = f"{_failed(command)}: {type(exc).__name__}: {exc}"
        if log.path is not None:
            logger.exception("unexpected failure")
            print(f"{line} (traceback in {log.path})", file=sys.stderr)
        else:  # no log file (yet): the traceback goes here, or nowhere would keep it
            record("unexpected failure", exc_info=True)
            print(line, file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
        return 1
    finally:
        log.close()

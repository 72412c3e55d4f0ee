"""Quiet by default: TensorFlow's start-up lines out of the terminal unless ``--verbose``.

TensorFlow writes its start-up lines (oneDNN, CUDA drivers, CPU features, XLA) from
native code straight to file descriptor 2. Those written after its logging starts obey
``TF_CPP_MIN_LOG_LEVEL``; those written while it is imported come before that and do
not. :func:`quiet_environment` sets the variable for this process and the worker
processes it starts; :func:`native_stderr_captured` holds file descriptor 2 while
TensorFlow is imported and the network is loaded, then sends what was written to the
log (``pipeline.log`` on the driver) at debug level, or back to the terminal if the
block fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

__all__ = ["QUIET_TF_LEVEL", "native_stderr_captured", "quiet_environment"]

logger = logging.getLogger(__name__)

#: TensorFlow's native log level when quiet: none of its info, warning or error lines
#: (errors that matter reach Python as exceptions; ``--verbose`` shows everything).
QUIET_TF_LEVEL = "3"


def quiet_environment(verbose: bool = False) -> None:
    """Set ``TF_CPP_MIN_LOG_LEVEL`` (unless ``verbose`` or already set by the user);
    worker processes started afterwards inherit it.
    """
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_TF_LEVEL)


@contextlib.contextmanager
def native_stderr_captured(enabled: bool = True) -> Iterator[None]:
    """Capture what this process writes to file descriptor 2 inside the block.

    The text goes to this module's logger at debug level; if the block raises, it is
    written back to standard error first, so nothing that explains a failure is lost.
    Other threads' writes to standard error inside the block are captured too, so
    the block should be short (an import, loading a network).
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            if text and failed:
                sys.stderr.write(text)
            elif text:
                logger.debug("captured while loading the network:\n%s", text.rstrip())

"""How a command of this program is spelled when the program prints one.

Every command the program prints (the run's ``map:`` line, "see ... status", "run ...
resubmit", the status and refusal hints) is spelled by :func:`command`, so that it works
as printed in a new shell, where the virtual environment the program runs from may not
be activated:

- ``morpheus-survey ...`` when the installed console script is the one on ``PATH``;
- ``/path/to/.venv/bin/morpheus-survey ...`` when the console script is installed next
  to the running interpreter but that folder is not on ``PATH`` (a virtual environment
  that is not activated);
- ``/path/to/python -m pipeline ...`` when no console script is installed (a source
  checkout).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

__all__ = ["SCRIPT", "command", "program"]

#: The console script that ``pip install`` makes (``[project.scripts]`` in pyproject.toml).
SCRIPT = "morpheus-survey"


def program() -> str:
    """The words that start this program in a new shell (quoted for a POSIX shell).

    Returns
    -------
    str
        ``morpheus-survey``, the console script's absolute path, or
        ``<interpreter> -m pipeline``.
    """
    name = SCRIPT + (".exe" if os.name == "nt" else "")
    script = Path(sysconfig.get_path("scripts")) / name
    if script.is_file():
        found = shutil.which(SCRIPT)
        if found and Path(found).resolve() == script.resolve():
            return SCRIPT
        return shlex.quote(str(script))
    return shlex.join([sys.executable, "-m", "pipeline"])


def command(*words: object) -> str:
    """A command of this program as it should be printed, e.g. ``command("view", "--run-dir", d)``.

    Parameters
    ----------
    *words : object
        The sub-command and its options (each made a string and quoted where needed).

    Returns
    -------
    str
        A line that runs in a new shell as printed.
    """
    return " ".join([program(), *(shlex.quote(str(word)) for word in words)])

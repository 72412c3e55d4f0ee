"""The command line: ``python -m pipeline`` (or ``morpheus-survey``) and its sub-commands.

:func:`main` parses the arguments (options generated from the settings' fields,
:mod:`pipeline.cli.options`), runs the command and maps its errors to exit codes.
"""

from pipeline.cli.main import main

__all__ = ["main"]

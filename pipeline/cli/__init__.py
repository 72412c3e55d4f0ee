"""The command line: ``python -m pipeline`` (or ``morpheus-survey``) and its sub-commands.

- :mod:`~pipeline.cli.main`: :func:`main`, the entry point;
- :mod:`~pipeline.cli.parser`: the parser, which options each command takes;
- :mod:`~pipeline.cli.options`: options generated from the settings' fields;
- :mod:`~pipeline.cli.exits`: the exit codes of every command, in one place;
- :mod:`~pipeline.cli.logs`: a command's log file (and its removal when it returns);
- :mod:`~pipeline.cli.commands`: ``run``, ``resubmit``, ``segment``, ``catalog``;
- :mod:`~pipeline.cli.downstream`: their downstream settings (``segment`` and
  ``catalog`` reuse the last ones);
- :mod:`~pipeline.cli.status`: ``status``;
- :mod:`~pipeline.cli.train`: ``train`` (its options, ``train.log``);
- :mod:`~pipeline.cli.view`: ``view`` (its options);
- :mod:`~pipeline.cli.reference`: ``docs/options.md``, generated from the parser.
"""

from pipeline.cli.main import main

__all__ = ["main"]

"""The command line's entry point: ``python -m pipeline {run,status,resubmit,segment,catalog,train,view} ...``.

Exit codes, the same for every command (:mod:`pipeline.cli.exits`): 0 success; 2 bad
input (one line naming the file and the problem); 1 a failure during the run (failed
tiles are named; ``resubmit`` or ``run`` again resumes). Tracebacks go to the
command's log file: ``<run-dir>/pipeline.log``, opened only once the command has
checked its inputs and holds the run directory's lock, so that a refused command adds
nothing to the folder (log lines until then are kept in memory and written then);
``<out>/train.log`` for ``train``. Every command is as quiet as ``run``: TensorFlow's
start-up lines stay off the terminal unless ``--verbose`` (:mod:`pipeline.quiet`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.exits import run_command
from pipeline.cli.logs import CommandLog, log_path
from pipeline.cli.parser import build_parser

__all__ = ["main"]


def _run_dir(args: argparse.Namespace) -> Path | str:
    """The run directory: given, or ``runs/<mosaic>``; a path is made absolute (recorded
    so: ``resubmit`` works from any directory).
    """
    run_dir = args.run_dir or Path("runs") / getattr(args, "mosaic", "demo")
    return run_dir.expanduser().absolute() if isinstance(run_dir, Path) else run_dir


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    from pipeline.quiet import quiet_environment

    quiet_environment(getattr(args, "verbose", False))  # before TensorFlow is imported or any worker starts
    if args.command == "train":
        from pipeline.cli.train import main as train_main

        return train_main(args)
    if args.command == "view":  # takes the run directory's lock itself, while it builds the map
        from pipeline.cli.view import main as view_main

        return view_main(args)
    run_dir = _run_dir(args)
    if args.command == "status":
        from pipeline.cli.status import status_command

        args.run_dir = run_dir
        return run_command("status", lambda: status_command(args))
    from pipeline.cli.commands import write_command

    log = CommandLog(log_path(run_dir), deferred=True)
    return run_command(args.command, lambda: write_command(args, run_dir, log), log)

"""The write commands: ``run``, ``resubmit``, ``segment`` and ``catalog``.

Each takes the run directory's lock (and opens ``pipeline.log``) only once it knows
the folder is one it may use (:meth:`CommandLog.claim <pipeline.cli.logs.CommandLog.claim>`);
the work is :mod:`pipeline.run`'s (``segment`` and ``catalog``: :mod:`pipeline.downstream.redo`'s).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline.cli.downstream import downstream_settings, written_line
from pipeline.cli.logs import CommandLog
from pipeline.cli.options import from_args, storage_options_from
from pipeline.cli.parser import CLUSTER_OPTIONS, RESUBMIT_OPTIONS
from pipeline.settings import RunSettings

__all__ = ["write_command"]


def _storage_note(args: argparse.Namespace, run_dir: Path | str) -> None:
    """Storage options are for URL run directories: a local one ignores them (and does
    not record them).
    """
    from pipeline.rundir.location import is_url

    given = storage_options_from(args.storage_option)  # screened first: credentials are refused, never echoed
    if given and not is_url(str(run_dir)):
        names = ", ".join(given)
        print(
            f"note: --storage-option {names} ignored: {run_dir} is a local run directory (storage options "
            "are for URLs such as s3://bucket/run) and is not recorded",
            file=sys.stderr,
        )


def write_command(args: argparse.Namespace, run_dir: Path | str, log: CommandLog) -> None:
    """Run ``args.command`` (``run``, ``resubmit``, ``segment`` or ``catalog``) on ``run_dir``.

    Raises
    ------
    InputError
        Bad input (nothing in the run directory changed).
    RunError
        A failure during the run.
    """
    _storage_note(args, run_dir)
    storage_options = storage_options_from(args.storage_option)
    claim = log.claim(args.command)
    if args.command in ("segment", "catalog"):
        _redo_downstream(args, run_dir, storage_options, claim)
        return
    from pipeline import run as runner

    def settings_for(mosaic: str, mosaics_file: Path | None):
        return downstream_settings(args, mosaic, mosaics_file)

    if args.command == "resubmit":
        overrides = {"progress": sys.stderr.isatty(), **from_args(args, RunSettings, RESUBMIT_OPTIONS)}
        if args.storage_option:
            overrides["storage_options"] = storage_options
        runner.resubmit(run_dir, downstream=settings_for, claim=claim, **overrides)
        return
    config = RunSettings(**from_args(args, RunSettings), run_dir=run_dir, storage_options=storage_options)
    runner.run(config, downstream=settings_for(args.mosaic, args.mosaics_file), claim=claim)


def _redo_downstream(
    args: argparse.Namespace, run_dir: Path | str, storage_options: dict[str, Any], claim: Any
) -> None:
    """``segment`` or ``catalog``: the options not given are the last downstream run's."""
    from pipeline.downstream import redo
    from pipeline.rundir.location import Location
    from pipeline.rundir.manifest import read_manifest

    location = Location(run_dir, storage_options)
    read_manifest(location)  # no run here: refused before the folder changes

    def settings_for(mosaic: str, mosaics_file: Path | None):
        return downstream_settings(args, mosaic, mosaics_file, location=location, echo=print)

    with claim(location):
        summary = redo.redo_downstream(
            run_dir,
            settings_for,
            reuse_segmentation=args.command == "catalog",
            storage_options=storage_options,
            **_cluster_keywords(from_args(args, RunSettings, CLUSTER_OPTIONS)),
        )
    print(written_line(summary.outputs, run_dir))


def _cluster_keywords(given: dict[str, Any]) -> dict[str, Any]:
    """:func:`pipeline.downstream.redo.redo_downstream`'s cluster keywords from the options given."""
    given.pop("verbose", None)  # applied to the environment by the entry point
    return given

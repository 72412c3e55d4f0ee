"""Run a mosaic from Python as ``python -m pipeline run`` does.

:func:`run` takes the command's options as keywords, spelt as the settings' fields
(``--tile 128`` is ``tile=128``, ``--no-progress`` is ``progress=False``, ``--detection
mixed`` is ``detection="mixed"``; ``python -m pipeline run --help`` lists them all with
their defaults), builds :class:`~pipeline.settings.RunSettings` and
:class:`~pipeline.settings.DownstreamSettings` from them as the command line does
(the defaults and checks are the settings' own; a TOML mosaic's threshold is the
default of ``threshold``), and calls :func:`pipeline.run.run`. Like the command it
writes its log to ``<run_dir>/pipeline.log`` once the inputs passed their checks and
it holds the run directory's lock, and it resumes a run directory made with the same
settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.run import RunSummary
from pipeline.settings import DownstreamSettings, RunSettings

__all__ = ["run", "run_options"]


def run_options() -> dict[str, list[str]]:
    """The keywords :func:`run` takes: ``{"run": [...], "downstream": [...]}``."""
    skip = {"mosaic", "run_dir"}
    return {
        "run": [f.name for f in dataclasses.fields(RunSettings) if "help" in f.metadata and f.name not in skip]
        + ["storage_options"],
        "downstream": [f.name for f in dataclasses.fields(DownstreamSettings) if "help" in f.metadata],
    }


def run(
    mosaic: str,
    run_dir: str | os.PathLike[str],
    *,
    client: Any = None,
    echo: Callable[[str], Any] = print,
    **options: Any,
) -> RunSummary:
    """Classify a mosaic into a run directory, then segment, deblend and catalog it.

    Parameters
    ----------
    mosaic : str
        ``"demo"``, ``"goods-s"`` or a mosaic of ``mosaics_file``.
    run_dir : str or path-like
        The run directory: a path (made absolute) or a URL such as ``s3://bucket/run``.
        An existing run made with the same settings is resumed.
    client : distributed.Client, optional
        Run on this Dask client instead of starting a cluster from the options.
    echo : callable
        Receives the lines the command prints (the dashboard link, notes, the summary).
    **options
        The options of ``python -m pipeline run`` as keywords (:func:`run_options`),
        e.g. ``mosaics_file="my_mosaics.toml"``, ``model="standin"``, ``tile=128``,
        ``workers=2``, ``progress=False``, ``restart=True``, ``detection="mixed"``.

    Returns
    -------
    pipeline.run.RunSummary
        Tiles run, failed and retried, time, the outputs written and the downstream
        summary (:attr:`~pipeline.run.RunSummary.downstream`).

    Raises
    ------
    TypeError
        A keyword that is not an option of ``run``.
    InputError
        Bad input, or a run directory that cannot be used (nothing in it changed).
    RunError
        Tiles that kept failing (the others are finished and kept; run again to resume).

    Examples
    --------
    >>> summary = run("mine", "runs/mine", mosaics_file="mosaics.toml")  # doctest: +SKIP
    >>> summary.downstream.catalog_rows  # doctest: +SKIP
    """
    from pipeline.cli.downstream import downstream_settings
    from pipeline.cli.logs import CommandLog, log_path
    from pipeline.quiet import quiet_environment
    from pipeline.run import run as run_mosaic

    known = run_options()
    unknown = sorted(set(options) - set(known["run"]) - set(known["downstream"]))
    if unknown:
        raise TypeError(
            f"run() got unexpected keyword(s) {', '.join(unknown)}; the options are "
            f"{', '.join(known['run'] + known['downstream'])}"
        )
    config = RunSettings(mosaic=mosaic, run_dir=run_dir, **{k: v for k, v in options.items() if k in known["run"]})
    quiet_environment(config.verbose)  # before TensorFlow is imported or a worker starts, as the command line
    given = argparse.Namespace(**{k: v for k, v in options.items() if k in known["downstream"]})
    downstream = downstream_settings(given, config.mosaic, config.mosaics_file)
    where = config.run_dir if isinstance(config.run_dir, Path) else str(config.run_dir)
    with CommandLog(log_path(where), deferred=True) as log:
        return run_mosaic(config, client=client, echo=echo, downstream=downstream, claim=log.claim("run"))

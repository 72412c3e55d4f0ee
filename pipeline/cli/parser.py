"""The command line's parser: every sub-command and its options.

Every option is generated from the settings dataclasses (:mod:`pipeline.cli.options`):
each default, choice and help text is written once, on the field. Which settings a
command takes is decided here, once:

- ``run``: every :class:`~pipeline.settings.RunSettings` and
  :class:`~pipeline.settings.DownstreamSettings` option;
- ``resubmit``: :data:`RESUBMIT_OPTIONS` over the recorded settings (the result
  settings cannot change), and the downstream options;
- ``segment``, ``catalog``: :data:`CLUSTER_OPTIONS` (a cluster of their own) and the
  downstream options, each over the last downstream run's;
- ``status``: where the run is; ``train`` and ``view``: their own settings
  (:mod:`pipeline.cli.train`, :mod:`pipeline.cli.view`).
"""

from __future__ import annotations

import argparse
import dataclasses

from pipeline.cli.options import add_location_options, add_options
from pipeline.settings import DownstreamSettings, RunSettings

__all__ = ["CLUSTER_OPTIONS", "GROUPS", "LAST_DOWNSTREAM", "RESUBMIT_OPTIONS", "build_parser", "option_kind"]

#: Option groups of ``run`` by the settings' ``kind`` (their titles in ``--help``).
GROUPS = {
    "input": "input",
    "science": "network and windows (the result depends on these)",
    "compute": "cluster and compute",
    "storage": "run directory",
}


def option_kind(kind: str) -> list[str]:
    """The :class:`~pipeline.settings.RunSettings` options of one ``kind``."""
    return [f.name for f in dataclasses.fields(RunSettings) if f.metadata.get("kind") == kind and "help" in f.metadata]


#: What ``resubmit`` may change of a recorded run: how it runs, never its result.
RESUBMIT_OPTIONS = (*option_kind("compute"), "keep_partials", "progress", "verbose")
#: The cluster options of ``segment`` and ``catalog`` (they start a local cluster
#: without GPUs, or join ``--scheduler``).
CLUSTER_OPTIONS = ("scheduler", "scheduler_security", "tls", "workers", "verbose")

#: Where ``segment`` and ``catalog`` take the downstream settings not given.
LAST_DOWNSTREAM = "the last segmentation's"


def _downstream_options(parser: argparse.ArgumentParser, *, recorded: str | None = None) -> None:
    group = parser.add_argument_group("segmentation and catalog (paper sections 4, 5, 8)")
    add_options(group, DownstreamSettings, keep_defaults=recorded is None, recorded=recorded)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m pipeline`` parser (``args.command`` names the sub-command)."""
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="Morpheus at survey scale")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="classify a mosaic (resumes an existing run directory)")
    add_location_options(run, required=False)
    for kind, title in GROUPS.items():
        add_options(run.add_argument_group(title), RunSettings, option_kind(kind))
    _downstream_options(run)

    segment = sub.add_parser(
        "segment",
        help="re-run segmentation, deblending and the catalog on a finished "
        "classification (no classifying; options not given: the last "
        "segmentation's)",
    )
    catalog = sub.add_parser(
        "catalog",
        help="re-run the catalog on a finished classification, reusing the "
        "segmentation maps when their settings match (options not given: the "
        "last segmentation's)",
    )
    status = sub.add_parser("status", help="show the ledger of a run directory")
    resub = sub.add_parser(
        "resubmit",
        help="re-run failed or missing tiles and finish the products "
        "(with the recorded settings; the options given override them)",
    )
    for command in (segment, catalog, status, resub):
        add_location_options(command, required=True)
    for command in (segment, catalog):
        # Not given: a local cluster without GPUs.
        add_options(command.add_argument_group(GROUPS["compute"]), RunSettings, CLUSTER_OPTIONS, keep_defaults=False)
        _downstream_options(command, recorded=LAST_DOWNSTREAM)
    compute = [name for name in RESUBMIT_OPTIONS if name in option_kind("compute")]
    add_options(
        resub.add_argument_group(GROUPS["compute"]),
        RunSettings,
        compute,
        keep_defaults=False,
        recorded="the run's recorded value",
    )
    add_options(
        resub.add_argument_group(GROUPS["storage"]),
        RunSettings,
        [name for name in RESUBMIT_OPTIONS if name not in compute],
        keep_defaults=False,
    )
    _downstream_options(resub)

    from pipeline.cli.train import add_parser as add_train_parser
    from pipeline.cli.view import add_parser as add_view_parser

    add_train_parser(sub)
    add_view_parser(sub)
    return parser

"""The downstream settings of a command: the options given, else (``segment`` and
``catalog``) the last downstream run's, else the defaults.

``run`` and ``resubmit`` take the options given over the defaults. ``segment`` and
``catalog`` parse their downstream options without defaults, so that only those given
are in the namespace, and fill the others from ``downstream.json``, the record of the
last segmentation and catalog (:attr:`RunLayout.downstream_record
<pipeline.rundir.layout.RunLayout.downstream_record>`, written by ``run``, ``segment`` and
``catalog``), then from the defaults. A TOML mosaic's own threshold is the default of
``--threshold`` (before the detection rule's); a recorded threshold is reused only with
the detection rule it was recorded with.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pipeline.cli.options import from_args
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location
from pipeline.settings import DownstreamSettings
from pipeline.settings.fields import option_text

__all__ = ["downstream_settings", "last_downstream", "written_line"]

logger = logging.getLogger(__name__)


def last_downstream(location: Location) -> dict[str, Any] | None:
    """The settings recorded by the last downstream run in ``location``, if any (an
    unreadable record is logged and ignored: the defaults apply).
    """
    record = RunLayout(location).downstream_record
    try:
        settings = record.read_json()["settings"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s: unreadable (%s); the default downstream settings apply", record, exc)
        return None
    return settings if isinstance(settings, dict) else None


def _mosaic_threshold(mosaic: str, mosaics_file: Path | None) -> float | None:
    """A TOML mosaic's own threshold, if it sets one."""
    from pipeline.inputs.mosaics import known_mosaics

    known = known_mosaics(mosaics_file)
    return known[mosaic].threshold if mosaic in known else None


def _resolved_defaults(location: Location) -> dict[str, Any]:
    """The values ``flux_band`` and ``max_segment_pixels`` take when not given (their
    owners decide: the model card's reddest band, 9 chunks of area).
    """
    from morpheus_core.cards import ModelCard
    from pipeline.downstream.large_segments import default_segment_limit
    from pipeline.inputs.model_cards import default_flux_band

    layout = RunLayout(location)
    cls = layout.classification.open_group(mode="r")
    bands = list(layout.mosaic.open_group(mode="r").attrs["bands"])
    recorded = cls.attrs.get("model_card")  # as ModelCard.to_dict wrote it
    return {
        "flux_band": default_flux_band(ModelCard.from_dict(recorded) if recorded else None, bands),
        "max_segment_pixels": default_segment_limit(int(cls["n"].chunks[0])),
    }


def downstream_settings(
    args: argparse.Namespace,
    mosaic: str,
    mosaics_file: Path | None,
    *,
    location: Location | None = None,
    echo: Callable[[str], None] | None = None,
) -> DownstreamSettings:
    """The command's downstream settings.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (options not given absent, for ``segment`` and
        ``catalog``).
    mosaic : str
        The run's mosaic (a TOML mosaic may set its own threshold).
    mosaics_file : Path, optional
        The run's mosaics file.
    location : Location, optional
        The run directory whose last downstream settings fill the options not given
        (``segment``, ``catalog``); ``None``: the defaults fill them.
    echo : callable, optional
        Receives ``reusing the last settings: --detection mixed ...`` when a reused
        value differs from what the command would take without the record.

    Raises
    ------
    InputError
        A value out of range (:class:`~pipeline.settings.DownstreamSettings`).
    """
    given = from_args(args, DownstreamSettings)
    last = last_downstream(location) if location is not None else None
    values = dict(given)
    reused: list[str] = []
    if last:
        reused = [name for name in _OPTIONS if name not in given and name in last]
        if "detection" in given and given["detection"] != last.get("detection"):
            reused = [name for name in reused if name != "threshold"]  # a threshold goes with its rule
        values.update({name: last[name] for name in reused})
    if values.get("threshold") is None:  # a TOML mosaic's own threshold, else the detection rule's default
        values["threshold"] = _mosaic_threshold(mosaic, mosaics_file)
    settings = DownstreamSettings(**values)
    if reused and echo is not None:
        fresh = downstream_settings(args, mosaic, mosaics_file)  # the same command without the record
        shown = _differing(settings, fresh, reused, location)
        if shown:
            echo(f"reusing the last settings: {' '.join(shown)} (give an option to change it)")
    return settings


#: The downstream settings that are options, in their order.
_OPTIONS = [f.name for f in dataclasses.fields(DownstreamSettings) if "help" in f.metadata]


def _differing(
    settings: DownstreamSettings, fresh: DownstreamSettings, reused: list[str], location: Location | None
) -> list[str]:
    """The reused options whose value differs from the one the command takes without
    the record (``fresh``), as the command line gives them (the detection rule first).
    """
    resolved: dict[str, Any] = {}
    if location is not None and {"flux_band", "max_segment_pixels"} & set(reused):
        try:
            resolved = _resolved_defaults(location)
        except (OSError, KeyError, ValueError) as exc:  # then shown: the run reports a bad store itself
            logger.debug("resolved defaults unavailable: %s", exc)
    shown = []
    for name in sorted(reused, key=lambda n: n != "detection"):
        value = getattr(settings, name)
        if value != resolved.get(name, getattr(fresh, name)):
            shown.append(option_text(DownstreamSettings, name, value))
    return shown


def written_line(outputs: Iterable[Path | str], run_dir: Path | str) -> str:
    """Where a command's products went, by folder: ``wrote: RUN/catalog/ (catalog.csv, ...),
    RUN/fits/ (segmap.fits, ...), RUN/colour.png``.
    """
    folders: dict[str, list[str]] = {}
    for path in outputs:
        parent, _, name = str(path).rpartition("/")
        folders.setdefault(parent, []).append(name)
    root = str(run_dir).rstrip("/")
    parts = []
    for parent, names in folders.items():
        if parent == root or len(names) == 1:
            parts += [f"{parent}/{name}" for name in names]
        else:
            parts.append(f"{parent}/ ({', '.join(names)})")
    return f"wrote: {', '.join(parts)}" if parts else "wrote: nothing"

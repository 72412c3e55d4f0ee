"""The downstream graph again on a finished classification (``segment``, ``catalog``).

:func:`redo_downstream` checks the run (its classification against its checksums, a
markers file) before starting a cluster, then runs
:func:`pipeline.downstream.driver.run_downstream` on it; :data:`SettingsFor` and
:func:`settings_for` turn the caller's settings, or a function of the recorded
mosaic, into the downstream settings (also those of ``resubmit``,
:func:`pipeline.run.resubmit`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.cluster.client import owned_client
from pipeline.downstream.driver import DownstreamSummary, run_downstream
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location, as_location
from pipeline.rundir.manifest import read_manifest
from pipeline.settings import DownstreamSettings

__all__ = ["SettingsFor", "redo_downstream", "settings_for"]

#: Downstream settings, or a function of the recorded mosaic (name, mosaics file) that
#: makes them (a TOML mosaic may set its own threshold).
SettingsFor = DownstreamSettings | Callable[[str, Path | None], DownstreamSettings] | None


def settings_for(downstream: SettingsFor, recorded: dict[str, Any]) -> DownstreamSettings | None:
    """The downstream settings of a run, given its recorded settings.

    Parameters
    ----------
    downstream : SettingsFor
        The settings, or a function of the recorded mosaic that makes them.
    recorded : dict
        The run's recorded settings (the manifest's ``config``: ``mosaic``, ``mosaics_file``).

    Returns
    -------
    DownstreamSettings or None
        ``None``: the defaults.
    """
    if not callable(downstream):
        return downstream
    mosaics_file = Path(recorded["mosaics_file"]) if recorded.get("mosaics_file") else None
    return downstream(recorded["mosaic"], mosaics_file)


def redo_downstream(
    run_dir: Path | str | Location,
    downstream: SettingsFor = None,
    *,
    reuse_segmentation: bool = False,
    storage_options: dict[str, Any] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    tls: bool = True,
    scheduler_security: Path | None = None,
    client: Any = None,
    echo: Any = print,
) -> DownstreamSummary:
    """Segmentation, deblending and the catalog again on a finished classification
    (the ``segment`` and ``catalog`` commands; ``catalog`` reuses matching maps).

    ``run_dir`` is a :class:`~pipeline.rundir.location.Location`, or a path or URL with its
    ``storage_options``. Checks the run, its classification and a markers file before
    starting a cluster (a local one, with TLS unless ``tls`` is false, or ``scheduler``,
    reached with ``scheduler_security``), which it closes again; ``client`` uses one given.

    Raises
    ------
    InputError
        No run, an unfinished or damaged classification (:mod:`pipeline.rundir.verified`),
        or a bad markers file.
    """
    from pipeline.inputs.ingest import read_wcs
    from pipeline.inputs.markers import read_markers
    from pipeline.rundir.verified import finished_classification, record_unrecorded, refuse_damaged_classification

    location = as_location(run_dir, storage_options)
    manifest = read_manifest(location)
    # Every file of the classification against its checksums before anything reads it
    # (the graph checks their sizes again).
    check = refuse_damaged_classification(location, manifest["run_id"])
    finished_classification(location)
    if check is not None and not check.recorded:  # merged before checksums were recorded
        echo(record_unrecorded(location, manifest["run_id"]))
    settings = settings_for(downstream, manifest["config"]) or DownstreamSettings()
    if settings.markers:  # refuse a bad markers file before starting a cluster
        mosaic = RunLayout(location).mosaic.open_group(mode="r")
        read_markers(settings.markers, wcs=read_wcs(mosaic), shape=tuple(mosaic.attrs["shape"]))
    cluster = {
        "scheduler": scheduler,
        "n_workers": workers,
        "gpu": "never",
        "tls": tls,
        "scheduler_security": scheduler_security,
    }
    with owned_client(cluster, client=client, echo=echo) as (client, _):
        return run_downstream(
            location,
            settings,
            client=client,
            echo=echo,
            run_id=manifest["run_id"],
            model=manifest.get("model", ""),
            precision=manifest["config"].get("precision", "float32"),
            reuse_segmentation=reuse_segmentation,
        )

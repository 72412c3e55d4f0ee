"""A run's ``manifest.json``: settings, versions, input checksums, the tile plan and the
run id, written when a run starts and checked when it resumes.
"""

from __future__ import annotations

import importlib.metadata
import time
import uuid
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.inputs.preflight import check_run_dir
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.ledger import atomic_write_json
from pipeline.rundir.location import Location
from pipeline.settings import RunSettings, upgrade_recorded

__all__ = ['check_or_write_manifest', 'check_resumable', 'prepare_run_dir', 'read_manifest', 'recorded_tile', 'software_versions']


def software_versions() -> dict[str, str]:
    """Versions of the packages a run's result depends on (recorded in the manifest)."""
    out = {}
    for pkg in ("morpheus-survey", "keras", "tensorflow", "dask", "distributed", "zarr", "astropy", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out



def read_manifest(run_dir: Path | str | Location,
                  storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of a run directory (a path, a URL or a Location).

    Raises
    ------
    InputError
        If the directory holds no run.
    """
    location = run_dir if isinstance(run_dir, Location) else Location(run_dir, storage_options)
    try:
        return RunLayout(location).manifest.read_json()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise InputError(f"{run_dir}: no run here (manifest.json not found)") from None



def prepare_run_dir(config: RunSettings) -> None:
    """Create the run directory; with ``restart``, first remove the old run's files.

    Called only after the inputs passed their checks, under the run directory's lock.
    ``restart`` refuses a folder that holds files but no run (no ``manifest.json``): it
    would delete the user's own (:func:`~pipeline.inputs.preflight.check_run_dir`).
    """
    run_dir = config.location
    check_run_dir(run_dir, restart=config.restart)  # again, now under the lock
    if config.restart and run_dir.exists():
        # The manifest goes last: an interrupted restart is still recognised as a run.
        for path in RunLayout(run_dir).run_files():
            path.remove(recursive=True)
    run_dir.makedirs()



def check_or_write_manifest(config: RunSettings, inputs: list[dict], plan: dict[str, Any], *,
                            card: dict[str, Any]) -> str:
    """Write the manifest of a new run, or check a resumed one against it; returns the run id.

    Parameters
    ----------
    config : RunSettings
        The run's settings (its result settings are compared on resume).
    inputs : list of dict
        The input files' names, sizes and checksums (as the ingest recorded them).
    plan : dict
        The tile plan (shape, tile, window, stride, tiles).
    card : dict
        The model card (:meth:`~morpheus_core.cards.ModelCard.to_dict`).

    Raises
    ------
    InputError
        A resumed run directory made with other inputs or result settings.
    """
    path = RunLayout(config.location).manifest
    if path.exists():
        old = path.read_json()
        config.refuse_other_results(old, changed_inputs=old.get("inputs") != inputs)
        old["config"] = config.to_json()
        atomic_write_json(path, old)
        return old["run_id"]
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    atomic_write_json(path, {
        "run_id": run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config.to_json(),
        "result_settings": config.result_settings(),
        "model": config.model_description(),
        "model_card": card,
        "inputs": inputs,
        "versions": software_versions(),
        "plan": plan,
    })
    return run_id



def check_resumable(config: RunSettings) -> None:
    """Refuse, before anything starts (no ingest, no cluster), to resume a run directory
    recorded with other result settings (:meth:`RunSettings.refuse_other_results
    <pipeline.settings.run.RunSettings.refuse_other_results>`); ``restart`` starts over.
    """
    path = RunLayout(config.location).manifest
    if not config.restart and path.exists():
        config.refuse_other_results(path.read_json())


def recorded_tile(location: Location) -> int | None:
    """The tile size recorded by the run in ``location``, if there is one."""
    try:
        return int(upgrade_recorded(RunLayout(location).manifest.read_json()["result_settings"])["tile"])
    except (OSError, ValueError, KeyError, TypeError):
        return None

"""A run's ``manifest.json``: settings, versions, input checksums, the tile plan and the
run id, written when a run starts and checked when it resumes; and the run directory
checked (:func:`check_run_dir`) and prepared (:func:`prepare_run_dir`) before it is written.
"""

from __future__ import annotations

import importlib.metadata
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from pipeline.errors import InputError
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location

if TYPE_CHECKING:  # the run directory records settings; it does not make them
    from pipeline.settings import RunSettings

__all__ = [
    "check_or_write_manifest",
    "check_resumable",
    "check_run_dir",
    "prepare_run_dir",
    "read_manifest",
    "recorded_tile",
    "software_versions",
]


def software_versions() -> dict[str, str]:
    """Versions of the packages a run's result depends on (recorded in the manifest)."""
    out = {}
    for pkg in ("morpheus-survey", "keras", "tensorflow", "dask", "distributed", "zarr", "astropy", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def read_manifest(run_dir: Location) -> dict[str, Any]:
    """The manifest of a run directory.

    Raises
    ------
    InputError
        If the directory holds no run.
    """
    try:
        return RunLayout(run_dir).manifest.read_json()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise InputError(f"{run_dir}: no run here ({RunLayout(run_dir).manifest.name} not found)") from None


def prepare_run_dir(run_dir: Location, *, restart: bool) -> None:
    """Create the run directory; with ``restart``, first remove the old run's files.

    Called only after the inputs passed their checks, under the run directory's lock.
    ``restart`` refuses a folder that holds files but no run (no ``manifest.json``): it
    would delete the user's own (:func:`check_run_dir`).
    """
    check_run_dir(run_dir, restart=restart)  # again, now under the lock
    if restart and run_dir.exists():
        # The manifest goes last: an interrupted restart is still recognised as a run.
        for path in RunLayout(run_dir).run_files():
            path.remove(recursive=True)
    run_dir.makedirs()


def check_or_write_manifest(
    run_dir: Location, config: RunSettings, inputs: list[dict], plan: dict[str, Any], *, card: dict[str, Any]
) -> str:
    """Write the manifest of a new run, or check a resumed one against it; returns the run id.

    Parameters
    ----------
    run_dir : Location
        The run directory.
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
    path = RunLayout(run_dir).manifest
    if path.exists():
        old = path.read_json()
        config.refuse_other_results(old, changed_inputs=old.get("inputs") != inputs)
        old["config"] = config.to_json()
        path.write_json(old)
        return old["run_id"]
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    path.write_json(
        {
            "run_id": run_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": config.to_json(),
            "result_settings": config.result_settings(),
            "model": config.model_description(),
            "model_card": card,
            "inputs": inputs,
            "versions": software_versions(),
            "plan": plan,
        }
    )
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
        return int(RunLayout(location).manifest.read_json()["result_settings"]["tile"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_run_dir(run_dir: Location, *, restart: bool) -> None:
    """Refuse a run directory that cannot be used, before anything is read or written.

    Changes nothing: a refused command leaves the folder as it was. For a local path:
    the folder (or, if it does not exist yet, its nearest existing parent) must be a
    folder this process can write in. With ``restart``: the folder must hold a run
    (``manifest.json``), be empty or not exist, since ``--restart`` deletes the run's
    files and these would be the user's.

    Raises
    ------
    InputError
        Naming the folder and the problem.
    """
    layout = RunLayout(run_dir)
    if run_dir.is_local:
        path = run_dir.path
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                raise InputError(
                    f"{path}: cannot use as the run directory: it is not a folder; choose another --run-dir"
                )
            if not os.access(path, os.W_OK | os.X_OK):
                raise InputError(
                    f"{path}: cannot write in the run directory (permission denied); choose another --run-dir"
                )
        else:
            parent = path.parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            if not parent.is_dir():
                raise InputError(
                    f"{path}: cannot create the run directory ({parent} is not a folder); choose another --run-dir"
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise InputError(
                    f"{path}: cannot create the run directory (permission denied in {parent}); choose another --run-dir"
                )
    if restart and run_dir.exists() and not layout.manifest.exists():
        others = [n for n in run_dir.listdir() if not n.startswith(".") and n != layout.log.name]
        if others:
            raise InputError(
                f"{run_dir}: --restart refused: this folder holds no run (no {layout.manifest.name}) but other files "
                f"({', '.join(sorted(others)[:5])}{', ...' if len(others) > 5 else ''}); choose an empty or new "
                "--run-dir"
            )

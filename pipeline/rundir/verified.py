"""Whether a run's finished stores can be used: their files against their checksum records.

:mod:`pipeline.rundir.checksums` records and checks the files of a Zarr store; this module
says what that means for the two stores of a run directory that are used again after
they are finished (:class:`pipeline.rundir.layout.RunLayout` names every file):

- ``classification.zarr``, the only copy of the classification once the partials are
  removed. Its record, ``ledger/classification.checksums.json``, is written by the
  merge and named by ``ledger/merged.json``. A damaged store is refused
  (:func:`damaged_classification`: what is wrong, and what to do), or merged again
  when every tile's partial is kept (:func:`partials_kept`). A ``merged.json``
  without ``checksums`` is of a run made before they were recorded: what can be
  checked without a record is checked (:func:`classification_gaps`), then the
  checksums are recorded from the store as it is (:func:`record_unrecorded`).
- ``segmentation.zarr``, reused by ``catalog``. Its record,
  ``ledger/segmentation.checksums.json``, is written when the downstream graph
  finishes it; a store that does not match it, or has none, is made again
  (:func:`segmentation_problem`).

``status`` reports both (:func:`store_report`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from pipeline.errors import InputError
from pipeline.program import command
from pipeline.rundir.checksums import (
    StoreCheck,
    StoreProblem,
    chunk_of,
    list_files,
    record_store,
    verify_record,
    write_record,
)
from pipeline.rundir.layout import INTERNAL_CATALOG, RunLayout
from pipeline.rundir.ledger import Ledger, merged_record
from pipeline.rundir.location import ZARR_METADATA, Location, as_location

__all__ = [
    "finished_classification",
    "check_classification_store",
    "classification_advice",
    "classification_gaps",
    "damaged_classification",
    "merged_store_complete",
    "partials_kept",
    "record_unrecorded",
    "refuse_damaged_classification",
    "segmentation_problem",
    "store_report",
]


def classification_gaps(store: Location, classes: Iterable[str] = ("mean", "rank")) -> list[StoreProblem]:
    """What can be checked in a classification store without a checksum record.

    A chunk of ``n`` that has a file holds counted pixels, and every counted pixel has
    class means and rank votes that sum to 1, so the same chunk of ``mean`` and
    ``rank`` must have a file too (``variance`` may be all zero); and a chunk of
    ``mean`` with a file must have counted pixels. One listing; finds deleted chunk
    files, not altered ones.
    """
    listed = list_files(store)
    chunks: dict[str, set[tuple[int, ...]]] = {}
    for key in listed:
        array, index = chunk_of(key)
        if index is not None:
            chunks.setdefault(array, set()).add(index[-2:])
    counted = chunks.get("n", set())
    missing: dict[str, list[str]] = {}  # file -> the arrays that say it should be there
    for name in classes:
        have = chunks.get(name, set())
        for y, x in counted - have:
            missing.setdefault(f"{name}/c/0/{y}/{x}", []).append("n")
        for y, x in have - counted:
            missing.setdefault(f"n/c/{y}/{x}", []).append(name)
    return [
        StoreProblem(
            str(store),
            key,
            f"is missing ({' and '.join(arrays)} {'has' if len(arrays) == 1 else 'have'} values in this chunk)",
        )
        for key, arrays in sorted(missing.items())
    ]


def check_classification_store(
    run_dir: Location, run_id: str | None = None, *, hashes: bool = True
) -> StoreCheck | None:
    """Check a run's merged ``classification.zarr`` against its checksum record.

    Parameters
    ----------
    run_dir : Location
        The run directory.
    run_id : str, optional
        The run the merge must belong to.
    hashes : bool
        Read every file and compare checksums (else sizes only, one listing).

    Returns
    -------
    StoreCheck or None
        None when the run is not recorded as merged (``ledger/merged.json``): there is
        no record to check against, the store is not finished or is being merged. A
        store that is missing or lacks its ``complete`` mark although the merge is
        recorded is damaged. For a run merged before checksums were recorded,
        ``recorded`` is False and the problems are those :func:`classification_gaps`
        finds.
    """
    merged = merged_record(run_dir, run_id)
    if merged is None:
        return None
    layout = RunLayout(run_dir)
    store = layout.classification
    if not _marked_complete(store, run_id):
        return StoreCheck(
            store,
            [
                StoreProblem(
                    str(store),
                    ZARR_METADATA,
                    f"is missing, unreadable or not marked complete, although {layout.merged_record} records the merge",
                )
            ],
            recorded="checksums" in merged,
        )
    if "checksums" not in merged:
        return StoreCheck(store, classification_gaps(store), recorded=False)
    return verify_record(store, layout.classification_checksums, run_id=run_id, hashes=hashes)


def _marked_complete(store: Location, run_id: str | None) -> bool:
    """True if the store's metadata reads and holds the ``complete`` mark (of run ``run_id``)."""
    try:
        attrs = store.open_group(mode="r").attrs
    except (OSError, ValueError):  # missing, or unreadable metadata
        return False
    return bool(attrs.get("complete")) and (run_id is None or attrs.get("run_id") == run_id)


def merged_store_complete(run_dir: Location, run_id: str) -> bool:
    """True if run ``run_id``'s tiles are recorded as merged (``merged.json``) into its
    classification store, which holds its ``complete`` mark and run id (its files are
    not checked: :func:`check_classification_store`).
    """
    return merged_record(run_dir, run_id) is not None and _marked_complete(RunLayout(run_dir).classification, run_id)


def refuse_damaged_classification(run_dir: Location, run_id: str | None, *, hashes: bool = True) -> StoreCheck | None:
    """Raise :class:`~pipeline.errors.InputError` if the merged classification store of
    run ``run_id`` does not match its checksum record (naming the array, the chunk and
    the file, and what to do); returns the check (None: not recorded as merged, nothing
    to check against).
    """
    check = check_classification_store(run_dir, run_id, hashes=hashes) if run_id else None
    if check is not None and not check.ok:
        raise InputError(damaged_classification(check, run_dir, kept=partials_kept(run_dir, run_id)))
    return check


def partials_kept(run_dir: Location, run_id: str | None = None) -> bool:
    """True when every tile merged into the classification still has its partial and its
    ``.done`` record (``--keep-partials``): the store can be merged again from them.
    """
    merged = merged_record(run_dir, run_id)
    return merged is not None and len(Ledger(run_dir).finished()) >= int(merged.get("tiles", 0)) > 0


def classification_advice(run_dir: Location | str, *, kept: bool) -> str:
    """What to do about a damaged classification store.

    ``kept``: :func:`partials_kept` (then ``resubmit``, or ``run`` again, merges them again).
    """
    if kept:
        return (
            f"the tiles' partials are kept: '{command('resubmit', '--run-dir', run_dir)}' (or 'run' "
            "again) merges them again"
        )
    return (
        "the tiles' partials were removed after the merge, so it cannot be merged again: start over with "
        f"'{command('run', '--restart')}' and the run's options (every tile is classified again; "
        "--keep-partials keeps what a later merge needs)"
    )


def damaged_classification(check: StoreCheck, run_dir: Location | str, *, kept: bool) -> str:
    """The one-line refusal for a damaged classification store: what is wrong, what to do."""
    return f"{check.message()}; {classification_advice(run_dir, kept=kept)}"


def record_unrecorded(run_dir: Location, run_id: str) -> str:
    """Record the checksums of a classification store merged before they were recorded,
    from the store as it is, and name them in ``merged.json``; returns the note to show.
    """
    layout = RunLayout(run_dir)
    write_record(
        layout.classification_checksums, layout.classification, record_store(layout.classification), run_id=run_id
    )
    Ledger(run_dir).mark_merged(run_id, int((merged_record(run_dir, run_id) or {}).get("tiles", 0)))
    return (
        f"note: {layout.classification} was merged before its checksums were recorded; recorded them now in "
        f"{layout.classification_checksums} (a chunk damaged before now would go unnoticed: --restart rebuilds "
        "it)"
    )


def segmentation_problem(run_dir: Location, run_id: str | None = None, name: str = INTERNAL_CATALOG) -> str:
    """Why the segmentation store of catalog ``name`` (``segmentation.zarr`` for the internal
    one, :meth:`RunLayout.segmentation_store`) must not be reused (``""``: its files match its record).
    """
    layout = RunLayout(run_dir)
    store, checksums = layout.segmentation_store(name), layout.segmentation_checksums_of(name)
    if not checksums.exists():
        return f"{store} has no checksum record (made before they were recorded)"
    check = verify_record(store, checksums, run_id=run_id)
    return "" if check.ok else check.message()


def store_report(run_dir: Location, run_id: str) -> dict[str, dict[str, Any]]:
    """``status``'s view of the finished stores: per store, ``problems`` (each naming the
    array, the chunk and the file), ``recorded`` (False: made before checksums were
    recorded) and ``advice`` (what to do). Reads every file; writes nothing.
    """
    layout = RunLayout(run_dir)
    out: dict[str, dict[str, Any]] = {}
    check = check_classification_store(run_dir, run_id)
    if check is not None:
        if not check.ok:
            advice = classification_advice(run_dir, kept=partials_kept(run_dir, run_id))
        else:
            advice = "" if check.recorded else "the next 'run', 'resubmit', 'segment' or 'catalog' records them"
        out["classification"] = {
            "problems": [str(p) for p in check.problems],
            "recorded": check.recorded,
            "advice": advice,
        }
    seg = layout.segmentation
    if _marked_complete(seg, None):
        recorded = layout.segmentation_checksums.exists()
        problems = [str(p) for p in verify_record(seg, layout.segmentation_checksums).problems] if recorded else []
        advice = (
            "'catalog' makes it again rather than reuse it"
            if not recorded
            else f"'{command('catalog', '--run-dir', run_dir)}' or 'segment' makes it again"
            if problems
            else ""
        )
        out["segmentation"] = {"problems": problems, "recorded": recorded, "advice": advice}
    return out


def finished_classification(run_dir: Location | str | os.PathLike[str]) -> Any:
    """Open a run directory's finished classification: the one answer to "is the
    classification finished?", with one message for each way it is not.

    The store's files' sizes are checked against their checksum record (one listing;
    ``run``, ``segment`` and ``catalog`` compare the checksums themselves before:
    :func:`refuse_damaged_classification`).

    Returns
    -------
    zarr.Group
        The classification store, opened read-only.

    Raises
    ------
    InputError
        No classification, one that is not finished, or one whose files do not match
        their checksum record (naming the array, the chunk and the file, and what to do).
    """
    run_dir = as_location(run_dir)
    layout = RunLayout(run_dir)
    store = layout.classification
    if not layout.manifest.exists():
        raise InputError(
            f"{run_dir}: no run here ({layout.manifest.name} not found); classify first with '{command('run')}'"
        )
    if not store.is_zarr_group():
        raise InputError(
            f"{run_dir}: no classification ({store.name} missing); finish the run with "
            f"'{command('run')}' or 'resubmit' first"
        )
    group = store.open_group(mode="r")
    if not group.attrs.get("complete", False):
        raise InputError(
            f"{store}: the classification is not finished (tiles failed or pending); run "
            f"'{command('resubmit', '--run-dir', run_dir)}' first"
        )
    refuse_damaged_classification(run_dir, group.attrs.get("run_id"), hashes=False)
    return group

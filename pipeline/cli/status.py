"""``python -m pipeline status``: a run directory's ledger, its products and whether its
stores match their checksum records (:func:`pipeline.rundir.status.status`).
"""

from __future__ import annotations

import argparse

__all__ = ["print_status", "status_command"]


def status_command(args: argparse.Namespace) -> None:
    """Print the status of ``args.run_dir`` (read only: no lock, no log file).

    Raises
    ------
    InputError
        No run in the folder, or bad storage options.
    """
    from pipeline.cli.options import storage_options_from
    from pipeline.rundir.status import status

    print_status(status(args.run_dir, storage_options_from(args.storage_option)))


def print_status(report: dict) -> None:
    """Print a run directory's ledger."""
    states = report["states"]
    manifest = report["manifest"]
    print(f"run {manifest['run_id']} of mosaic {manifest['config']['mosaic']} ({manifest['model']})")
    corrupt = report.get("corrupt", {})
    print(
        f"tiles: {len(states['finished'])} finished, {len(states['failed'])} failed, "
        f"{len(states['pending'])} pending"
        f"{f' ({len(corrupt)} with a bad partial)' if corrupt else ''}; "
        f"products {'written' if report['products'] else 'not written'}"
    )
    for name, record in report["failed"].items():
        print(f"  {name}: {record['error']}")
    for name, problem in sorted(corrupt.items()):
        print(f"  {problem}: 'resubmit' recomputes it")
    for name, store in report.get("stores", {}).items():
        if not store["recorded"] and not store["problems"]:
            print(f"{name}.zarr: unverified (made before checksums were recorded; {store['advice']})")
        elif store["problems"]:
            print(
                f"{name}.zarr: DAMAGED, {len(store['problems'])} file(s) differ from its checksum record; "
                f"{store['advice']}"
            )
            for problem in store["problems"]:
                print(f"  {problem}")
        else:
            print(f"{name}.zarr: every file matches its checksum record")

"""``status``: a run directory's tiles by state, failures, products and stores."""

from __future__ import annotations

import os
from typing import Any

from morpheus_core.tiling import plan_tiles
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.ledger import Ledger, tile_id
from pipeline.rundir.location import Location, as_location
from pipeline.rundir.manifest import read_manifest

__all__ = ["status"]


def status(run_dir: Location | str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ledger of a run directory: tiles by state, the failures' errors, and whether the
    finished stores match their checksum records.

    ``run_dir`` is a :class:`~pipeline.rundir.location.Location`, or a path or URL with the
    ``storage_options`` of a URL run directory (as for :class:`~pipeline.settings.run.RunSettings`).
    The stores' files are read and hashed (:mod:`pipeline.rundir.checksums`); nothing is
    written. ``stores`` holds, per store, the problems found (strings naming the array,
    the chunk and the file) and what to do, or ``unverified`` for a store made before
    checksums were recorded.
    """
    from pipeline.rundir.verified import merged_store_complete, store_report

    location = as_location(run_dir, storage_options)
    manifest = read_manifest(location)
    plan = {**manifest["config"], **manifest["plan"]}  # what the run planned, as it recorded it
    tiles = plan_tiles(tuple(plan["shape"]), int(plan["tile"]), window=int(plan["window"]), stride=int(plan["stride"]))
    ledger = Ledger(location)
    names = [tile_id(t) for t in tiles]
    if merged_store_complete(location, manifest["run_id"]):  # partials merged (and maybe removed)
        problems: dict[str, str] = {}
        states = {"finished": names, "failed": [], "pending": []}
    else:
        _, problems = ledger.verify(names, run_id=manifest["run_id"])
        states = ledger.summary(names, untrusted=set(problems))
    layout = RunLayout(location)
    classes = (manifest.get("model_card") or {}).get("classes")
    products = [*layout.classification_fits(*([tuple(classes)] if classes else [])), layout.downstream_record]
    missing = [str(p) for p in products if not p.exists()]
    return {
        "manifest": manifest,
        "states": states,
        "failed": ledger.failed(),
        "corrupt": problems,
        "products": not missing,
        "missing_products": missing,
        "stores": store_report(location, manifest["run_id"]),
    }

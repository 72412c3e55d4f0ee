"""The classification on a cluster: one task per unfinished tile, the exact merge of
their partial statistics into ``classification.zarr``, and its FITS products.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from pathlib import Path
from typing import Any

from morpheus_core.tiling import Tile
from pipeline.classify.progress import PROGRESS_TOPIC, WindowsBar
from pipeline.classify.tasks import ClassifierPlugin, create_output_store, merge_chunk, overlapping, run_tile
from pipeline.errors import InputError, RunError
from pipeline.inputs.model_cards import card_for, header_cards
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.ledger import Ledger, tile_id
from pipeline.rundir.location import Location
from pipeline.rundir.staging import staged, written_locally
from pipeline.settings import RunSettings

logger = logging.getLogger(__name__)

__all__ = ['classification_merged', 'classify_tiles', 'export_fits', 'merge_tiles']


def classification_merged(location: Location, run_id: str, *, echo: Any = None) -> bool:
    """True if run ``run_id``'s tiles are merged into its complete classification store
    and the store's files match their checksum record (:mod:`pipeline.rundir.checksums`).

    The merged store is the only copy of the classification once the partials are
    removed, so it is checked before anything reads it. A damaged store (a chunk file
    missing, truncated or altered) is merged again when every tile's partial is kept
    (``--keep-partials``): ``echo`` says so and False is returned, so that the run
    verifies the partials and merges them; without them it is refused. A store merged
    before checksums were recorded gets them now, from the store as it is, once the
    checks that need no record pass (:func:`~pipeline.rundir.verified.classification_gaps`);
    ``echo`` says so.

    Raises
    ------
    InputError
        The store is damaged and the partials needed to merge it again are gone.
    """
    from pipeline.rundir.verified import (
        check_classification_store,
        damaged_classification,
        partials_kept,
        record_unrecorded,
    )

    check = check_classification_store(location, run_id)
    if check is None:  # not merged yet
        return False
    if check.ok:
        if not check.recorded:  # merged before checksums were recorded
            note = record_unrecorded(location, run_id)
            if echo is not None:
                echo(note)
        return True
    if partials_kept(location, run_id):
        if echo is not None:
            echo(f"warning: {check.message()}: the store is merged again from the kept partials")
        return False
    raise InputError(damaged_classification(check, location, kept=False))



def classify_tiles(client: Any, todo: list[Tile], store: Location, config: RunSettings, ledger: Ledger,
                   resources: dict | None, run_id: str) -> tuple[int, list[str]]:
    """Run one :func:`~pipeline.classify.tasks.run_tile` task per tile of ``todo``.

    A tile that keeps failing after its retries is recorded in the ledger with its
    error and traceback; the others go on. The windows evaluated drive a progress bar
    (:class:`~pipeline.classify.progress.WindowsBar`, when ``config.progress``).

    Returns
    -------
    executed : int
        Tiles finished by this call.
    failed : list of str
        Tiles that failed, sorted.
    """
    from distributed import as_completed

    executed, failed = 0, []

    config_json = config.to_json()
    # Workers may run in another working directory: give them the run directory as an
    # absolute path (or its URL).
    config_json["run_dir"] = str(config.location)
    client.register_plugin(ClassifierPlugin(config_json), name=ClassifierPlugin.name)
    futures = {
        client.submit(run_tile, tile, store, config_json, run_id, key=f"tile-{tile_id(tile)}-{uuid.uuid4().hex[:6]}",
                      retries=config.retries, resources=resources, pure=False): tile_id(tile)
        for tile in todo
    }
    bar = WindowsBar({tile_id(t): t.n_windows(config.window, config.stride) for t in todo}, config.progress)
    client.subscribe_topic(PROGRESS_TOPIC, bar.event)
    try:
        for future in as_completed(futures):
            name = futures.pop(future)
            if future.status == "finished":
                executed += 1
            else:
                exc = future.exception()
                tb = "".join(traceback.format_exception(type(exc), exc, future.traceback()))
                ledger.mark_failed(name, f"{type(exc).__name__}: {exc}", tb)
                failed.append(name)
                logger.error("tile %s failed: %s", name, exc)
            # Forget the result (the ledger holds it), so that losing the worker that
            # holds it later does not make the scheduler recompute the tile.
            future.release()
            bar.tile_done(name)
    finally:
        client.unsubscribe_topic(PROGRESS_TOPIC)
        bar.close()
    return executed, sorted(failed)



def merge_tiles(client, tiles: list[Tile], config: RunSettings, attrs: dict, shape: tuple[int, int], run_id: str,
           ledger: Ledger) -> None:
    """Merge the verified partials into ``classification.zarr`` and record its checksums.

    On a file system the new store is built aside and swapped in when complete, so a
    failed merge leaves a finished classification as it was; an object store cannot
    rename a folder, so the store is rebuilt in place and its ``complete`` mark,
    written last, tells a finished store from an interrupted one. A partial that fails
    its check while merging makes its tile pending again (RunError naming it).

    The size and SHA-256 of every file of the finished store are computed on the
    workers (reading back what the merge tasks wrote) and written to
    ``ledger/classification.checksums.json`` (:mod:`pipeline.rundir.checksums`), before
    ``merged.json`` (:meth:`~pipeline.rundir.ledger.Ledger.mark_merged`) names them.
    """
    from pipeline.rundir.checksums import record_store, write_record
    from pipeline.rundir.ledger import PartialError

    layout = RunLayout(config.location)
    # Each merge task gets only the tiles overlapping its chunk, found once here.
    overlaps = [overlapping(tiles, target.core_box) for target in tiles]
    try:
        with staged(layout.classification) as work:
            if not work.is_local:
                work.remove(recursive=True)
            create_output_store(work, shape, config.tile, {
                "classes": list(card_for(config.model).classes), "model_card": card_for(config.model).to_dict(),
                "bands": attrs["bands"], "wcs_header": attrs["wcs_header"],
                "precision": config.precision, "model": config.model_description(), "run_id": run_id,
            })
            futures = client.map(merge_chunk, tiles, overlaps, run_dir=config.location,
                                 out_store=work, run_id=run_id, pure=False)
            client.gather(futures)
            # Only now is the classification finished: the downstream graph checks this mark.
            work.open_group(mode="r+").attrs["complete"] = True
            files = record_store(work, client=client)  # keys are relative: the same after the swap
    except PartialError as exc:
        ledger.discard(exc.tile)
        raise RunError(f"{exc}; the tile now counts as pending: run 'python -m pipeline resubmit --run-dir "
                       f"{config.run_dir}'") from None
    write_record(layout.classification_checksums, layout.classification, files, run_id=run_id)



def export_fits(config: RunSettings, run_id: str, wcs_header: str, *, merged_before: bool = False
                 ) -> list[Path | str]:
    """The classification's FITS products (:func:`pipeline.products.classification.write_classification_products`);
    for an object store written locally, then uploaded (:class:`~pipeline.rundir.staging.written_locally`).

    A run whose store was merged before this command keeps its FITS products when all
    of them are there: each is written atomically from that same store (7.3 GB at
    10^8 pixels, not rewritten on every resume); a missing one has them all written.
    """
    from pipeline.products.classification import write_classification_products
    from pipeline.products.provenance import provenance

    layout = RunLayout(config.location)
    if merged_before:
        existing = [*layout.classification_fits(card_for(config.model).classes), layout.fits / "coverage.fits"]
        if all(p.exists() for p in existing):
            return [p.path if p.is_local else str(p) for p in existing]
    cards = provenance(run_id, model=config.model_description(), precision=config.precision,
                       extra={"STRIDE": (config.stride, "window stride (pixels)"),
                              **header_cards(card_for(config.model))})
    with written_locally(config.location) as local:
        written = write_classification_products(
            local.root, classification=layout.classification.open_group(mode="r"),
            coverage=layout.mosaic.open_group(mode="r")["coverage"], wcs_header=wcs_header, cards=cards,
            strip=config.tile)
    return [local.final(p) for p in written]

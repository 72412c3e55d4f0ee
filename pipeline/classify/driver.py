"""The classification on a cluster: one task per unfinished tile, the exact merge of
their partial statistics into ``classification.zarr``, and its FITS products.

Each function takes the run's :class:`~pipeline.classify.job.ClassificationJob`: its
settings, run directory, run id, model card and ledger, made once per command.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from pathlib import Path
from typing import Any

from morpheus_core.tiling import Tile
from pipeline.classify.job import ClassificationJob
from pipeline.classify.progress import PROGRESS_TOPIC, WindowsBar
from pipeline.classify.tasks import ClassifierPlugin, create_output_store, merge_chunk, overlapping, run_tile
from pipeline.errors import InputError, RunError
from pipeline.inputs.model_cards import header_cards
from pipeline.program import command
from pipeline.rundir.ledger import tile_id
from pipeline.rundir.staging import staged, written_locally

logger = logging.getLogger(__name__)

__all__ = ["classification_merged", "classify_tiles", "export_fits", "merge_tiles"]


def classification_merged(job: ClassificationJob, *, echo: Any = None) -> bool:
    """True if the job's tiles are merged into its run's complete classification store
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

    check = check_classification_store(job.run_dir, job.run_id)
    if check is None:  # not merged yet
        return False
    if check.ok:
        if not check.recorded:  # merged before checksums were recorded
            note = record_unrecorded(job.run_dir, job.run_id)
            if echo is not None:
                echo(note)
        return True
    if partials_kept(job.run_dir, job.run_id):
        if echo is not None:
            echo(f"warning: {check.message()}: the store is merged again from the kept partials")
        return False
    raise InputError(damaged_classification(check, job.run_dir, kept=False))


def classify_tiles(
    client: Any, job: ClassificationJob, todo: list[Tile], resources: dict | None
) -> tuple[int, list[str]]:
    """Run one :func:`~pipeline.classify.tasks.run_tile` task per tile of ``todo``
    (``resources``: what each task asks of a worker, :func:`~pipeline.cluster.info.gpu_resources`).

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
    config = job.config
    client.register_plugin(ClassifierPlugin(job), name=ClassifierPlugin.name)
    futures = {
        client.submit(
            run_tile,
            tile,
            job,
            key=f"tile-{tile_id(tile)}-{uuid.uuid4().hex[:6]}",
            retries=config.retries,
            resources=resources,
            pure=False,
        ): tile_id(tile)
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
                job.ledger.mark_failed(name, f"{type(exc).__name__}: {exc}", tb)
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


def merge_tiles(client: Any, job: ClassificationJob, tiles: list[Tile], mosaic_attrs: dict[str, Any]) -> None:
    """Merge the verified partials of ``tiles`` (the whole plan) into ``classification.zarr``,
    record its checksums and mark the tiles merged.

    ``mosaic_attrs`` are the mosaic store's attributes (its shape, bands and WCS).

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

    config, layout = job.config, job.layout
    # Each merge task gets only the tiles overlapping its chunk, found once here.
    overlaps = [overlapping(tiles, target.core_box) for target in tiles]
    try:
        with staged(layout.classification) as work:
            if not work.is_local:
                work.remove(recursive=True)
            create_output_store(
                work,
                tuple(mosaic_attrs["shape"]),
                config.tile,
                {
                    "classes": list(job.card.classes),
                    "model_card": job.card.to_dict(),
                    "bands": mosaic_attrs["bands"],
                    "wcs_header": mosaic_attrs["wcs_header"],
                    "precision": config.precision,
                    "model": config.model_description(),
                    "run_id": job.run_id,
                },
            )
            futures = client.map(merge_chunk, tiles, overlaps, job=job, out_store=work, pure=False)
            client.gather(futures)
            # Only now is the classification finished: the downstream graph checks this mark.
            work.open_group(mode="r+").attrs["complete"] = True
            files = record_store(work, client=client)  # keys are relative: the same after the swap
    except PartialError as exc:
        job.ledger.discard(exc.tile)
        raise RunError(
            f"{exc}; the tile now counts as pending: run '{command('resubmit', '--run-dir', config.run_dir)}'"
        ) from None
    write_record(layout.classification_checksums, layout.classification, files, run_id=job.run_id)
    job.ledger.mark_merged(job.run_id, len(tiles))


def export_fits(job: ClassificationJob, wcs_header: str, *, merged_before: bool = False) -> list[Path | str]:
    """The classification's FITS products (:func:`pipeline.products.classification.write_classification_products`);
    for an object store written locally, then uploaded (:class:`~pipeline.rundir.staging.written_locally`).

    A run whose store was merged before this command keeps its FITS products when all
    of them are there: each is written atomically from that same store (7.3 GB at
    10^8 pixels, not rewritten on every resume); a missing one has them all written.
    """
    from pipeline.products.classification import write_classification_products
    from pipeline.products.provenance import input_cards, provenance

    config, layout = job.config, job.layout
    if merged_before:
        existing = [*layout.classification_fits(job.card.classes), layout.fits_file("coverage")]
        if all(p.exists() for p in existing):
            return [p.path if p.is_local else str(p) for p in existing]
    mosaic = layout.mosaic.open_group(mode="r")
    cards = provenance(
        job.run_id,
        model=config.model_description(),
        precision=config.precision,
        extra={
            "STRIDE": (config.stride, "window stride (pixels)"),
            **header_cards(job.card),
            **input_cards(mosaic.attrs.get("inputs", [])),
        },
    )
    with written_locally(job.run_dir) as local:
        written = write_classification_products(
            local.root,
            classification=layout.classification.open_group(mode="r"),
            coverage=mosaic["coverage"],
            wcs_header=wcs_header,
            cards=cards,
            strip=config.tile,
        )
    return [local.final(p) for p in written]

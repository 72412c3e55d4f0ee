"""One classification run, end to end: inputs -> Zarr -> Dask tiles -> merged products.

The run directory holds everything (see README): ``manifest.json`` (settings,
versions, input checksums, chunk plan), ``ledger/`` and ``partials/`` (per-tile state
and partial statistics), ``mosaic.zarr`` (the ingested bands), ``classification.zarr``
and ``fits/`` (the products). Running again on the same directory resumes: finished
tiles are never recomputed. Changed inputs or settings are refused unless the caller
asks to start over.

The run directory is a local (or shared) path or an fsspec URL such as
``s3://bucket/run`` (:mod:`pipeline.rundir.location`); everything above lives there either
way. The FITS products are written locally first and then uploaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from morpheus_core.tiling import Tile, plan_tiles
from pipeline.classify.driver import classification_merged, classify_tiles, export_fits, merge_tiles
from pipeline.downstream.driver import DownstreamSummary, run_downstream
from pipeline.errors import RunError
from pipeline.inputs.ingest import BandSet, ingest, validate_bands
from pipeline.inputs.model_cards import card_for, pixel_scale_arcsec
from pipeline.inputs.mosaics import resolve_mosaic
from pipeline.inputs.preflight import (
    check_card,
    check_distinct_files,
    check_flux_band,
    check_pixel_scale,
    check_run_dir,
    check_usable_pixels,
    check_weights,
    fit_tile,
    order_bands,
)
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.ledger import Ledger, tile_id
from pipeline.rundir.location import Location
from pipeline.rundir.manifest import check_or_write_manifest, prepare_run_dir, read_manifest, recorded_tile
from pipeline.settings import DownstreamSettings, RunSettings
from pipeline.timing import stage

if TYPE_CHECKING:
    from pipeline.rundir.lock import HeldLock

logger = logging.getLogger(__name__)

#: How a command takes the run directory's lock once its inputs passed their checks:
#: called with the run directory, it gives a context manager holding the lock
#: (:func:`pipeline.rundir.lock.run_lock`; the command line's also starts the log file there).
Claim = Callable[[Location], AbstractContextManager["HeldLock"]]


def claim_lock(command: str) -> Claim:
    """The default :data:`Claim`: :func:`pipeline.rundir.lock.run_lock` for ``command``."""
    def claim(location: Location) -> AbstractContextManager[HeldLock]:
        from pipeline.rundir.lock import run_lock

        return run_lock(location, command)

    return claim


@dataclass
class RunSummary:
    """What a run did."""

    run_dir: Path | str
    tiles: int
    finished_before: int
    executed: int = 0
    failed: list[str] = field(default_factory=list)
    retried: int = 0
    seconds: float = 0.0
    classify_seconds: float = 0.0
    windows: int = 0
    dashboard: str | None = None
    cluster: str = ""
    outputs: list[Path | str] = field(default_factory=list)
    downstream: DownstreamSummary | None = None
    partials_removed: int = 0

    def lines(self) -> list[str]:
        """A short human-readable summary (``windows``: those of the tiles finished by
        this command, failed runs included).
        """
        rate = self.windows / self.classify_seconds if self.classify_seconds else 0.0
        out = [
            f"tiles: {self.tiles} total, {self.finished_before} already finished, "
            f"{self.executed} run now, {len(self.failed)} failed, {self.retried} retried",
            f"time: {self.seconds:.1f} s ({self.windows} windows, {rate:.0f} windows/s) on {self.cluster}",
        ]
        if self.failed:
            out.append(f"failed tiles: {', '.join(self.failed)}")
        if self.outputs:
            out.append(f"outputs: {self.run_dir}/classification.zarr, {self.run_dir}/fits/, "
                       f"{self.run_dir}/catalog/, {self.run_dir}/colour.png")
        return out


def check_inputs(config: RunSettings, downstream: DownstreamSettings | None = None) -> None:
    """Check the settings that need no band file.

    The weights must load into the network (:func:`~pipeline.inputs.preflight.check_weights`).
    """
    if config.weights is not None:
        check_weights(config.weights, precision=config.precision, quiet=not config.verbose,
                      card=card_for(config.model))


def run(config: RunSettings, *, client: Any = None, echo: Any = print,
        downstream: DownstreamSettings | None = None, claim: Claim | None = None) -> RunSummary:
    """Classify a mosaic into the run directory (resuming what is finished).

    Parameters
    ----------
    config : RunSettings
        The settings.
    client : distributed.Client, optional
        Use this client instead of creating a cluster from the settings.
    echo : callable
        Where progress lines go (the CLI prints them).
    downstream : DownstreamSettings, optional
        Segmentation, deblending and catalog settings (default: the paper's); the
        downstream graph runs after the classification on the same cluster.
    claim : callable, optional
        Takes the run directory's lock (:data:`Claim`; default
        :func:`pipeline.rundir.lock.run_lock`). It is called once the inputs passed their
        checks, so a refused run leaves the folder as it was (not even a lock file);
        the lock is checked again before each stage (:meth:`HeldLock.check
        <pipeline.rundir.lock.HeldLock.check>`).

    Raises
    ------
    InputError
        Bad inputs, a run directory that cannot be used, one locked by another
        command, or one made with other inputs/settings.
    RunError
        Tiles that kept failing (the others are finished and kept), or a lock lost
        while running.

    Notes
    -----
    A ``tile`` larger than the mosaic is brought down to it
    (:func:`~pipeline.inputs.preflight.fit_tile`, with a note); the manifest records the
    size used, so the same command resumes the run.
    """
    t_start = time.perf_counter()
    # Everything is checked before anything in the run directory changes.
    check_run_dir(config.location, restart=config.restart)
    check_inputs(config, downstream)
    paths = resolve_mosaic(config.mosaic, data_dir=config.data_dir, mosaics_file=config.mosaics_file)
    where = f"{config.mosaics_file} (mosaic {config.mosaic!r})" if config.mosaics_file else f"mosaic {config.mosaic!r}"
    card = card_for(config.model)
    check_card(card, window=config.window, border=config.border, model=config.model)
    ordered = order_bands(paths, card, where=where)
    check_distinct_files(paths, where=where)  # by the mosaic's band names
    bandset = validate_bands(ordered)
    scale_warning = check_pixel_scale(pixel_scale_arcsec(bandset.wcs_header), card, where=where,
                                      accept=config.accept_pixel_scale)
    if scale_warning:
        echo(scale_warning)
    with stage("preflight"):
        check_usable_pixels(bandset.bands, bandset.paths, bandset.hdu_index, bandset.shape, window=config.window)
    if downstream is not None:
        if downstream.flux_band is not None:  # None: the card's reddest band, one of these
            check_flux_band(downstream.flux_band, bandset.bands)
    if downstream is not None and downstream.markers:  # a bad markers file fails before classifying
        from astropy.wcs import WCS

        from pipeline.inputs.markers import read_markers

        read_markers(downstream.markers, wcs=WCS(bandset.wcs_header), shape=bandset.shape)
    tile, note = fit_tile(config.tile, bandset.shape)
    if tile != config.tile and not config.restart:
        # A run made before tiles were fitted to the mosaic resumes with its recorded size.
        recorded = recorded_tile(config.location)
        if recorded is not None and recorded > tile and fit_tile(recorded, bandset.shape)[0] == tile:
            tile, note = recorded, None
    if note:
        echo(note)
    if tile != config.tile:
        config = dataclasses.replace(config, tile=tile)
    from pipeline.rundir.manifest import check_resumable

    check_resumable(config)  # recorded with other settings: refused before anything starts
    with (claim or claim_lock("run"))(config.location) as lock:
        return _run_claimed(config, bandset, lock, t_start, client=client, echo=echo, downstream=downstream)


def _run_claimed(config: RunSettings, bandset: BandSet, lock: HeldLock, t_start: float, *, client: Any, echo: Any,
                 downstream: DownstreamSettings | None) -> RunSummary:
    """:func:`run` once the inputs passed their checks and the run directory's lock is held."""
    prepare_run_dir(config)
    store_path = RunLayout(config.location).mosaic
    lock.check()
    with stage("ingest"):
        group = ingest(bandset, store_path, chunk=config.tile)
    shape = tuple(group.attrs["shape"])
    tiles = plan_tiles(shape, config.tile, window=config.window, stride=config.stride)
    plan = {"shape": list(shape), "tile": config.tile, "window": config.window,
            "stride": config.stride, "tiles": len(tiles)}
    run_id = check_or_write_manifest(config, list(group.attrs["inputs"]), plan, card=card_for(config.model).to_dict())

    ledger = Ledger(config.location)
    merged = classification_merged(config.location, run_id, echo=echo)
    names = [tile_id(t) for t in tiles]
    if merged:  # the classification store is the result: no tile to verify or run
        finished, problems = set(names), {}
        echo("classification: merged already; making the products")
    else:
        finished, problems = ledger.verify(names, run_id=run_id)
    for name, problem in sorted(problems.items()):
        echo(f"warning: {problem}: the tile is recomputed")
        ledger.discard(name)
    todo = [t for t, name in zip(tiles, names) if name not in finished]
    summary = RunSummary(config.run_dir, len(tiles), len(tiles) - len(todo))
    before = ledger.executions()

    own_client = client is None
    if own_client:
        from pipeline.cluster.client import cluster_lines, gpu_resources, make_client

        client, info = make_client(
            scheduler=config.scheduler, cluster=config.cluster, cluster_config=config.cluster_config,
            n_workers=config.workers, threads_per_worker=config.threads_per_worker, gpu=config.gpu,
            wait_workers=config.wait_workers, tls=config.tls, scheduler_security=config.scheduler_security,
        )
        summary.cluster, summary.dashboard = f"{info.kind} ({info.n_workers} workers)", info.dashboard_link
        resources = gpu_resources(info)
        for line in cluster_lines(info):
            echo(line)
    else:
        from pipeline.cluster.client import describe_client, gpu_resources

        info = describe_client(client, gpu=config.gpu, what="client given")
        summary.cluster, summary.dashboard, resources = "given client", client.dashboard_link, gpu_resources(info)
    if summary.dashboard:
        echo(f"dashboard: {summary.dashboard}")
    try:
        if todo:
            lock.check()
            t_classify = time.perf_counter()
            with stage("classify"):
                summary.executed, summary.failed = classify_tiles(client, todo, store_path, config, ledger, resources,
                                                                   run_id)
            summary.classify_seconds = time.perf_counter() - t_classify
        summary.retried = sum(
            max(0, n - before.get(name, 0) - 1) for name, n in ledger.executions().items()
        )
        if summary.failed:
            summary.seconds = time.perf_counter() - t_start
            summary.windows = _windows(ledger, todo)
            for line in summary.lines():
                echo(line)
            raise RunError(
                f"{len(summary.failed)} tile(s) failed after {config.retries} retries: "
                f"{', '.join(summary.failed)}; see 'python -m pipeline status --run-dir "
                f"{config.run_dir}', then 'python -m pipeline resubmit --run-dir {config.run_dir}'"
            )
        if not merged:
            lock.check()
            with stage("merge"):
                merge_tiles(client, tiles, config, group.attrs.asdict(), shape, run_id, ledger)
            ledger.mark_merged(run_id, len(tiles))
        lock.check()
        if not config.keep_partials:  # also what an interrupted removal left
            summary.partials_removed = ledger.remove_partials()
        with stage("fits"):
            summary.outputs = export_fits(config, run_id, group.attrs["wcs_header"], merged_before=merged)
        # The location is absolute (workers may run in another working directory) and
        # may be an object store: the downstream graph works on either.
        lock.check()
        summary.downstream = run_downstream(config.location, downstream, client=client, echo=echo, run_id=run_id,
                                            model=config.model_description(), precision=config.precision)
        summary.outputs += summary.downstream.outputs
    finally:
        if own_client:
            from pipeline.cluster.client import close_client

            close_client(client)
    summary.seconds = time.perf_counter() - t_start
    summary.windows = _windows(ledger, todo)
    for line in summary.lines():
        echo(line)
    from pipeline.viewer.command import view_command

    echo(f"map: {view_command(config.run_dir, config.storage_options)}")
    return summary


def _windows(ledger: Ledger, todo: list[Tile]) -> int:
    """Windows of the tiles classified by this command only (not those finished before)."""
    return sum(info.get("windows", 0) for info in ledger.done_infos([tile_id(t) for t in todo]).values())


#: Downstream settings, or a function of the recorded mosaic (name, mosaics file) that
#: makes them (a TOML mosaic may set its own threshold).
SettingsFor = DownstreamSettings | Callable[[str, Path | None], DownstreamSettings] | None


def _settings_for(downstream: SettingsFor, recorded: dict[str, Any]) -> DownstreamSettings | None:
    if not callable(downstream):
        return downstream
    mosaics_file = Path(recorded["mosaics_file"]) if recorded.get("mosaics_file") else None
    return downstream(recorded["mosaic"], mosaics_file)


def resubmit(run_dir: Path | str, *, client: Any = None, echo: Any = print,
             downstream: SettingsFor = None, claim: Claim | None = None, **overrides: Any) -> RunSummary:
    """Re-run the failed or missing tiles of a run with its recorded settings.

    ``overrides`` replace recorded settings (``scheduler``, ``workers``,
    ``storage_options``, ...); ``downstream`` may be a function of the recorded mosaic.
    The recorded paths are absolute (:class:`RunSettings` makes them so), so it works
    from any working directory; a manifest written with relative paths resumes from
    the directory it was made in. ``claim`` takes the lock as for :func:`run`; the
    failed tiles are cleared once it is held.
    """
    manifest = read_manifest(run_dir, overrides.get("storage_options"))
    downstream = _settings_for(downstream, manifest["config"])
    config = RunSettings.from_json({**manifest["config"], "run_dir": str(run_dir), "restart": False, **overrides})
    take = claim or claim_lock("resubmit")

    @contextlib.contextmanager
    def claim_and_clear(location: Location) -> Iterator[HeldLock]:
        with take(location) as lock:
            cleared = Ledger(location).clear_failed()
            if cleared:
                echo(f"resubmitting {len(cleared)} failed tile(s): {', '.join(sorted(cleared))}")
            yield lock

    return run(config, client=client, echo=echo, downstream=downstream, claim=claim_and_clear)


def redo_downstream(run_dir: Path | str, downstream: SettingsFor = None, *, reuse_segmentation: bool = False,
                    storage_options: dict[str, Any] | None = None, scheduler: str | None = None,
                    workers: int | None = None, tls: bool = True, scheduler_security: Path | None = None,
                    client: Any = None, echo: Any = print) -> DownstreamSummary:
    """Segmentation, deblending and the catalog again on a finished classification
    (the ``segment`` and ``catalog`` commands; ``catalog`` reuses matching maps).

    Checks the run, its classification and a markers file before starting a cluster
    (a local one, with TLS unless ``tls`` is false, or ``scheduler``, reached with
    ``scheduler_security``), which it closes again; ``client`` uses one given.

    Raises
    ------
    InputError
        No run, an unfinished or damaged classification (:mod:`pipeline.rundir.verified`),
        or a bad markers file.
    """
    from pipeline.cluster.client import close_client, cluster_lines, make_client
    from pipeline.inputs.ingest import read_wcs
    from pipeline.inputs.markers import read_markers
    from pipeline.rundir.verified import finished_classification, record_unrecorded, refuse_damaged_classification

    location = Location(run_dir, storage_options)
    manifest = read_manifest(location)
    # Every file of the classification against its checksums before anything reads it
    # (the graph checks their sizes again).
    check = refuse_damaged_classification(location, manifest["run_id"])
    finished_classification(location)
    if check is not None and not check.recorded:  # merged before checksums were recorded
        echo(record_unrecorded(location, manifest["run_id"]))
    settings = _settings_for(downstream, manifest["config"]) or DownstreamSettings()
    if settings.markers:  # refuse a bad markers file before starting a cluster
        mosaic = RunLayout(location).mosaic.open_group(mode="r")
        read_markers(settings.markers, wcs=read_wcs(mosaic), shape=tuple(mosaic.attrs["shape"]))
    own = client is None
    if own:
        client, info = make_client(scheduler=scheduler, n_workers=workers, gpu="never", tls=tls,
                                   scheduler_security=scheduler_security)
        for line in cluster_lines(info):
            echo(line)
    try:
        return run_downstream(location, settings, client=client, echo=echo, run_id=manifest["run_id"],
                              model=manifest.get("model", ""),
                              precision=manifest["config"].get("precision", "float32"),
                              reuse_segmentation=reuse_segmentation)
    finally:
        if own:
            close_client(client)

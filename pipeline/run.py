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
from pipeline.classify.job import ClassificationJob
from pipeline.cluster.client import owned_client
from pipeline.cluster.info import gpu_resources
from pipeline.downstream.driver import DownstreamSummary, run_downstream
from pipeline.downstream.redo import SettingsFor, settings_for
from pipeline.errors import RunError
from pipeline.inputs.grid import BandSet, validate_bands
from pipeline.inputs.ingest import ingest
from pipeline.inputs.model_cards import card_for, pixel_scale_arcsec
from pipeline.inputs.mosaic_files import photometry_inputs, resolve_mosaic
from pipeline.inputs.photometry_maps import with_photometry
from pipeline.inputs.preflight import (
    check_card,
    check_distinct_files,
    check_flux_band,
    check_pixel_scale,
    check_usable_pixels,
    check_weights,
    fit_tile,
    order_bands,
)
from pipeline.program import command
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.ledger import Ledger, tile_id
from pipeline.rundir.location import Location, as_location
from pipeline.rundir.manifest import (
    check_or_write_manifest,
    check_resumable,
    check_run_dir,
    prepare_run_dir,
    read_manifest,
    recorded_tile,
)
from pipeline.settings import DownstreamSettings, RunSettings
from pipeline.timing import stage

if TYPE_CHECKING:
    import zarr

    from morpheus_core.cards import ModelCard
    from pipeline.rundir.lock import HeldLock

__all__ = ["Claim", "RunSummary", "claim_lock", "resubmit", "run"]

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
            layout = RunLayout(as_location(self.run_dir))
            out.append(f"outputs: {layout.classification}, {layout.fits}/, {layout.catalog}/, {layout.colour}")
        return out


@dataclass(frozen=True)
class _Checked:
    """A run's inputs once they passed their checks: the settings (``tile`` fitted to the
    mosaic), the run directory, the model card (read once) and the band files.
    """

    config: RunSettings
    run_dir: Location
    card: ModelCard
    bandset: BandSet


def run(
    config: RunSettings,
    *,
    client: Any = None,
    echo: Any = print,
    downstream: DownstreamSettings | None = None,
    claim: Claim | None = None,
) -> RunSummary:
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
    checked = _preflight(config, config.location, downstream, echo)
    with (claim or claim_lock("run"))(checked.run_dir) as lock:
        return _run_claimed(checked, lock, t_start, client=client, echo=echo, downstream=downstream)


def _preflight(config: RunSettings, run_dir: Location, downstream: DownstreamSettings | None, echo: Any) -> _Checked:
    """Everything checked before anything in the run directory changes: the run directory,
    the network and its model card (read here, once), the band files, the downstream
    settings that name a band or a file, and the tile size.
    """
    check_run_dir(run_dir, restart=config.restart)
    card = card_for(config.model)
    if config.weights is not None:  # the weights must load into the network
        check_weights(config.weights, precision=config.precision, quiet=not config.verbose, card=card)
    paths = resolve_mosaic(config.mosaic, data_dir=config.data_dir, mosaics_file=config.mosaics_file, echo=echo)
    where = f"{config.mosaics_file} (mosaic {config.mosaic!r})" if config.mosaics_file else f"mosaic {config.mosaic!r}"
    check_card(card, window=config.window, border=config.border, model=config.model)
    ordered = order_bands(paths, card, where=where, echo=echo)
    check_distinct_files(paths, where=where)  # by the mosaic's band names
    bandset = with_photometry(
        validate_bands(ordered), photometry_inputs(config.mosaic, mosaics_file=config.mosaics_file)
    )
    scale_warning = check_pixel_scale(
        pixel_scale_arcsec(bandset.wcs_header), card, where=where, accept=config.accept_pixel_scale
    )
    if scale_warning:
        echo(scale_warning)
    with stage("preflight"):
        check_usable_pixels(bandset.bands, bandset.paths, bandset.hdu_index, bandset.shape, window=config.window)
    if downstream is not None and downstream.flux_band is not None:  # None: the card's reddest band
        check_flux_band(downstream.flux_band, bandset.bands)
    if downstream is not None and downstream.markers:  # a bad markers file fails before classifying
        from astropy.wcs import WCS

        from pipeline.inputs.markers import read_markers

        read_markers(downstream.markers, wcs=WCS(bandset.wcs_header), shape=bandset.shape)
    tile, note = fit_tile(config.tile, bandset.shape)
    if tile != config.tile and not config.restart:
        # A run made before tiles were fitted to the mosaic resumes with its recorded size.
        recorded = recorded_tile(run_dir)
        if recorded is not None and recorded > tile and fit_tile(recorded, bandset.shape)[0] == tile:
            tile, note = recorded, None
    if note:
        echo(note)
    if tile != config.tile:
        config = dataclasses.replace(config, tile=tile)
    check_resumable(config)  # recorded with other settings: refused before anything starts
    return _Checked(config, run_dir, card, bandset)


def _run_claimed(
    checked: _Checked, lock: HeldLock, t_start: float, *, client: Any, echo: Any, downstream: DownstreamSettings | None
) -> RunSummary:
    """:func:`run` once the inputs passed their checks and the run directory's lock is
    held: ingest, plan and manifest, then on the cluster classify, merge, FITS and the
    downstream graph, each stage after checking the lock.
    """
    config = checked.config
    prepare_run_dir(checked.run_dir, restart=config.restart)
    lock.check()
    with stage("ingest"):
        mosaic = ingest(checked.bandset, RunLayout(checked.run_dir).mosaic, chunk=config.tile)
    job, tiles = _plan(checked, mosaic)
    merged, todo = _pending(job, tiles, echo)
    summary = RunSummary(config.run_dir, len(tiles), len(tiles) - len(todo))
    given = client is not None
    with owned_client(config, client=client, echo=echo) as (client, info):
        summary.cluster = "given client" if given else f"{info.kind} ({info.n_workers} workers)"
        summary.dashboard = info.dashboard_link
        if summary.dashboard:
            echo(f"dashboard: {summary.dashboard}")
        _classify(client, job, todo, gpu_resources(info), lock, summary)
        if summary.failed:
            _finish(summary, job, todo, t_start, echo)
            raise RunError(
                f"{len(summary.failed)} tile(s) failed after {config.retries} retries: "
                f"{', '.join(summary.failed)}; see '{command('status', '--run-dir', config.run_dir)}', then "
                f"'{command('resubmit', '--run-dir', config.run_dir)}'"
            )
        if not merged:
            lock.check()
            with stage("merge"):
                merge_tiles(client, job, tiles, mosaic.attrs.asdict())
        lock.check()
        if not config.keep_partials:  # also what an interrupted removal left
            summary.partials_removed = job.ledger.remove_partials()
        with stage("fits"):
            summary.outputs = export_fits(job, mosaic.attrs["wcs_header"], merged_before=merged)
        lock.check()
        # The location is absolute (workers may run in another working directory) and
        # may be an object store: the downstream graph works on either.
        summary.downstream = run_downstream(
            job.run_dir,
            downstream,
            client=client,
            echo=echo,
            run_id=job.run_id,
            model=config.model_description(),
            precision=config.precision,
        )
        summary.outputs += summary.downstream.outputs
    _finish(summary, job, todo, t_start, echo)
    from pipeline.viewer.command import view_command

    echo(f"map: {view_command(config.run_dir, config.storage_options)}")
    return summary


def _plan(checked: _Checked, mosaic: zarr.Group) -> tuple[ClassificationJob, list[Tile]]:
    """The tiles of the ingested mosaic, and the job of the run its manifest names
    (written for a new run, checked for a resumed one).
    """
    config = checked.config
    shape = tuple(mosaic.attrs["shape"])
    tiles = plan_tiles(shape, config.tile, window=config.window, stride=config.stride)
    plan = {
        "shape": list(shape),
        "tile": config.tile,
        "window": config.window,
        "stride": config.stride,
        "tiles": len(tiles),
    }
    run_id = check_or_write_manifest(
        checked.run_dir, config, list(mosaic.attrs["inputs"]), plan, card=checked.card.to_dict()
    )
    return ClassificationJob.start(config, checked.run_dir, run_id, checked.card), tiles


def _pending(job: ClassificationJob, tiles: list[Tile], echo: Any) -> tuple[bool, list[Tile]]:
    """Whether the classification is merged already, and the tiles still to classify:
    those without a finished tile whose partial passes its checks (a bad one is discarded).
    """
    merged = classification_merged(job, echo=echo)
    names = [tile_id(t) for t in tiles]
    if merged:  # the classification store is the result: no tile to verify or run
        finished, problems = set(names), {}
        echo("classification: merged already; making the products")
    else:
        finished, problems = job.ledger.verify(names, run_id=job.run_id)
    for name, problem in sorted(problems.items()):
        echo(f"warning: {problem}: the tile is recomputed")
        job.ledger.discard(name)
    return merged, [t for t, name in zip(tiles, names) if name not in finished]


def _classify(
    client: Any,
    job: ClassificationJob,
    todo: list[Tile],
    resources: dict[str, int] | None,
    lock: HeldLock,
    summary: RunSummary,
) -> None:
    """Classify the tiles of ``todo``; the tiles run, failed and retried go to ``summary``."""
    before = job.ledger.executions()
    if todo:
        lock.check()
        t_classify = time.perf_counter()
        with stage("classify"):
            summary.executed, summary.failed = classify_tiles(client, job, todo, resources)
        summary.classify_seconds = time.perf_counter() - t_classify
    summary.retried = sum(max(0, n - before.get(name, 0) - 1) for name, n in job.ledger.executions().items())


def _finish(summary: RunSummary, job: ClassificationJob, todo: list[Tile], t_start: float, echo: Any) -> None:
    """Complete ``summary`` (time, windows of the tiles classified by this command only) and print it."""
    summary.seconds = time.perf_counter() - t_start
    summary.windows = sum(info.get("windows", 0) for info in job.ledger.done_infos([tile_id(t) for t in todo]).values())
    for line in summary.lines():
        echo(line)


def resubmit(
    run_dir: Path | str,
    *,
    client: Any = None,
    echo: Any = print,
    downstream: SettingsFor = None,
    claim: Claim | None = None,
    **overrides: Any,
) -> RunSummary:
    """Re-run the failed or missing tiles of a run with its recorded settings.

    ``overrides`` replace recorded settings (``scheduler``, ``workers``,
    ``storage_options``, ...); ``downstream`` may be a function of the recorded mosaic.
    The recorded paths are absolute (:class:`RunSettings` makes them so), so it works
    from any working directory; a manifest written with relative paths resumes from
    the directory it was made in. ``claim`` takes the lock as for :func:`run`; the
    failed tiles are cleared once it is held.
    """
    manifest = read_manifest(as_location(run_dir, overrides.get("storage_options")))
    downstream = settings_for(downstream, manifest["config"])
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

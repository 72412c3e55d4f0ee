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
import importlib.metadata
import logging
import os
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from morpheus_core.tiling import Tile, plan_tiles
from pipeline.classify.tasks import (
    PROGRESS_TOPIC,
    ClassifierPlugin,
    create_output_store,
    merge_chunk,
    overlapping,
    run_tile,
)
from pipeline.downstream.driver import DownstreamSettings, DownstreamSummary, run_downstream
from pipeline.errors import InputError, RunError
from pipeline.inputs.ingest import BandSet, ingest, validate_bands
from pipeline.inputs.model_cards import card_for, header_cards, pixel_scale_arcsec
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
from pipeline.rundir.ledger import Ledger, atomic_write_json, tile_id
from pipeline.rundir.location import Location, staged, written_locally
from pipeline.settings.run import MODELS, RunSettings, upgrade_recorded
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


def _versions() -> dict[str, str]:
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


def _prepare_run_dir(config: RunSettings) -> None:
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


def _check_or_write_manifest(config: RunSettings, inputs: list[dict], plan: dict[str, Any]) -> str:
    path = RunLayout(config.location).manifest
    if path.exists():
        old = path.read_json()
        recorded = upgrade_recorded(old["result_settings"])
        if recorded.get("model") not in (None, *MODELS):  # a weights file, recorded relative before
            recorded["model"] = os.path.abspath(os.path.expanduser(recorded["model"]))
        differences = [
            f"{key}: {recorded.get(key)!r} -> {value!r}"
            for key, value in config.result_settings().items()
            if recorded.get(key) != value
        ]
        if old.get("inputs") != inputs:
            differences.append("input files changed (sizes or checksums differ)")
        if differences:
            raise InputError(
                f"{config.run_dir}: this run directory was made with other inputs or settings "
                f"({'; '.join(differences)}); use --restart to start over or another --run-dir"
            )
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
        "model_card": card_for(config.model).to_dict(),
        "inputs": inputs,
        "versions": _versions(),
        "plan": plan,
    })
    return run_id


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
        recorded = _recorded_tile(config.location)
        if recorded is not None and recorded > tile and fit_tile(recorded, bandset.shape)[0] == tile:
            tile, note = recorded, None
    if note:
        echo(note)
    if tile != config.tile:
        config = dataclasses.replace(config, tile=tile)
    with (claim or claim_lock("run"))(config.location) as lock:
        return _run_claimed(config, bandset, lock, t_start, client=client, echo=echo, downstream=downstream)


def _recorded_tile(location: Location) -> int | None:
    """The tile size recorded by the run in ``location``, if there is one."""
    try:
        return int(upgrade_recorded(RunLayout(location).manifest.read_json()["result_settings"])["tile"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _run_claimed(config: RunSettings, bandset: BandSet, lock: HeldLock, t_start: float, *, client: Any, echo: Any,
                 downstream: DownstreamSettings | None) -> RunSummary:
    """:func:`run` once the inputs passed their checks and the run directory's lock is held."""
    _prepare_run_dir(config)
    store_path = RunLayout(config.location).mosaic
    lock.check()
    with stage("ingest"):
        group = ingest(bandset, store_path, chunk=config.tile)
    shape = tuple(group.attrs["shape"])
    tiles = plan_tiles(shape, config.tile, window=config.window, stride=config.stride)
    plan = {"shape": list(shape), "tile": config.tile, "window": config.window,
            "stride": config.stride, "tiles": len(tiles)}
    run_id = _check_or_write_manifest(config, list(group.attrs["inputs"]), plan)

    ledger = Ledger(config.location)
    merged = _merged(config.location, run_id, echo=echo)
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
                _classify_tiles(client, todo, store_path, config, ledger, summary, resources, echo, run_id)
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
                _merge(client, tiles, config, group.attrs.asdict(), shape, run_id, ledger)
            ledger.mark_merged(run_id, len(tiles))
        lock.check()
        if not config.keep_partials:  # also what an interrupted removal left
            summary.partials_removed = ledger.remove_partials()
        with stage("fits"):
            summary.outputs = _export_fits(config, run_id, group.attrs["wcs_header"], merged_before=merged)
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


def _merged(location: Location, run_id: str, *, echo: Any = None) -> bool:
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


def _classify_tiles(client, todo: list[Tile], store: Location, config: RunSettings, ledger: Ledger,
                    summary: RunSummary, resources: dict | None, echo: Any, run_id: str) -> None:
    from distributed import as_completed

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
                summary.executed += 1
            else:
                exc = future.exception()
                tb = "".join(traceback.format_exception(type(exc), exc, future.traceback()))
                ledger.mark_failed(name, f"{type(exc).__name__}: {exc}", tb)
                summary.failed.append(name)
                logger.error("tile %s failed: %s", name, exc)
            # Forget the result (the ledger holds it), so that losing the worker that
            # holds it later does not make the scheduler recompute the tile.
            future.release()
            bar.tile_done(name)
    finally:
        client.unsubscribe_topic(PROGRESS_TOPIC)
        bar.close()
    summary.failed.sort()


class WindowsBar:
    """The classification's progress bar: windows evaluated, with rate and ETA.

    Workers send the windows of the tile they are running every second or so
    (:class:`pipeline.classify.tasks.WindowProgress`, a Dask event); when a tile ends, the
    bar is brought to the tile's planned windows (windows on unusable pixels are
    planned but never evaluated).

    Parameters
    ----------
    planned : dict
        Tile -> windows it owns (:meth:`morpheus_core.tiling.Tile.n_windows`).
    show : bool
        Draw the bar (``tqdm``); without it only the counts are kept.
    """

    def __init__(self, planned: dict[str, int], show: bool = True) -> None:
        import threading

        self.planned = planned
        self.counted: dict[str, int] = {}
        self.events = 0
        self._lock = threading.Lock()  # events arrive on the client's event-loop thread
        self._bar = None
        if show:
            from tqdm import tqdm

            self._bar = tqdm(total=sum(planned.values()), desc="classifying", unit="win", unit_scale=True,
                             smoothing=0.1, mininterval=1.0)

    def _advance(self, name: str, windows: int) -> None:
        with self._lock:
            windows = max(0, min(windows, self.planned.get(name, 0) - self.counted.get(name, 0)))
            self.counted[name] = self.counted.get(name, 0) + windows
            if self._bar is not None and windows:
                self._bar.update(windows)

    def event(self, event: tuple[float, dict[str, Any]]) -> None:
        """A worker's ``(time, {"tile", "windows"})`` event (a Dask topic handler)."""
        _, msg = event
        self.events += 1
        self._advance(str(msg.get("tile")), int(msg.get("windows", 0)))

    def tile_done(self, name: str) -> None:
        """A tile ended (finished or failed): count the rest of its planned windows."""
        self._advance(name, self.planned.get(name, 0))

    @property
    def n(self) -> int:
        """Windows counted so far."""
        return sum(self.counted.values())

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()


def _merge(client, tiles: list[Tile], config: RunSettings, attrs: dict, shape: tuple[int, int], run_id: str,
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


def _export_fits(config: RunSettings, run_id: str, wcs_header: str, *, merged_before: bool = False
                 ) -> list[Path | str]:
    """The classification's FITS products (:func:`pipeline.products.fits.write_classification_products`);
    for an object store written locally, then uploaded (:class:`~pipeline.rundir.location.written_locally`).

    A run whose store was merged before this command keeps its FITS products when all
    of them are there: each is written atomically from that same store (7.3 GB at
    10^8 pixels, not rewritten on every resume); a missing one has them all written.
    """
    from pipeline.products.fits import provenance, write_classification_products

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
            local.root / layout.fits.name, classification=layout.classification.open_group(mode="r"),
            coverage=layout.mosaic.open_group(mode="r")["coverage"], wcs_header=wcs_header, cards=cards,
            strip=config.tile)
    return [local.final(p) for p in written]


def status(run_dir: Path | str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ledger of a run directory: tiles by state, the failures' errors, and whether the
    finished stores match their checksum records.

    ``storage_options`` are those of a URL run directory (as for :class:`RunSettings`).
    The stores' files are read and hashed (:mod:`pipeline.rundir.checksums`); nothing is
    written. ``stores`` holds, per store, the problems found (strings naming the array,
    the chunk and the file) and what to do, or ``unverified`` for a store made before
    checksums were recorded.
    """
    from pipeline.rundir.verified import merged_store_complete, store_report

    location = Location(run_dir, storage_options)
    manifest = read_manifest(location)
    config = RunSettings.from_json(manifest["config"])
    shape = tuple(manifest["plan"]["shape"])
    tiles = plan_tiles(shape, config.tile, window=config.window, stride=config.stride)
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
    return {"manifest": manifest, "states": states, "failed": ledger.failed(), "corrupt": problems,
            "products": not missing, "missing_products": missing,
            "stores": store_report(location, manifest["run_id"])}


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
                    workers: int | None = None, client: Any = None, echo: Any = print) -> DownstreamSummary:
    """Segmentation, deblending and the catalog again on a finished classification
    (the ``segment`` and ``catalog`` commands; ``catalog`` reuses matching maps).

    Checks the run, its classification and a markers file before starting a cluster
    (a local one, or ``scheduler``), which it closes again; ``client`` uses one given.

    Raises
    ------
    InputError
        No run, an unfinished or damaged classification (:mod:`pipeline.rundir.verified`),
        or a bad markers file.
    """
    from pipeline.cluster.client import close_client, cluster_lines, make_client
    from pipeline.downstream.driver import check_classification
    from pipeline.inputs.ingest import read_wcs
    from pipeline.inputs.markers import read_markers
    from pipeline.rundir.verified import record_unrecorded, refuse_damaged_classification

    location = Location(run_dir, storage_options)
    manifest = read_manifest(location)
    # Every file of the classification against its checksums before anything reads it
    # (the graph checks their sizes again).
    check = refuse_damaged_classification(location, manifest["run_id"])
    check_classification(location)
    if check is not None and not check.recorded:  # merged before checksums were recorded
        echo(record_unrecorded(location, manifest["run_id"]))
    settings = _settings_for(downstream, manifest["config"]) or DownstreamSettings()
    if settings.markers:  # refuse a bad markers file before starting a cluster
        mosaic = RunLayout(location).mosaic.open_group(mode="r")
        read_markers(settings.markers, wcs=read_wcs(mosaic), shape=tuple(mosaic.attrs["shape"]))
    own = client is None
    if own:
        client, info = make_client(scheduler=scheduler, n_workers=workers, gpu="never")
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

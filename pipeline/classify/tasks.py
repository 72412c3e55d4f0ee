"""Classification as Dask tasks: one task per tile, then exact merges per output chunk.

Every task gets the run's :class:`~pipeline.classify.job.ClassificationJob` (settings,
run directory, run id, model card). A tile task reads its core plus halo from the
mosaic store, runs the statistics engine (:func:`morpheus_core.engine.classify_image`)
on the windows it owns, saves the partial statistics and marks the tile finished in
the ledger. The network is loaded once per worker process (:class:`ClassifierPlugin`,
registered with ``Client.register_plugin``; a task that finds no loaded network loads
it itself), with the job's model card.

A merge task builds one output chunk (a tile core): it merges the partial statistics
of every tile whose read region overlaps the chunk and finalises them into the 15
classification images plus ``n``, written into the output Zarr store. Each chunk is
written by exactly one task, so no two tasks touch the same Zarr chunk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from morpheus_core import CLASSES
from morpheus_core.engine import classify_image
from morpheus_core.stats import WindowStats, finalize
from morpheus_core.tiling import Box, Tile
from pipeline.classify.job import ClassificationJob
from pipeline.classify.progress import WindowProgress
from pipeline.rundir.ledger import PartialError, tile_id
from pipeline.rundir.location import Location
from pipeline.settings import RunSettings

if TYPE_CHECKING:
    from morpheus_core.cards import ModelCard

__all__ = [
    "OUTPUT_ARRAYS",
    "ClassifierPlugin",
    "classifier_key",
    "classify_tile",
    "create_output_store",
    "load_classifier",
    "merge_chunk",
    "merge_overlapping",
    "overlapping",
    "run_tile",
]

logger = logging.getLogger(__name__)

_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()


#: Output images of a classification store: name -> (cube or plane, dtype).
OUTPUT_ARRAYS = {"mean": np.float32, "variance": np.float32, "rank": np.float32, "n": np.int32}


def classifier_key(config: RunSettings) -> str:
    """Identity of the network a run uses (cache key)."""
    return f"{config.model}|{config.precision}"


def load_classifier(config: RunSettings, card: ModelCard | None = None) -> Any:
    """Load (once per process) the window classifier the run's settings name.

    ``card`` is the network's model card as the command read it (default: read it
    here, :func:`pipeline.inputs.model_cards.card_for`).
    """
    key = classifier_key(config)
    with _LOCK:
        if key not in _CACHE:
            if config.model in ("standin", "standin-sky"):
                from morpheus_core.testing import SkyStandInClassifier, StandInClassifier

                standin = StandInClassifier if config.model == "standin" else SkyStandInClassifier
                _CACHE[key] = standin(window=config.window, border=config.border)
            else:
                from pipeline.quiet import native_stderr_captured, quiet_environment

                quiet_environment(config.verbose)
                with native_stderr_captured(not config.verbose):  # TensorFlow's start-up lines
                    from morpheus_core.runtime import configure_gpu_memory_growth, configure_threads

                    # Before the first model: TensorFlow fixes both when it initialises.
                    configure_gpu_memory_growth()
                    configure_threads(config.threads_per_worker)
                    from morpheus_core.classifier import KerasWindowClassifier
                    from morpheus_core.weights import load_model

                    if card is None:
                        from pipeline.inputs.model_cards import card_for

                        card = card_for(config.model)
                    model = load_model(config.weights, crop=True, precision=config.precision, card=card)
                    _CACHE[key] = KerasWindowClassifier(model, border=config.border)
            logger.info("loaded classifier %s", key)
        return _CACHE[key]


class ClassifierPlugin(WorkerPlugin):
    """Load the network once when each worker starts (and on restarted workers)."""

    name = "morpheus-classifier"

    def __init__(self, job: ClassificationJob) -> None:
        self.job = job

    def setup(self, worker: Any) -> None:
        """Load the network on this worker (a ``distributed`` hook)."""
        load_classifier(self.job.config, self.job.card)


def classify_tile(
    tile: Tile,
    image: np.ndarray,
    coverage: np.ndarray | None,
    classifier: Any,
    config: RunSettings,
    *,
    progress: Any = None,
) -> WindowStats:
    """The partial statistics of one tile: the engine on the windows the tile owns.

    Parameters
    ----------
    tile : Tile
        The tile (:func:`morpheus_core.tiling.plan_tiles`).
    image : numpy.ndarray
        ``(bands, H, W)``: the tile's read region (core plus halo), bands in the network's order.
    coverage : numpy.ndarray or None
        ``(H, W)`` usable pixels of the read region.
    classifier : WindowClassifier
        The network (:func:`load_classifier`).
    config : RunSettings
        The run's settings (``stride``, ``batch_size``).
    progress : callable, optional
        Called with the windows evaluated after each batch.

    Returns
    -------
    WindowStats
        Over the tile's read region.
    """
    return classify_image(
        image,
        classifier,
        stride=config.stride,
        anchor_start=tile.anchor_start,
        anchor_stop=tile.anchor_stop,
        coverage=coverage,
        batch_size=config.batch_size,
        progress=progress,
    )


def run_tile(tile: Tile, job: ClassificationJob) -> dict[str, Any]:
    """Classify one tile of ``job`` and persist its partial statistics (a Dask task).

    The tile is read from the run's mosaic store; the job's run id labels the partial
    (:meth:`pipeline.rundir.ledger.Ledger.save_partial`).

    Returns
    -------
    dict
        ``tile``, ``worker`` (address), ``windows`` and ``seconds``.
    """
    from distributed import get_worker

    config, ledger = job.config, job.ledger
    name = tile_id(tile)
    if ledger.is_finished(name):
        # Finished already: Dask recomputes a task whose result was held by a worker
        # that died; the partial statistics are safe in the run directory.
        return ledger.done_info(name)
    ledger.record_start(name)
    t0 = time.perf_counter()
    clf = load_classifier(config, job.card)
    group = job.layout.mosaic.open_group(mode="r")
    ys, xs = tile.read_slices
    image = np.asarray(group["image"][:, ys, xs])
    coverage = np.asarray(group["coverage"][ys, xs])
    try:
        worker = get_worker()
    except ValueError:  # run outside a worker (tests)
        worker = None
    progress = WindowProgress(name, worker)
    stats = classify_tile(tile, image, coverage, clf, config, progress=progress)
    progress.flush()
    info = {
        "tile": name,
        "worker": worker.address if worker else "local",
        "windows": progress.total,
        "seconds": time.perf_counter() - t0,
        "peak_rss_mb": _peak_rss_mb(),
    }
    ledger.save_partial(name, stats, info, run_id=job.run_id)
    return info


def _peak_rss_mb() -> float:
    """Peak resident memory of this worker process so far (MiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def create_output_store(store: Location, shape: tuple[int, int], chunk: int, attrs: dict[str, Any]) -> None:
    """Create the (empty) classification store: ``mean``, ``variance``, ``rank``
    ``(class, y, x)`` and ``n`` ``(y, x)``.
    """
    group = store.open_group(mode="w", zarr_format=3, attributes=attrs)
    c = len(attrs.get("classes", CLASSES))
    for name, dtype in OUTPUT_ARRAYS.items():
        if name == "n":
            group.create_array(
                name, shape=shape, chunks=(chunk, chunk), dtype=dtype, fill_value=0, dimension_names=("y", "x")
            )
        else:
            group.create_array(
                name,
                shape=(c, *shape),
                chunks=(c, chunk, chunk),
                dtype=dtype,
                fill_value=0.0,
                dimension_names=("class", "y", "x"),
            )


def overlapping(tiles: list[Tile], region: Box | tuple[int, int, int, int]) -> list[Tile]:
    """Tiles whose read region intersects ``region``.

    ``region`` is a :class:`~morpheus_core.tiling.Box` or ``(y0, y1, x0, x1)``.
    """
    region = Box(*region)
    return [t for t in tiles if t.read_box.intersection(region) is not None]


def merge_overlapping(core: Box, parts: Iterable[tuple[Tile, WindowStats]], n_classes: int) -> WindowStats:
    """The statistics of one output chunk: the partials of the tiles that overlap it,
    merged exactly (:meth:`~morpheus_core.stats.WindowStats.merge_`).

    Parameters
    ----------
    core : Box
        The output chunk (a tile core).
    parts : iterable of (Tile, WindowStats)
        Tiles with the partial statistics of their read region (each consumed once, so
        a generator may read them one at a time); a tile that does not overlap
        ``core`` adds nothing.
    n_classes : int
        Number of classes.

    Returns
    -------
    WindowStats
        Over ``core``; :func:`~morpheus_core.stats.finalize` gives its images.
    """
    total = WindowStats.zeros(core.shape, n_classes)
    for tile, part in parts:
        read = tile.read_box
        overlap = read.intersection(core)
        if overlap is not None:
            total[overlap.relative_to(core).slices].merge_(part[overlap.relative_to(read).slices])
    return total


def merge_chunk(target: Tile, tiles: list[Tile], job: ClassificationJob, out_store: Location) -> str:
    """Merge the partials overlapping one tile core and write its output chunk of
    ``out_store`` (a task).

    ``tiles`` are the tiles whose read region overlaps the core, computed once on the
    driver (:func:`overlapping`); a tile that does not overlap is skipped.
    Every partial is verified as it is read (:meth:`~pipeline.rundir.ledger.Ledger.load_partial`:
    size, checksum, tile and the job's run); a bad one raises
    :class:`~pipeline.rundir.ledger.PartialError` naming the tile.
    """
    ledger = job.ledger
    core = target.core_box
    group = out_store.open_group(mode="r+")

    def parts() -> Iterator[tuple[Tile, WindowStats]]:  # read one at a time, as the merge needs them
        for tile in tiles:
            if tile.read_box.intersection(core) is None:
                continue
            part = ledger.load_partial(tile_id(tile), run_id=job.run_id)
            if part.n.shape != tile.read_box.shape:
                raise PartialError(
                    tile_id(tile),
                    ledger.layout.partial(tile_id(tile)),
                    f"has shape {part.n.shape}, not the tile's read region",
                )
            yield tile, part

    result = finalize(merge_overlapping(core, parts(), group["mean"].shape[0]))  # the model card's classes
    ys, xs = core.slices
    group["mean"][:, ys, xs] = result.mean
    group["variance"][:, ys, xs] = result.variance
    group["rank"][:, ys, xs] = result.rank
    group["n"][ys, xs] = result.n
    return tile_id(target)

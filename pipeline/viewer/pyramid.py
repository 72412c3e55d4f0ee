"""The map's tile pyramid, built from a run's Zarr stores chunk by chunk as a Dask graph.

The map (:mod:`pipeline.viewer.command`) shows the run as 256 x 256 PNG tiles in the TMS
scheme of BokehJS's :class:`~bokeh.models.TMSTileSource` (:class:`~pipeline.viewer.grid.Grid`):
level ``Z`` (the smallest with ``256 * 2**Z >= max(H, W)``) holds the mosaic's own
pixels, each coarser level ``z`` halves the resolution, and tile ``(x, y)`` of level
``z`` covers pixels ``[x * 256 * 2**(Z - z), ...)`` with ``y`` counted from the bottom
(row 0 of the mosaic, as FITS). The run directory gets::

    viewer/pyramid.json                     grid, layers, colour composite, fingerprint,
                                            ``complete`` (written last)
    viewer/tiles/<layer>/<z>/<x>/<y>.png    one file per tile of each layer
    viewer/work/                            while building: coarser levels (levels.zarr),
                                            done marks of the squares (done/)

:func:`build_pyramid` is the entry point; :func:`read_pyramid` reads the record.

Bounded memory. A pass reads its input level in squares of ``256 * 2**k`` pixels
(:data:`LEVELS_PER_PASS` ``k``), one Dask task each, and writes their tiles of ``k``
levels and the next coarser level (:mod:`pipeline.viewer.passes`); the first pass
reads the run's stores (:mod:`pipeline.viewer.sources`), so no task ever holds more than
one square, whatever the mosaic's size. Every level is the exact float64 block mean of
the full image, up to the float32 rounding of the stored coarser levels.

Checked inputs. The classification must be finished
(:func:`pipeline.rundir.verified.finished_classification`, which also compares its
files' sizes with their checksum record); before tiles are drawn from it, every file's
checksum is compared too (:func:`pipeline.rundir.verified.refuse_damaged_classification`,
as ``segment`` and ``catalog`` do), so that a damaged chunk is named, not drawn as
zeros. A reused pyramid needs no new read.

Resumable and reused. A square's done mark is written after its tiles; a killed
build resumes with the squares not done. ``pyramid.json`` records a fingerprint of
the products it was built from (the stores' attributes: run id, bands, classes and
model card, segmentation settings and objects); a pyramid with the same fingerprint
(and the same layers and composite bands) is reused, one with another is removed and
rebuilt.

Any model's run. The class layers follow the classification store's ``classes``
(its model card's; the released classes for runs that do not record them), and the
colour composite shows H, J, V when the mosaic has them, else three bands chosen by
wavelength from the model card (:func:`pipeline.viewer.composite.composite_bands`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from morpheus_core import CLASSES
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location, as_location
from pipeline.rundir.verified import refuse_damaged_classification
from pipeline.viewer.composite import RGB_BANDS
from pipeline.viewer.grid import TILE, Grid
from pipeline.viewer.passes import Build, write_levels
from pipeline.viewer.sources import open_sources
from pipeline.viewer.stretch import lupton_settings
from pipeline.viewer.tiles import LuptonSettings, layer_labels

__all__ = ["FORMAT_VERSION", "LEVELS_PER_PASS", "Pyramid", "build_pyramid", "read_pyramid"]

#: Version of the pyramid's layout and rendering (part of the fingerprint): increase it
#: when tiles would come out differently (:mod:`pipeline.viewer.tiles`), so that existing
#: pyramids are rebuilt.
FORMAT_VERSION = 1
#: Levels written per pass: a task reads ``TILE * 2**LEVELS_PER_PASS`` pixels square.
LEVELS_PER_PASS = 2


@dataclass
class Pyramid:
    """A built tile pyramid.

    Attributes
    ----------
    location : Location
        The ``viewer`` folder of the run directory.
    grid : Grid
        The tile grid.
    layers : list of str
        The layers built (keys of :func:`pipeline.viewer.tiles.layer_labels`).
    lupton : LuptonSettings
        The colour composite's parameters.
    fingerprint : str
        What it was built from.
    reused : bool
        Found complete and up to date (nothing built).
    tiles : int
        Tile files written by this build.
    seconds : float
        Time of this build.
    record : dict
        ``pyramid.json``.
    classes : tuple of str
        The run's classes in channel order (one layer each).
    composite : tuple of str
        The bands of the colour composite (red, green, blue).
    """

    location: Location
    grid: Grid
    layers: list[str]
    lupton: LuptonSettings
    fingerprint: str
    reused: bool = False
    tiles: int = 0
    seconds: float = 0.0
    record: dict[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = CLASSES
    composite: tuple[str, str, str] = RGB_BANDS

    @property
    def tiles_location(self) -> Location:
        """``viewer/tiles``."""
        return self.location / "tiles"


def _fingerprint(attrs: dict[str, Any], tile: int, levels_per_pass: int) -> str:
    blob = json.dumps(
        {"format": FORMAT_VERSION, "tile": tile, "levels_per_pass": levels_per_pass, **attrs},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_pyramid(run_dir: Location | str | os.PathLike) -> dict[str, Any] | None:
    """``viewer/pyramid.json`` of a run directory (``None`` if there is none)."""
    record = RunLayout(as_location(run_dir)).pyramid_record
    return record.read_json() if record.exists() else None


def build_pyramid(
    run_dir: Location | str | os.PathLike,
    *,
    client: Any = None,
    echo: Any = print,
    storage_options: dict[str, Any] | None = None,
    rebuild: bool = False,
    tile: int = TILE,
    levels_per_pass: int = LEVELS_PER_PASS,
    keep_work: bool = False,
) -> Pyramid:
    """Build (or reuse, or resume) the tile pyramid of a finished run.

    Parameters
    ----------
    run_dir : Location, str or path-like
        The run directory (a path or an object-store URL); its classification must be
        finished. The segmentation layer is built when its segmentation is.
    client : distributed.Client, optional
        Where the tasks run (``None``: Dask's threaded scheduler).
    echo : callable
        Where progress lines go.
    storage_options : dict, optional
        fsspec options of a URL run directory.
    rebuild : bool
        Discard an existing pyramid even when it is up to date.
    tile, levels_per_pass : int
        Tile side; levels per pass (a task reads ``tile * 2**levels_per_pass`` pixels
        square). Part of the fingerprint.
    keep_work : bool
        Keep ``viewer/work`` (the coarser levels as Zarr arrays ``level<z>`` of
        ``levels.zarr``) for inspection.

    Returns
    -------
    Pyramid
        What was built or found.

    Raises
    ------
    InputError
        Not a run directory, or its classification is missing, unfinished or damaged
        (naming the array, the chunk and the file; checked before anything is removed).
    """
    t0 = time.perf_counter()
    root = as_location(run_dir, storage_options)
    sources, attrs = open_sources(root)
    grid = Grid(sources.shape, tile)
    classes, composite = sources.classes, sources.composite
    layers = [
        name for name in layer_labels(classes, composite) if name != "segmentation" or sources.segmentation is not None
    ]
    fingerprint = _fingerprint(attrs, tile, levels_per_pass)
    layout = RunLayout(root)
    viewer = layout.viewer
    record = read_pyramid(root)
    same = (
        record
        and record.get("fingerprint") == fingerprint
        and record.get("layers") == layers
        and record.get("bands") == list(composite)
    )
    if same and not rebuild and record.get("complete"):
        return Pyramid(
            viewer,
            grid,
            record["layers"],
            LuptonSettings.from_json(record["lupton"]),
            fingerprint,
            reused=True,
            record=record,
            classes=classes,
            composite=composite,
        )
    # Tiles are drawn from the classification: every file against its checksum first.
    refuse_damaged_classification(root, attrs["classification"].get("run_id"))
    if same and not rebuild:
        lupton = LuptonSettings.from_json(record["lupton"])
        echo("map: resuming the tile pyramid")
    else:
        if viewer.exists():
            echo(
                "map: products changed since the tile pyramid was built; rebuilding it"
                if record
                else "map: replacing an unfinished tile pyramid"
            )
            viewer.remove(recursive=True)
        lupton = lupton_settings(sources, client=client)
    record = {
        "format_version": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "grid": grid.to_json(),
        "layers": layers,
        "lupton": lupton.to_json(),
        "levels_per_pass": levels_per_pass,
        "bands": list(composite),
        "classes": list(classes),
        "complete": False,
    }
    layout.pyramid_record.write_json(record)
    echo(
        f"map: building the tile pyramid of {grid.shape[1]} x {grid.shape[0]} pixels, levels 0-{grid.max_level}, "
        f"{len(layers)} layers"
    )
    build = Build(sources, layout, grid, tuple(layers), lupton, levels_per_pass)
    written = write_levels(build, client=client)
    if not keep_work:
        build.work.remove(recursive=True)
    record["complete"] = True
    layout.pyramid_record.write_json(record)  # the "complete" mark, last
    seconds = time.perf_counter() - t0
    echo(f"map: {written} tiles written in {seconds:.1f} s")
    return Pyramid(
        viewer,
        grid,
        layers,
        lupton,
        fingerprint,
        tiles=written,
        seconds=seconds,
        record=record,
        classes=classes,
        composite=composite,
    )

"""The map's tile pyramid, built from a run's Zarr stores chunk by chunk as a Dask graph.

The map (:mod:`pipeline.viewer.command`) shows the run as 256 x 256 PNG tiles in the TMS
scheme of BokehJS's :class:`~bokeh.models.TMSTileSource`: level ``Z`` (the smallest
with ``256 * 2**Z >= max(H, W)``) holds the mosaic's own pixels, each coarser level
``z`` halves the resolution, and tile ``(x, y)`` of level ``z`` covers pixels
``[x * 256 * 2**(Z - z), ...)`` with ``y`` counted from the bottom (row 0 of the
mosaic, as FITS). The run directory gets::

    viewer/pyramid.json                     grid, layers, colour composite, fingerprint,
                                            ``complete`` (written last)
    viewer/tiles/<layer>/<z>/<x>/<y>.png    one file per tile of each layer
    viewer/work/                            while building: coarser levels (levels.zarr),
                                            done marks of the squares (done/)

Bounded memory. A pass reads its input level in squares of ``256 * 2**k`` pixels
(:data:`LEVELS_PER_PASS` ``k``), one Dask task each: the task writes the square's
tiles of ``k`` levels and its ``256 x 256`` block of the level below, which the next
pass reads (a Zarr array, 1/4**k the size). Level ``Z`` is read from the run's
stores, so no task ever holds more than one square, whatever the mosaic's size.
Every level is the exact float64 block mean of the full image (weighted means of
weighted means: :func:`pipeline.viewer.tiles.reduce_planes`), up to the float32
rounding of the stored coarser levels.

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
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np

from morpheus_core import CLASSES
from morpheus_core.colour import colour_image
from morpheus_core.tiling import Box
from pipeline.cluster.tasks import run_tasks
from pipeline.errors import InputError
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location, as_location
from pipeline.rundir.verified import finished_classification
from pipeline.viewer.composite import RGB_BANDS, band_wavelengths, composite_bands
from pipeline.viewer.tiles import LuptonSettings, encode_png, layer_labels, plane_names, reduce_planes, render

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "LEVELS_PER_PASS", "RGB_BANDS", "TILE", "Grid", "Pyramid", "band_wavelengths",
           "build_pyramid", "composite_bands", "read_pyramid"]

#: Version of the pyramid's layout and rendering (part of the fingerprint): increase it
#: when tiles would come out differently (:mod:`pipeline.viewer.tiles`), so that existing
#: pyramids are rebuilt.
FORMAT_VERSION = 1
#: Tile side in pixels.
TILE = 256
#: Levels written per pass: a task reads ``TILE * 2**LEVELS_PER_PASS`` pixels square.
LEVELS_PER_PASS = 2
#: Mosaic chunks sampled for the colour composite's sky level and stretch.
_SAMPLE_CHUNKS = 64


@dataclass(frozen=True)
class Grid:
    """The tile grid of an image.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the full-resolution image.
    tile : int
        Tile side in pixels.
    """

    shape: tuple[int, int]
    tile: int = TILE

    @property
    def max_level(self) -> int:
        """``Z``: the level of the full-resolution pixels (one tile covers the image at 0)."""
        level = 0
        while self.tile * 2**level < max(self.shape):
            level += 1
        return level

    def level_shape(self, level: int) -> tuple[int, int]:
        """``(h, w)`` of the image at ``level`` (partly covered pixels included)."""
        f = 2 ** (self.max_level - level)
        return -(-self.shape[0] // f), -(-self.shape[1] // f)

    def tile_counts(self, level: int) -> tuple[int, int]:
        """Tiles ``(rows, columns)`` holding image pixels at ``level``."""
        h, w = self.level_shape(level)
        return -(-h // self.tile), -(-w // self.tile)

    def to_json(self) -> dict[str, Any]:
        """The grid as ``pyramid.json`` records it (with the tile counts per level)."""
        return {"shape": list(self.shape), "tile": self.tile, "max_level": self.max_level,
                "tiles": [list(self.tile_counts(z)) for z in range(self.max_level + 1)]}


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


@dataclass(frozen=True)
class _Sources:
    """The stores a full-resolution square is read from."""

    mosaic: Location
    classification: Location
    segmentation: Location | None
    rgb: tuple[int, int, int]
    classes: tuple[str, ...] = CLASSES


def _open(location: Location, what: str) -> Any:
    """Open a store of the run, or say which one is missing or unreadable."""
    if not location.is_zarr_group():
        raise InputError(f"{location}: {what} not found; is this a finished run directory?")
    try:
        return location.open_group(mode="r")
    except Exception as exc:  # zarr raises many types on damaged metadata
        raise InputError(f"{location}: cannot read the {what} ({type(exc).__name__}: {exc})") from exc


def _fingerprint(attrs: dict[str, Any], tile: int, levels_per_pass: int) -> str:
    blob = json.dumps({"format": FORMAT_VERSION, "tile": tile, "levels_per_pass": levels_per_pass, **attrs},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_pyramid(run_dir: Location | str | os.PathLike) -> dict[str, Any] | None:
    """``viewer/pyramid.json`` of a run directory (``None`` if there is none)."""
    record = RunLayout(as_location(run_dir)).pyramid_record
    return record.read_json() if record.exists() else None


def build_pyramid(run_dir: Location | str | os.PathLike, *, client: Any = None, echo: Any = print,
                  storage_options: dict[str, Any] | None = None, rebuild: bool = False, tile: int = TILE,
                  levels_per_pass: int = LEVELS_PER_PASS, keep_work: bool = False) -> Pyramid:
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
        Not a run directory, or its classification is missing or unfinished.
    """
    t0 = time.perf_counter()
    root = as_location(run_dir, storage_options)
    layout = RunLayout(root)
    cls = finished_classification(root)
    mosaic = _open(layout.mosaic, "mosaic store (mosaic.zarr)")
    seg_attrs = None
    if layout.segmentation.is_zarr_group():
        seg_attrs = _open(layout.segmentation, "segmentation (segmentation.zarr)").attrs.asdict()
        if not seg_attrs.get("complete", False):
            seg_attrs = None
    grid = Grid(tuple(int(v) for v in cls["n"].shape), tile)
    classes = tuple(str(c) for c in cls.attrs.get("classes", CLASSES))
    if len(classes) != cls["mean"].shape[0]:
        raise InputError(f"{layout.classification}: {cls['mean'].shape[0]} class images but classes "
                         f"{list(classes)} in its attributes")
    bands = [str(b) for b in mosaic.attrs["bands"]]
    rgb = composite_bands(bands, band_wavelengths(bands, cls.attrs.get("model_card")))
    composite = tuple(bands[i] for i in rgb)
    sources = _Sources(layout.mosaic, layout.classification, layout.segmentation if seg_attrs else None, rgb,
                       classes)
    layers = [name for name in layer_labels(classes, composite) if name != "segmentation" or seg_attrs]
    fingerprint = _fingerprint({"mosaic": mosaic.attrs.asdict(), "classification": cls.attrs.asdict(),
                                "segmentation": seg_attrs}, tile, levels_per_pass)
    viewer = layout.viewer
    record = read_pyramid(root)
    same = (record and record.get("fingerprint") == fingerprint and record.get("layers") == layers
            and record.get("bands") == list(composite))
    if same and not rebuild:
        if record.get("complete"):
            return Pyramid(viewer, grid, record["layers"], LuptonSettings.from_json(record["lupton"]),
                           fingerprint, reused=True, record=record, classes=classes, composite=composite)
        lupton = LuptonSettings.from_json(record["lupton"])
        echo("map: resuming the tile pyramid")
    else:
        if viewer.exists():
            echo("map: products changed since the tile pyramid was built; rebuilding it" if record
                 else "map: replacing an unfinished tile pyramid")
            viewer.remove(recursive=True)
        lupton = _lupton_settings(client, sources, grid)
    record = {"format_version": FORMAT_VERSION, "fingerprint": fingerprint, "grid": grid.to_json(),
              "layers": layers, "lupton": lupton.to_json(), "levels_per_pass": levels_per_pass,
              "bands": list(composite), "classes": list(classes), "complete": False}
    layout.pyramid_record.write_json(record)
    echo(f"map: building the tile pyramid of {grid.shape[1]} x {grid.shape[0]} pixels, levels 0-{grid.max_level}, "
         f"{len(layers)} layers")
    work = layout.viewer_work
    written = 0
    level = grid.max_level
    while True:
        last = level <= levels_per_pass
        if not last:
            _new_level(work, grid, level - levels_per_pass, len(plane_names(classes)))
        tasks = [dask.delayed(_square)(sources if level == grid.max_level else None, viewer, grid, level, box,
                                       layers, lupton, levels_per_pass, last, classes)
                 for box in _squares(grid, level, levels_per_pass)]
        written += sum(run_tasks(client, tasks))
        if last:
            break
        level -= levels_per_pass
    if not keep_work:
        work.remove(recursive=True)
    record["complete"] = True
    layout.pyramid_record.write_json(record)  # the "complete" mark, last
    seconds = time.perf_counter() - t0
    echo(f"map: {written} tiles written in {seconds:.1f} s")
    return Pyramid(viewer, grid, layers, lupton, fingerprint, tiles=written, seconds=seconds, record=record,
                   classes=classes, composite=composite)


def _squares(grid: Grid, level: int, levels_per_pass: int) -> list[Box]:
    """The squares one pass reads at ``level``, aligned on tiles of every level it writes."""
    side = grid.tile * 2 ** levels_per_pass
    h, w = grid.level_shape(level)
    return [Box(y, min(y + side, h), x, min(x + side, w)) for y in range(0, h, side) for x in range(0, w, side)]


def _new_level(work: Location, grid: Grid, level: int, n_planes: int) -> None:
    """The Zarr array of a coarser level (kept if it exists: a resumed build)."""
    group = (work / "levels.zarr").open_group(mode="a", zarr_format=3)
    name = f"level{level}"
    if name not in group:
        h, w = grid.level_shape(level)
        group.create_array(name, shape=(n_planes, h, w), chunks=(n_planes, grid.tile, grid.tile),
                           dtype=np.float32, fill_value=0.0)


def _square(sources: _Sources | None, viewer: Location, grid: Grid, level: int, box: Box, layers: list[str],
            lupton: LuptonSettings, levels_per_pass: int, last: bool, classes: tuple[str, ...] = CLASSES) -> int:
    """Task: the tiles of one square over ``levels_per_pass`` levels (all levels to 0 in the
    last pass) and its block of the next coarser level; returns the tiles written.
    """
    work = viewer / "work"
    done = work / "done" / f"level{level}_{box.name}"
    if done.exists():
        return 0
    if sources is not None:
        planes = read_full_resolution(sources, box, grid.shape)
    else:
        ys, xs = box.slices
        planes = np.asarray((work / "levels.zarr").open_group(mode="r")[f"level{level}"][:, ys, xs], dtype=np.float64)
    side = grid.tile * 2 ** min(levels_per_pass, level)
    padded = np.zeros((len(plane_names(classes)), side, side))
    padded[:, : box.shape[0], : box.shape[1]] = planes
    writer = _TileWriter(viewer / "tiles")
    n_levels = level + 1 if last else levels_per_pass
    for m in range(n_levels):
        z = level - m
        if m:
            padded = reduce_planes(padded, 2)
        rows, cols = grid.tile_counts(z)
        ty0, tx0 = box.y0 // 2 ** m // grid.tile, box.x0 // 2 ** m // grid.tile
        n = padded.shape[1] // grid.tile
        for name in layers:
            image = render(name, padded, factor=2 ** (grid.max_level - z), lupton=lupton, classes=classes)
            for i in range(min(n, rows - ty0)):
                for j in range(min(n, cols - tx0)):
                    part = image[i * grid.tile : (i + 1) * grid.tile, j * grid.tile : (j + 1) * grid.tile]
                    writer.write(name, z, tx0 + j, ty0 + i, part)
    if not last:
        coarse = reduce_planes(padded, 2)
        target = (work / "levels.zarr").open_group(mode="r+")[f"level{level - levels_per_pass}"]
        h, w = grid.level_shape(level - levels_per_pass)
        y0, x0 = box.y0 // 2 ** levels_per_pass, box.x0 // 2 ** levels_per_pass
        y1, x1 = min(y0 + coarse.shape[1], h), min(x0 + coarse.shape[2], w)
        target[:, y0:y1, x0:x1] = coarse[:, : y1 - y0, : x1 - x0].astype(np.float32)
    done.write_bytes(b"")
    return writer.count


class _TileWriter:
    """Writes tile PNGs under ``tiles/``: plain writes (a square's done mark, written
    after its tiles, is what makes them final), one empty PNG shared by empty tiles.
    """

    _empty: dict[int, bytes] = {}

    def __init__(self, root: Location) -> None:
        self.root, self.count, self._dirs = root, 0, set()

    def write(self, layer: str, z: int, x: int, y: int, rgba: np.ndarray) -> None:
        if not rgba[..., 3].any():
            side = rgba.shape[0]
            data = self._empty.get(side) or self._empty.setdefault(side, encode_png(np.zeros_like(rgba)))
        else:
            data = encode_png(rgba)
        target = self.root / f"{layer}/{z}/{x}/{y}.png"
        if target.is_local:
            folder = target.path.parent
            if folder not in self._dirs:
                folder.mkdir(parents=True, exist_ok=True)
                self._dirs.add(folder)
            target.path.write_bytes(data)
        else:
            target.write_bytes(data)
        self.count += 1


def read_full_resolution(sources: _Sources, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """The planes (:func:`pipeline.viewer.tiles.plane_names`) of a box of the full-resolution image.

    The composite's bands where the mosaic is covered, class images and the
    morphological colour image (:func:`morpheus_core.colour.colour_image` of the
    rank-vote images with the run's classes, as ``colour.png``) where classified, 0 elsewhere; ``outline`` marks pixels of a
    deblended object with a 4-neighbour outside it (read with a one-pixel halo).
    """
    ys, xs = box.slices
    mosaic = sources.mosaic.open_group(mode="r")
    cls = sources.classification.open_group(mode="r")
    cov = np.asarray(mosaic["coverage"][ys, xs], dtype=bool)
    image = np.asarray(mosaic["image"][:, ys, xs], dtype=np.float64)[list(sources.rgb)]
    classified = np.asarray(cls["n"][ys, xs]) > 0
    mean = np.asarray(cls["mean"][:, ys, xs], dtype=np.float64)
    colour = colour_image(cls["rank"][:, ys, xs], classified, classes=sources.classes).astype(np.float64) / 255.0
    planes = np.zeros((len(plane_names(sources.classes)), *box.shape))
    planes[0] = 1.0
    planes[1], planes[2] = cov, classified
    if sources.segmentation is not None:
        planes[3] = _outline(sources.segmentation.open_group(mode="r")["deblended"], box, shape)
    planes[4:7] = np.where(cov, image, 0.0)
    planes[7 : 7 + mean.shape[0]] = np.where(classified, mean, 0.0)
    planes[7 + mean.shape[0] :] = np.moveaxis(colour, -1, 0)
    return planes


def _outline(labels: Any, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """Pixels of an object (label > 0) with a 4-neighbour of another label (or outside the image)."""
    y0, y1, x0, x1 = max(box.y0 - 1, 0), min(box.y1 + 1, shape[0]), max(box.x0 - 1, 0), min(box.x1 + 1, shape[1])
    halo = np.zeros((box.shape[0] + 2, box.shape[1] + 2), dtype=np.int64)
    halo[y0 - box.y0 + 1 : y1 - box.y0 + 1, x0 - box.x0 + 1 : x1 - box.x0 + 1] = labels[y0:y1, x0:x1]
    core = halo[1:-1, 1:-1]
    edge = ((core != halo[:-2, 1:-1]) | (core != halo[2:, 1:-1]) | (core != halo[1:-1, :-2])
            | (core != halo[1:-1, 2:]))
    return ((core > 0) & edge).astype(np.float64)


def _lupton_settings(client: Any, sources: _Sources, grid: Grid) -> LuptonSettings:
    """The colour composite's sky level and stretch from a sample of covered pixels.

    ``minimum``: each band's median (the sky) plus its robust standard deviation (so
    that most sky noise is black, not coloured speckle); ``stretch``: 5 x the robust
    standard deviation of the mean of the three sky-subtracted bands, so that faint
    sources show.
    """
    from morpheus_core.tiling import chunk_boxes

    chunk = int(sources.mosaic.open_group(mode="r")["coverage"].chunks[0])
    boxes = chunk_boxes(grid.shape, chunk)
    boxes = boxes[:: max(1, len(boxes) // _SAMPLE_CHUNKS)]
    samples = run_tasks(client, [dask.delayed(_sample)(sources, b) for b in boxes])
    values = np.concatenate(samples, axis=1) if samples else np.zeros((3, 0))
    if values.shape[1] == 0:
        return LuptonSettings(minimum=(0.0, 0.0, 0.0), stretch=1.0)
    sky = np.median(values, axis=1)
    band_sigma = 1.4826 * np.median(np.abs(values - sky[:, None]), axis=1)
    minimum = sky + band_sigma
    intensity = (values - sky[:, None]).mean(axis=0)
    sigma = 1.4826 * float(np.median(np.abs(intensity - np.median(intensity))))
    spread = float(np.percentile(intensity, 99.5) - np.percentile(intensity, 50))
    stretch = 5.0 * sigma if sigma > 0 else (spread if spread > 0 else 1.0)
    return LuptonSettings(minimum=tuple(float(v) for v in minimum), stretch=float(stretch))


def _sample(sources: _Sources, box: Box) -> np.ndarray:
    """Task: the covered values of the composite's bands in one mosaic chunk, every 4th pixel each way."""
    ys, xs = box.slices
    mosaic = sources.mosaic.open_group(mode="r")
    cov = np.asarray(mosaic["coverage"][ys, xs], dtype=bool)[::4, ::4]
    image = np.asarray(mosaic["image"][:, ys, xs], dtype=np.float64)[list(sources.rgb)][:, ::4, ::4]
    return image[:, cov]

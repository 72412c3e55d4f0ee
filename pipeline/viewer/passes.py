"""The passes of a tile pyramid's build: squares of one level, one Dask task each.

A pass reads its input level in squares of ``tile * 2**k`` pixels (``k`` levels per
pass, :func:`squares`), one task each (:func:`write_square`): the task writes the
square's tiles of ``k`` levels (all the levels down to 0 in the last pass) and its
``tile x tile`` block of the level below, which the next pass reads (a Zarr array of
``viewer/work/levels.zarr``, 1/4**k the size, :func:`new_level`). The first pass reads
the run's stores (:func:`pipeline.viewer.sources.read_full_resolution`), so no task
ever holds more than one square, whatever the mosaic's size. Every level is the exact
float64 block mean of the full image (:func:`pipeline.viewer.tiles.reduce_planes`), up
to the float32 rounding of the stored coarser levels.

A square's done mark (``viewer/work/done/level<z>_<box>``) is written after its tiles
and its block: a killed build resumes with the squares not done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask
import numpy as np

from morpheus_core.tiling import Box
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location
from pipeline.tasks import run_tasks
from pipeline.viewer.grid import Grid
from pipeline.viewer.sources import Sources, read_full_resolution
from pipeline.viewer.tiles import LuptonSettings, encode_png, plane_names, reduce_planes, render

__all__ = ["Build", "new_level", "squares", "write_levels", "write_square"]


@dataclass(frozen=True)
class Build:
    """What every task of one pyramid build shares.

    Attributes
    ----------
    sources : Sources
        The run's stores (read by the first pass).
    viewer : Location
        The run's ``viewer`` folder: tiles go to ``tiles/``, the coarser levels and the
        done marks to ``work/``.
    grid : Grid
        The tile grid.
    layers : tuple of str
        The layers drawn (keys of :func:`pipeline.viewer.tiles.layer_labels`).
    lupton : LuptonSettings
        The colour composite's parameters.
    levels_per_pass : int
        ``k``: levels a task writes (it reads ``tile * 2**k`` pixels square).
    """

    sources: Sources
    layout: RunLayout
    grid: Grid
    layers: tuple[str, ...]
    lupton: LuptonSettings
    levels_per_pass: int

    @property
    def viewer(self) -> Location:
        """``viewer/``."""
        return self.layout.viewer

    @property
    def work(self) -> Location:
        """``viewer/work``: the coarser levels (``levels.zarr``) and the squares' done marks."""
        return self.layout.viewer_work


def write_levels(build: Build, *, client: Any = None) -> int:
    """Run every pass, from the full-resolution level to level 0; return the tiles written.

    Squares already marked done (a resumed build) are skipped.

    Parameters
    ----------
    build : Build
        The build.
    client : distributed.Client, optional
        Where the tasks run (``None``: Dask's threaded scheduler).

    Returns
    -------
    int
        Tile files written.
    """
    grid, per_pass = build.grid, build.levels_per_pass
    written = 0
    level = grid.max_level
    while True:
        if level > per_pass:
            new_level(build, level - per_pass)
        tasks = [dask.delayed(write_square)(build, level, box) for box in squares(grid, level, per_pass)]
        written += sum(run_tasks(client, tasks))
        if level <= per_pass:
            return written
        level -= per_pass


def squares(grid: Grid, level: int, levels_per_pass: int) -> list[Box]:
    """The squares one pass reads at ``level``, aligned on tiles of every level it writes."""
    side = grid.tile * 2**levels_per_pass
    h, w = grid.level_shape(level)
    return [Box(y, min(y + side, h), x, min(x + side, w)) for y in range(0, h, side) for x in range(0, w, side)]


def new_level(build: Build, level: int) -> None:
    """The Zarr array of a coarser level (kept if it exists: a resumed build)."""
    group = build.layout.pyramid_levels.open_group(mode="a", zarr_format=3)
    name = f"level{level}"
    if name not in group:
        grid = build.grid
        n_planes = len(plane_names(build.sources.classes))
        h, w = grid.level_shape(level)
        group.create_array(
            name, shape=(n_planes, h, w), chunks=(n_planes, grid.tile, grid.tile), dtype=np.float32, fill_value=0.0
        )


def write_square(build: Build, level: int, box: Box) -> int:
    """Task: the tiles of one square over the pass's levels and its block of the next coarser level.

    Parameters
    ----------
    build : Build
        The build.
    level : int
        The level the square is read at: the full-resolution one from the run's
        stores, a coarser one from ``levels.zarr``.
    box : morpheus_core.tiling.Box
        The square (:func:`squares`).

    Returns
    -------
    int
        Tiles written (0 if the square was done already).
    """
    grid, per_pass, classes = build.grid, build.levels_per_pass, build.sources.classes
    last = level <= per_pass
    done = build.work / "done" / f"level{level}_{box.name}"
    if done.exists():
        return 0
    if level == grid.max_level:
        planes = read_full_resolution(build.sources, box)
    else:
        ys, xs = box.slices
        levels = build.layout.pyramid_levels.open_group(mode="r")
        planes = np.asarray(levels[f"level{level}"][:, ys, xs], dtype=np.float64)
    side = grid.tile * 2 ** min(per_pass, level)
    padded = np.zeros((len(plane_names(classes)), side, side))
    padded[:, : box.shape[0], : box.shape[1]] = planes
    writer = _TileWriter(build.layout.viewer_tiles)
    n_levels = level + 1 if last else per_pass
    for m in range(n_levels):
        z = level - m
        if m:
            padded = reduce_planes(padded, 2)
        rows, cols = grid.tile_counts(z)
        ty0, tx0 = box.y0 // 2**m // grid.tile, box.x0 // 2**m // grid.tile
        n = padded.shape[1] // grid.tile
        for name in build.layers:
            image = render(name, padded, factor=2 ** (grid.max_level - z), lupton=build.lupton, classes=classes)
            for i in range(min(n, rows - ty0)):
                for j in range(min(n, cols - tx0)):
                    part = image[i * grid.tile : (i + 1) * grid.tile, j * grid.tile : (j + 1) * grid.tile]
                    writer.write(name, z, tx0 + j, ty0 + i, part)
    if not last:
        coarse = reduce_planes(padded, 2)
        target = build.layout.pyramid_levels.open_group(mode="r+")[f"level{level - per_pass}"]
        h, w = grid.level_shape(level - per_pass)
        y0, x0 = box.y0 // 2**per_pass, box.x0 // 2**per_pass
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

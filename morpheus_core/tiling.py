"""Cutting an image into tiles so that every window is evaluated exactly once.

Ownership rule: a window belongs to the tile whose *core* contains its anchor (the
window's top-left pixel). A tile with core ``[y0, y1) x [x0, x1)`` therefore reads its
core plus a halo of ``window - 1`` pixels below and to the right (clipped at the image
edge), and its partial statistics cover that whole read region. Merging the partial
statistics of all tiles (:meth:`~morpheus_core.stats.WindowStats.merge_`) gives the
whole-image result, because the tiles' window sets partition the image's windows.

The halo depth is derived here, from the window size, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from morpheus_core.stats import WindowStats


def halo(window: int) -> int:
    """Pixels a tile must read beyond its core: ``window - 1``."""
    return window - 1


@dataclass(frozen=True)
class Tile:
    """One tile of a tiling.

    Attributes
    ----------
    index : tuple of int
        ``(row, column)`` of the tile in the tiling.
    core : tuple of int
        ``(y0, y1, x0, x1)``: the anchors this tile owns lie in ``[y0, y1) x [x0, x1)``.
    read : tuple of int
        ``(y0, y1, x0, x1)``: the pixels the tile reads (core plus halo, clipped).
    anchor_start, anchor_stop : tuple of int
        The owned anchors relative to the read region's origin, for
        :func:`morpheus_core.engine.classify_image` (``anchor_start`` is aligned to the
        global stride grid).
    """

    index: tuple[int, int]
    core: tuple[int, int, int, int]
    read: tuple[int, int, int, int]
    anchor_start: tuple[int, int]
    anchor_stop: tuple[int, int]

    @property
    def read_slices(self) -> tuple[slice, slice]:
        """``(rows, columns)`` slices of the read region in image coordinates."""
        y0, y1, x0, x1 = self.read
        return slice(y0, y1), slice(x0, x1)

    @property
    def read_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the read region."""
        y0, y1, x0, x1 = self.read
        return y1 - y0, x1 - x0


def _first_on_grid(start: int, stride: int) -> int:
    return -(-start // stride) * stride


def plan_tiles(
    shape: tuple[int, int],
    tile_shape: int | tuple[int, int],
    *,
    window: int = 40,
    stride: int = 1,
) -> list[Tile]:
    """Cut an ``(H, W)`` image into tiles of ``tile_shape`` cores (the last ones smaller).

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the image.
    tile_shape : int or tuple of int
        Core size ``(C_y, C_x)`` (or ``C`` for square cores).
    window : int
        Window size; the halo is ``window - 1``.
    stride : int
        Anchor stride; anchors lie on the global grid ``y % stride == 0``.

    Returns
    -------
    list of Tile
        Tiles in row-major order, covering the whole image.
    """
    h, w = shape
    ty, tx = (tile_shape, tile_shape) if isinstance(tile_shape, int) else tile_shape
    if ty < 1 or tx < 1:
        raise ValueError(f"tile size must be positive, got {tile_shape}")
    tiles = []
    for row, y0 in enumerate(range(0, h, ty)):
        y1 = min(y0 + ty, h)
        for col, x0 in enumerate(range(0, w, tx)):
            x1 = min(x0 + tx, w)
            read = (y0, min(y1 + halo(window), h), x0, min(x1 + halo(window), w))
            start = (_first_on_grid(y0, stride) - y0, _first_on_grid(x0, stride) - x0)
            tiles.append(Tile((row, col), (y0, y1, x0, x1), read, start, (y1 - y0, x1 - x0)))
    return tiles


def assemble(shape: tuple[int, int], parts: Iterable[tuple[Tile, WindowStats]], n_classes: int = 5) -> WindowStats:
    """Merge the partial statistics of tiles into whole-image statistics.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the image.
    parts : iterable of (Tile, WindowStats)
        Each tile with the statistics of its read region.
    n_classes : int
        Number of classes.
    """
    total = WindowStats.zeros(shape, n_classes)
    for tile, part in parts:
        total[tile.read_slices].merge_(part)
    return total

"""Cutting an image into tiles so that every window is evaluated exactly once.

Ownership rule: a window belongs to the tile whose *core* contains its anchor (the
window's top-left pixel). A tile with core ``[y0, y1) x [x0, x1)`` therefore reads its
core plus a halo of ``window - 1`` pixels below and to the right (clipped at the image
edge), and its partial statistics cover that whole read region. Merging the partial
statistics of all tiles (:meth:`~morpheus_core.stats.WindowStats.merge_`) gives the
whole-image result, because the tiles' window sets partition the image's windows.

The halo depth is derived here, from the window size, and nowhere else.

The grid geometry lives here too: :class:`Box`, a half-open rectangle with its name,
slices and intersection, and :func:`chunk_boxes`, the chunks of an image, so that no
other module writes a box intersection by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from morpheus_core.stats import WindowStats

__all__ = ["Box", "Tile", "assemble", "chunk_boxes", "halo", "plan_tiles"]


@dataclass(frozen=True)
class Box:
    """A half-open rectangle of pixels, ``[y0, y1) x [x0, x1)``, in image coordinates.

    Unpacks as ``y0, y1, x0, x1 = box``.

    Examples
    --------
    >>> a = Box(0, 32, 0, 32)
    >>> a.intersection(Box(16, 64, 30, 40))
    Box(y0=16, y1=32, x0=30, x1=32)
    >>> a.name
    'y0-32_x0-32'
    """

    y0: int
    y1: int
    x0: int
    x1: int

    def __iter__(self) -> Iterator[int]:
        return iter((self.y0, self.y1, self.x0, self.x1))

    @property
    def name(self) -> str:
        """Stable name, e.g. ``y0-256_x256-512`` (the chunk keys of ``downstream.json``)."""
        return f"y{self.y0}-{self.y1}_x{self.x0}-{self.x1}"

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, columns)`` slices of the box."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.y1 - self.y0, self.x1 - self.x0

    @property
    def origin(self) -> tuple[int, int]:
        """``(y0, x0)``: the top-left pixel."""
        return self.y0, self.x0

    @property
    def area(self) -> int:
        """Number of pixels."""
        return (self.y1 - self.y0) * (self.x1 - self.x0)

    def contains(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Which of the pixels ``(ys[i], xs[i])`` lie in the box (a boolean array)."""
        ys, xs = np.asarray(ys), np.asarray(xs)
        return (ys >= self.y0) & (ys < self.y1) & (xs >= self.x0) & (xs < self.x1)

    def intersection(self, other: Iterable[int]) -> Box | None:
        """The overlap with another box (or ``(y0, y1, x0, x1)``), ``None`` when empty."""
        oy0, oy1, ox0, ox1 = other
        y0, y1 = max(self.y0, oy0), min(self.y1, oy1)
        x0, x1 = max(self.x0, ox0), min(self.x1, ox1)
        if y0 >= y1 or x0 >= x1:
            return None
        return Box(y0, y1, x0, x1)

    def relative_to(self, origin: tuple[int, int] | Box) -> Box:
        """The same pixels in the coordinates of an array whose top-left pixel is ``origin``.

        Parameters
        ----------
        origin : tuple of int or Box
            ``(y0, x0)`` of the array, or a box whose origin it is.
        """
        oy, ox = origin.origin if isinstance(origin, Box) else origin
        return Box(self.y0 - oy, self.y1 - oy, self.x0 - ox, self.x1 - ox)

    def grow(self, margin: int, shape: tuple[int, int]) -> Box:
        """The box with ``margin`` pixels added on every side, clipped to an ``(H, W)`` image."""
        return Box(
            max(0, self.y0 - margin),
            min(shape[0], self.y1 + margin),
            max(0, self.x0 - margin),
            min(shape[1], self.x1 + margin),
        )


def chunk_boxes(shape: tuple[int, int], chunk: int) -> list[Box]:
    """The chunks of an ``(H, W)`` image, ``chunk`` pixels square (the last ones smaller).

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the image.
    chunk : int
        Chunk side, pixels.

    Returns
    -------
    list of Box
        Row-major, covering the image once.

    Raises
    ------
    ValueError
        ``chunk < 1``.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return [
        Box(y, min(y + chunk, shape[0]), x, min(x + chunk, shape[1]))
        for y in range(0, shape[0], chunk)
        for x in range(0, shape[1], chunk)
    ]


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
    def core_box(self) -> Box:
        """The core as a :class:`Box`."""
        return Box(*self.core)

    @property
    def read_box(self) -> Box:
        """The read region as a :class:`Box`."""
        return Box(*self.read)

    @property
    def read_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the read region."""
        y0, y1, x0, x1 = self.read
        return y1 - y0, x1 - x0

    def n_windows(self, window: int, stride: int) -> int:
        """Number of windows the tile owns: its anchors on the stride grid whose window
        fits in the read region (what :func:`morpheus_core.engine.classify_image`
        evaluates where every pixel is usable).
        """
        h, w = self.read_shape
        ny = len(range(self.anchor_start[0], min(self.anchor_stop[0], h - window + 1), stride))
        nx = len(range(self.anchor_start[1], min(self.anchor_stop[1], w - window + 1), stride))
        return ny * nx


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

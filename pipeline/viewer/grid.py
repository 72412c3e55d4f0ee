"""The map's tile grid: TMS levels of square tiles over an image.

Level ``Z`` (:attr:`Grid.max_level`, the smallest with ``tile * 2**Z >= max(H, W)``)
holds the image's own pixels, each coarser level ``z`` halves the resolution, and
tile ``(x, y)`` of level ``z`` covers pixels ``[x * tile * 2**(Z - z), ...)`` with
``y`` counted from the bottom (row 0 of the mosaic, as FITS): the scheme of BokehJS's
:class:`~bokeh.models.TMSTileSource`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TILE", "Grid"]

#: Tile side in pixels.
TILE = 256


@dataclass(frozen=True)
class Grid:
    """The tile grid of an image.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the full-resolution image.
    tile : int
        Tile side in pixels.

    Examples
    --------
    >>> grid = Grid((300, 420))
    >>> grid.max_level, grid.level_shape(0), grid.tile_counts(1)
    (1, (150, 210), (2, 2))
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
        return {
            "shape": list(self.shape),
            "tile": self.tile,
            "max_level": self.max_level,
            "tiles": [list(self.tile_counts(z)) for z in range(self.max_level + 1)],
        }

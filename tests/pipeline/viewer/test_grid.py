"""The map's tile grid (``pipeline.viewer.grid``): levels, their sizes and tile counts."""

from __future__ import annotations

from pipeline.viewer.grid import TILE, Grid


def test_levels_sizes_and_tile_counts():
    assert Grid((512, 512)).max_level == 1 and Grid((256, 100)).max_level == 0 and Grid((257, 3)).max_level == 1
    assert Grid((1, 1)).max_level == 0 and Grid((512, 512)).tile == TILE == 256
    grid = Grid((101, 131), 8)  # odd sizes: partial tiles and partly covered pixels at every level
    assert grid.max_level == 5  # 8 * 32 = 256 >= 131
    assert grid.level_shape(5) == (101, 131) and grid.level_shape(4) == (51, 66) and grid.level_shape(0) == (4, 5)
    assert grid.tile_counts(5) == (13, 17) and grid.tile_counts(0) == (1, 1)
    record = grid.to_json()
    assert record["max_level"] == 5 and record["tiles"][5] == [13, 17] and len(record["tiles"]) == 6


def test_every_level_covers_the_image_with_whole_tiles():
    for shape, tile in (((300, 420), 256), ((101, 131), 8), ((5000, 17), 64)):
        grid = Grid(shape, tile)
        assert tile * 2**grid.max_level >= max(shape) and (
            grid.max_level == 0 or tile * 2 ** (grid.max_level - 1) < max(shape)
        )
        for z in range(grid.max_level + 1):
            f = 2 ** (grid.max_level - z)
            h, w = grid.level_shape(z)
            assert (h - 1) * f < shape[0] <= h * f and (w - 1) * f < shape[1] <= w * f
            rows, cols = grid.tile_counts(z)
            assert (rows - 1) * tile < h <= rows * tile and (cols - 1) * tile < w <= cols * tile

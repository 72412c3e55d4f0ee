"""The merge geometry of pipeline.classify: which tiles a merge task reads."""

from __future__ import annotations

from morpheus_core.tiling import Box, plan_tiles
from pipeline.classify import overlapping


def test_overlapping_tiles_are_those_whose_read_region_meets_the_chunk():
    tiles = plan_tiles((100, 90), 32, window=8)  # halo 7 below and to the right
    for target in tiles:
        found = overlapping(tiles, target.core_box)
        brute = [t for t in tiles
                 if any(t.read[0] <= y < t.read[1] and t.read[2] <= x < t.read[3]
                        for y in range(target.core[0], target.core[1]) for x in range(target.core[2], target.core[3]))]
        assert found == brute and target in found
        assert overlapping(tiles, target.core) == found  # a plain (y0, y1, x0, x1) too
    # the tile up and to the left reaches into a core through its halo; the one below does not
    corner = overlapping(tiles, Box(32, 64, 32, 64))
    assert [t.index for t in corner] == [(0, 0), (0, 1), (1, 0), (1, 1)]

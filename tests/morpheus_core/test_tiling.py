"""Grid geometry: Box, chunk_boxes and the tiles' boxes."""

from __future__ import annotations

import numpy as np
import pytest

from morpheus_core.tiling import Box, chunk_boxes, plan_tiles


def test_box_name_slices_shape_and_unpacking():
    box = Box(32, 64, 160, 170)
    assert box.name == "y32-64_x160-170"  # the chunk keys of downstream.json
    assert box.slices == (slice(32, 64), slice(160, 170))
    assert box.shape == (32, 10) and box.area == 320 and box.origin == (32, 160)
    y0, y1, x0, x1 = box
    assert (y0, y1, x0, x1) == (32, 64, 160, 170) and Box(*box) == box
    with pytest.raises(AttributeError):
        box.y0 = 0  # immutable
    assert len({Box(0, 1, 0, 1), Box(0, 1, 0, 1)}) == 1


def test_box_intersection_relative_and_grow():
    a = Box(0, 32, 0, 32)
    assert a.intersection(Box(16, 64, 30, 40)) == Box(16, 32, 30, 32)
    assert a.intersection((16, 64, 30, 40)) == Box(16, 32, 30, 32)  # a plain (y0, y1, x0, x1)
    assert a.intersection(Box(32, 64, 0, 32)) is None  # touching faces share no pixel
    assert a.intersection(Box(40, 50, 40, 50)) is None
    inner = Box(20, 30, 25, 40)
    assert inner.relative_to((10, 20)) == Box(10, 20, 5, 20) == inner.relative_to(Box(10, 99, 20, 99))
    image = np.arange(100 * 120).reshape(100, 120)
    read = Box(10, 60, 20, 90)
    np.testing.assert_array_equal(image[read.slices][inner.relative_to(read).slices], image[inner.slices])
    assert Box(10, 20, 0, 30).grow(8, (25, 100)) == Box(2, 25, 0, 38)


@pytest.mark.parametrize("shape, chunk", [((150, 170), 32), ((64, 64), 64), ((5, 7), 10), ((1, 1), 1)])
def test_chunk_boxes_cover_the_image_once_in_raster_order(shape, chunk):
    boxes = chunk_boxes(shape, chunk)
    count = np.zeros(shape, dtype=int)
    for box in boxes:
        count[box.slices] += 1
        assert 1 <= box.shape[0] <= chunk and 1 <= box.shape[1] <= chunk
        assert box.y0 % chunk == 0 and box.x0 % chunk == 0
    assert (count == 1).all()
    assert boxes == sorted(boxes, key=lambda b: (b.y0, b.x0))
    assert len(boxes) == -(-shape[0] // chunk) * -(-shape[1] // chunk)


def test_chunk_boxes_refuse_a_bad_chunk():
    with pytest.raises(ValueError, match="chunk must be >= 1, got 0"):
        chunk_boxes((10, 10), 0)


def test_tile_boxes_match_core_and_read():
    for tile in plan_tiles((100, 90), 32, window=8):
        assert tuple(tile.core_box) == tile.core and tuple(tile.read_box) == tile.read
        assert tile.read_box.slices == tile.read_slices and tile.read_box.shape == tile.read_shape
        assert tile.read_box.intersection(tile.core_box) == tile.core_box


def test_box_contains_matches_a_direct_comparison():
    rng = np.random.default_rng(2)
    ys, xs = rng.integers(-5, 40, 200), rng.integers(-5, 40, 200)
    box = Box(3, 17, 10, 31)
    expected = np.array([3 <= y < 17 and 10 <= x < 31 for y, x in zip(ys, xs)])
    np.testing.assert_array_equal(box.contains(ys, xs), expected)


def test_n_windows_is_what_the_engine_evaluates_on_usable_pixels():
    from morpheus_core.engine import classify_image
    from morpheus_core.testing import StandInClassifier

    image = np.random.default_rng(2).normal(size=(4, 97, 83)).astype(np.float32)
    for stride in (1, 3):
        tiles = plan_tiles(image.shape[1:], 45, window=40, stride=stride)
        total = 0
        for tile in tiles:
            counted = []
            ys, xs = tile.read_slices
            classify_image(
                image[:, ys, xs],
                StandInClassifier(),
                stride=stride,
                anchor_start=tile.anchor_start,
                anchor_stop=tile.anchor_stop,
                progress=counted.append,
            )
            assert sum(counted) == tile.n_windows(40, stride), (stride, tile.index)
            total += tile.n_windows(40, stride)
        # every window of the image once
        assert total == len(range(0, 97 - 40 + 1, stride)) * len(range(0, 83 - 40 + 1, stride))

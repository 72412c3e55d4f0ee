"""Tests for pipeline.products.png: a PNG streamed in row strips equals the array."""

from __future__ import annotations

import numpy as np
import png

from pipeline.products.png import write_png_strips


def test_strips_reassemble_the_image(tmp_path):
    rgb = np.random.default_rng(4).integers(0, 256, (37, 23, 3), dtype=np.uint8)  # 37 rows: a short last strip

    class Strips:  # an array that only hands out row strips, and counts them
        shape = rgb.shape
        reads = 0

        def __getitem__(self, rows):
            Strips.reads += 1
            return rgb[rows]

    out = write_png_strips(tmp_path / "colour.png", Strips(), strip=8)
    assert out == tmp_path / "colour.png" and Strips.reads == 5  # ceil(37 / 8)
    width, height, rows, info = png.Reader(filename=str(out)).read()
    assert (width, height, info["bitdepth"], info["planes"]) == (23, 37, 8, 3)
    np.testing.assert_array_equal(np.vstack([np.asarray(r, dtype=np.uint8) for r in rows]).reshape(rgb.shape), rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["colour.png"]  # no temporary file left

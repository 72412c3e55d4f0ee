"""Tests for pipeline.products.png: a PNG streamed in row strips equals the array, north up
(the array's last row, highest y, at the top, as DS9 shows a FITS image)."""

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
    picture = np.vstack([np.asarray(r, dtype=np.uint8) for r in rows]).reshape(rgb.shape)
    np.testing.assert_array_equal(picture[0, 0], rgb[-1, 0])  # top-left of the picture: y = H - 1, x = 0
    np.testing.assert_array_equal(picture, np.flipud(rgb))
    assert [p.name for p in tmp_path.iterdir()] == ["colour.png"]  # no temporary file left


def test_the_picture_shows_the_sky_as_a_fits_viewer_does(tmp_path):
    """Against the FITS convention, independently: an image bright at the top (high y) in
    ``imshow(origin='lower')``, as DS9 shows the FITS file, is bright at the PNG's top."""
    from PIL import Image

    rgb = np.zeros((30, 20, 3), np.uint8)
    rgb[25:, :5] = (255, 0, 0)  # red: the north-east corner of a north-up, east-left mosaic (high y, low x)
    rgb[:3, -4:] = (0, 0, 255)  # blue: low y, high x
    out = np.asarray(Image.open(write_png_strips(tmp_path / "c.png", rgb, strip=7)).convert("RGB"))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[4, 4]) == (255, 0, 0)
    assert tuple(out[-1, -1]) == (0, 0, 255) and tuple(out[-1, 0]) == (0, 0, 0)

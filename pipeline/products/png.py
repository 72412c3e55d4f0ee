"""PNG images streamed row strip by row strip (the morphological colour image), north up.

A PNG's first row is the top of the picture; a FITS image's first row (``y = 0``,
``origin='lower'`` in matplotlib, the bottom row in DS9) is the bottom. So that
``colour.png`` shows the sky as DS9 shows the run's FITS images (north up for a mosaic
whose ``y`` axis points north), :func:`write_png_strips` writes the array's rows from
the last (highest ``y``) to the first: the PNG's top-left pixel is ``array[H - 1, 0]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.rundir.location import atomic_path

__all__ = ["write_png_strips"]


def write_png_strips(path: Path, array: Any, strip: int) -> Path:
    """Stream an ``(H, W, 3)`` uint8 array (Zarr) to a PNG, ``strip`` rows at a time, atomically,
    with the array's last row at the top (as DS9 shows a FITS image).

    Parameters
    ----------
    path : pathlib.Path
        Destination; an existing file is replaced.
    array : array-like
        ``(H, W, 3)`` uint8 RGB, sliced by rows; row ``y`` of the array is the pixel
        row ``y`` of the run's FITS images.
    strip : int
        Rows read at a time.

    Returns
    -------
    pathlib.Path
        The file written: its row ``r`` is the array's row ``H - 1 - r``.
    """
    import png  # pypng: writes from a row iterator, so memory stays one strip

    height, width, _ = array.shape
    strip = max(1, int(strip))

    def rows():  # top of the picture first: the strips from the highest y down, each flipped
        for top in range(height, 0, -strip):
            block = np.asarray(array[max(0, top - strip) : top])
            yield from block[::-1].reshape(block.shape[0], width * 3)

    writer = png.Writer(width=width, height=height, greyscale=False, bitdepth=8)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        writer.write(fh, rows())
    return path

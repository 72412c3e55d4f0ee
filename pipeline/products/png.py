"""PNG images streamed row strip by row strip (the morphological colour image)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.rundir.location import atomic_path

__all__ = ["write_png_strips"]


def write_png_strips(path: Path, array: Any, strip: int) -> Path:
    """Stream an ``(H, W, 3)`` uint8 array (Zarr) to a PNG, ``strip`` rows at a time, atomically.

    Parameters
    ----------
    path : pathlib.Path
        Destination; an existing file is replaced.
    array : array-like
        ``(H, W, 3)`` uint8 RGB, sliced by rows.
    strip : int
        Rows read at a time.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    import png  # pypng: writes from a row iterator, so memory stays one strip

    height, width, _ = array.shape

    def rows():
        for y in range(0, height, strip):
            block = array[y : min(y + strip, height)]
            yield from block.reshape(block.shape[0], width * 3)

    writer = png.Writer(width=width, height=height, greyscale=False, bitdepth=8)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        writer.write(fh, rows())
    return path

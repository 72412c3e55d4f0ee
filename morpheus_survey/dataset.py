"""Classification images as an :class:`xarray.Dataset` with their WCS and sky coordinates.

One layout for what :func:`morpheus_survey.classify` returns and what
:attr:`morpheus_survey.Run.classification` reads from a run directory:

- ``mean``, ``variance``, ``rank``: ``(class, y, x)`` float32, the 15 images of the
  paper's section 2.3 for the five classes (mean class probability normalised
  across classes, its variance over the windows, normalised rank votes);
- ``n``: ``(y, x)`` int32, the number of windows that counted each pixel (0 where
  nothing was classified: all the images are 0 there);
- coordinates ``class`` (names), ``y`` and ``x`` (0-based pixel indices, as NumPy
  indexes the FITS image and as ``origin='lower'`` plots it), and with a WCS
  ``ra`` and ``dec`` ``(y, x)`` in degrees (ICRS as the WCS says; lazy for Dask input);
- ``attrs``: ``wcs`` (an :class:`astropy.wcs.WCS`) and ``wcs_header`` (its FITS header
  text), ``classes``, ``bands`` and how the images were made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from astropy.wcs import WCS

from morpheus_survey.bands import is_dask

__all__ = ["DESCRIPTIONS", "classification_dataset", "sky_coordinates"]

#: What each variable holds (its ``description`` attribute).
DESCRIPTIONS = {
    "mean": "mean class probability over the windows that counted the pixel, normalised to sum to 1 "
    "over the classes (paper section 2.3)",
    "variance": "variance of the class probability over the windows that counted the pixel",
    "rank": "fraction of the windows that counted the pixel in which the class ranked first (rank votes)",
    "n": "number of windows that counted the pixel (0: not classified)",
}


def _radec_block(y: np.ndarray, x: np.ndarray, wcs: WCS, axis: int) -> np.ndarray:
    return np.asarray(wcs.pixel_to_world_values(x, y)[axis], dtype=np.float64)


def sky_coordinates(wcs: WCS, shape: tuple[int, int], chunks: Any = None) -> tuple[Any, Any]:
    """Right ascension and declination of every pixel centre, degrees.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS of the ``(y, x)`` grid.
    shape : tuple of int
        ``(H, W)``.
    chunks : tuple, optional
        Dask chunks ``(y chunks, x chunks)``: the coordinates are lazy Dask arrays,
        computed a chunk at a time. Default: NumPy arrays.

    Returns
    -------
    ra, dec : numpy.ndarray or dask.array.Array
        ``(H, W)`` float64, from ``wcs.pixel_to_world_values(x, y)``.
    """
    if chunks is None:
        y, x = np.mgrid[: shape[0], : shape[1]]
        ra, dec = wcs.pixel_to_world_values(x, y)
        return np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)
    import dask.array as da

    y = da.arange(shape[0], chunks=(chunks[0],))[:, None]
    x = da.arange(shape[1], chunks=(chunks[1],))[None, :]
    y, x = da.broadcast_arrays(y, x)
    return tuple(da.map_blocks(_radec_block, y, x, wcs=wcs, axis=axis, dtype=np.float64) for axis in (0, 1))


def classification_dataset(
    mean: Any,
    variance: Any,
    rank: Any,
    n: Any,
    *,
    classes: Sequence[str],
    wcs: WCS | None = None,
    wcs_header: str | None = None,
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """The classification images as one :class:`xarray.Dataset` (layout: module docstring).

    Parameters
    ----------
    mean, variance, rank : numpy.ndarray or dask.array.Array
        ``(class, y, x)`` images.
    n : numpy.ndarray or dask.array.Array
        ``(y, x)`` window counts.
    classes : sequence of str
        Class names, in channel order.
    wcs : astropy.wcs.WCS, optional
        Celestial WCS of the grid: adds ``ra``/``dec`` coordinates and the ``wcs`` attribute.
    wcs_header : str, optional
        The WCS as FITS header text (default: written from ``wcs``).
    attrs : dict, optional
        More attributes (model, stride, bands, ...).

    Returns
    -------
    xarray.Dataset
        Lazy where the images are Dask arrays.
    """
    shape = tuple(n.shape)
    data = {
        name: (("class", "y", "x"), cube, {"description": DESCRIPTIONS[name]})
        for name, cube in (("mean", mean), ("variance", variance), ("rank", rank))
    }
    data["n"] = (("y", "x"), n, {"description": DESCRIPTIONS["n"]})
    coords: dict[str, Any] = {"class": list(classes), "y": np.arange(shape[0]), "x": np.arange(shape[1])}
    meta = {"classes": list(classes), **(attrs or {})}
    if wcs is not None:
        wcs = wcs.celestial
        ra, dec = sky_coordinates(wcs, shape, n.chunks if is_dask(n) else None)
        coords["ra"] = (("y", "x"), ra, {"units": "deg", "description": "right ascension of the pixel centre"})
        coords["dec"] = (("y", "x"), dec, {"units": "deg", "description": "declination of the pixel centre"})
        meta["wcs"] = wcs
        meta["wcs_header"] = wcs_header if wcs_header is not None else wcs.to_header().tostring()
    return xr.Dataset(data, coords=coords, attrs=meta)

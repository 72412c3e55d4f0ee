"""FITS images with the mosaic's WCS and a provenance block, written atomically.

:func:`write_fits_image` writes an image in memory, :func:`write_fits_image_strips`
streams a large one (a Zarr or Dask array) strip by strip; both carry the celestial WCS
of the mosaic and the keywords of :func:`pipeline.products.provenance.provenance`, so a
file found on disk says where it came from. Files are written to a temporary file in
the destination folder, then renamed over the destination, so a reader never sees a
half-written product and an interrupted run leaves none.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from pipeline.errors import RunError
from pipeline.products.provenance import Card, add_provenance
from pipeline.rundir.location import atomic_path

__all__ = ["write_fits_image", "write_fits_image_strips"]


def write_fits_image(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    wcs_header: str | None,
    provenance: Mapping[str, Card],
    bunit: str | None = None,
    extname: str | None = None,
    comments: Iterable[str] = (),
) -> Path:
    """Write one 2-D image in memory with its WCS and provenance to a FITS file, atomically.

    The streaming writer (:func:`write_fits_image_strips`) with the whole image as
    one strip: one code path for every FITS product.

    Parameters
    ----------
    path : str or path-like
        Destination; an existing file is replaced.
    data : numpy.ndarray
        2-D image, ``(ny, nx)``. Booleans are stored as ``uint8``, ``float16`` as
        ``float32`` (FITS has neither).
    wcs_header : str or None
        Header text holding the mosaic's WCS (``WCS.to_header_string()``, as the
        ingested store keeps it); its celestial part is written. ``None``: no WCS.
    provenance : mapping of str to (value, comment)
        Keywords from :func:`pipeline.products.provenance.provenance`.
    bunit : str, optional
        Physical unit of the values (``BUNIT``).
    extname : str, optional
        Name of the HDU (``EXTNAME``), e.g. ``"SPHEROID"``.
    comments : iterable of str
        Lines written as ``COMMENT`` cards.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        ``data`` is not 2-D, the WCS is not a 2-D celestial one, or a provenance
        keyword is invalid.
    RunError
        The file could not be written.
    """
    data = _as_fits_image(np.asarray(data), "data")  # one strip of the streaming writer
    return write_fits_image_strips(
        path,
        data,
        strip=max(1, data.shape[0]),
        wcs_header=wcs_header,
        provenance=provenance,
        bunit=bunit,
        extname=extname,
        comments=comments,
    )


def write_fits_image_strips(
    path: str | os.PathLike[str],
    source: Any,
    *,
    strip: int,
    wcs_header: str | None,
    provenance: Mapping[str, Card],
    bunit: str | None = None,
    extname: str | None = None,
    comments: Iterable[str] = (),
) -> Path:
    """Like :func:`write_fits_image`, but streams a large 2-D array strip by strip.

    ``source`` is anything 2-D that slices into NumPy arrays (a Zarr or Dask array),
    read ``strip`` rows at a time, so memory stays one strip however large the image
    (astropy's :class:`~astropy.io.fits.StreamingHDU`). Written atomically like
    :func:`write_fits_image`.

    Parameters
    ----------
    path : str or path-like
        Destination; an existing file is replaced.
    source : array-like
        ``(ny, nx)`` with a NumPy ``dtype`` FITS can hold (bool is written as uint8).
    strip : int
        Rows read and written at a time.
    wcs_header, provenance, bunit, extname, comments
        As for :func:`write_fits_image`.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    if len(source.shape) != 2:
        raise ValueError(f"source must be a 2-D image, got shape {source.shape}")
    ny, nx = (int(v) for v in source.shape)
    first = _as_fits_image(np.asarray(source[: min(1, ny)]), "source")
    header = fits.PrimaryHDU(data=np.zeros((1, 1), dtype=first.dtype)).header
    header["NAXIS1"], header["NAXIS2"] = nx, ny
    header.extend(
        _image_header(wcs_header, provenance=provenance, bunit=bunit, extname=extname, comments=comments), unique=True
    )

    def write(fh: Any, tmp: Path) -> None:  # StreamingHDU opens the file by name
        stream = fits.StreamingHDU(str(tmp), header)
        for y in range(0, ny, max(1, int(strip))):
            stream.write(_as_fits_image(np.asarray(source[y : min(y + strip, ny)]), "source"))
        stream.close()

    return _atomic_file(Path(path), write)


def _as_fits_image(data: np.ndarray, what: str) -> np.ndarray:
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"{what} must be a 2-D image, got shape {data.shape}")
    if data.dtype == bool:
        return data.astype(np.uint8)
    if data.dtype == np.float16:
        return data.astype(np.float32)
    return data


#: Time keywords that :meth:`astropy.wcs.WCS.to_header` writes as 0.0 when the input had
#: no time reference at all (WCSLIB's default, MJD 0 = 1858-11-17): not a property of
#: the mosaic, so left out unless it has a value.
_UNSET_TIME_KEYWORDS = ("MJDREF", "MJDREFI", "MJDREFF")


def _celestial_header(wcs_header: str) -> fits.Header:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(fits.Header.fromstring(wcs_header)).celestial
    if not wcs.has_celestial or wcs.naxis != 2:
        raise ValueError("wcs_header holds no 2-D celestial WCS (RA/Dec)")
    header = wcs.to_header()
    for key in _UNSET_TIME_KEYWORDS:
        if key in header and header[key] == 0:
            del header[key]
    return header


def _image_header(
    wcs_header: str | None,
    *,
    provenance: Mapping[str, Card],
    bunit: str | None,
    extname: str | None,
    comments: Iterable[str],
) -> fits.Header:
    header = fits.Header()
    if extname is not None:
        header["EXTNAME"] = (str(extname), "name of this image")
    if bunit is not None:
        header["BUNIT"] = (str(bunit), "physical unit of the values")
    wcs_cards = fits.Header() if wcs_header is None else _celestial_header(wcs_header)
    header.extend(wcs_cards, unique=True)
    add_provenance(header, provenance, reserved=frozenset(wcs_cards.keys()))
    for line in comments:
        header["COMMENT"] = str(line)
    return header


def _atomic_file(path: Path, write: Any) -> Path:
    """Call ``write(fh, tmp_path)`` for a temporary file beside ``path``, then rename it
    over ``path`` (:func:`pipeline.rundir.location.atomic_path`); I/O errors name the file.
    """
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            write(fh, tmp)
    except OSError as exc:
        raise RunError(f"{path}: cannot write FITS file ({exc})") from exc
    return path

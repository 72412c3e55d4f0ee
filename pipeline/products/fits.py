"""Data products: classification and segmentation maps, catalog tables, colour image.

Every FITS product carries the celestial WCS of the mosaic it was made from and a
provenance block (:func:`provenance`) naming the software, model, precision and run,
so a file found on disk says where it came from. The downstream products
(:func:`write_downstream_products`: segmentation maps, the catalog in
:data:`CATALOG_FORMATS`, the colour PNG) are streamed from ``segmentation.zarr``
strip by strip. Files are written atomically: to a temporary file in the destination
folder, then renamed over the destination, so a reader never sees a half-written
product and an interrupted run leaves none.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from pipeline.errors import RunError
from pipeline.products.catalog_files import write_catalog_table
from pipeline.rundir.layout import CATALOG_FORMATS, RunLayout
from pipeline.rundir.location import Location, atomic_path

logger = logging.getLogger(__name__)

__all__ = ["CATALOG_FORMATS", "SOFTWARE", "provenance", "software_version", "write_classification_products",
           "write_downstream_products", "write_fits_image", "write_fits_image_strips", "write_png_strips"]

SOFTWARE = "morpheus-survey"

#: FITS keyword value with its comment.
Card = tuple[Any, str]

_KEYWORD = re.compile(r"^[A-Z0-9_-]{1,8}$")
# Written by astropy or by this module; provenance must not overwrite them.
_STRUCTURAL = frozenset({"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND",
                         "XTENSION", "PCOUNT", "GCOUNT", "BSCALE", "BZERO", "BUNIT",
                         "EXTNAME", "COMMENT", "HISTORY", "END"})


def software_version() -> str:
    """Version of the installed ``morpheus-survey`` distribution.

    Falls back to ``morpheus_core.__version__`` when the package is not installed
    (running from a source tree).
    """
    try:
        return importlib.metadata.version(SOFTWARE)
    except importlib.metadata.PackageNotFoundError:
        import morpheus_core

        return str(getattr(morpheus_core, "__version__", "unknown"))


def provenance(run_id: str, *, model: str, precision: str,
               extra: Mapping[str, Any] | None = None) -> dict[str, Card]:
    """FITS keywords that say which software, model and run made a product.

    Parameters
    ----------
    run_id : str
        Identifier of the run (as recorded in its manifest and ledger).
    model : str
        The network, e.g. ``"morpheus-astro 0.5.1 model-440"``.
    precision : str
        Numerical precision of inference, e.g. ``"float32"`` or ``"mixed_float16"``.
    extra : mapping, optional
        More keywords: ``{"MOSAIC": "goods-s"}`` or, with a comment,
        ``{"MOSAIC": ("goods-s", "mosaic name")}``. They override the defaults.

    Returns
    -------
    dict of str to (value, comment)
        ``SOFTWARE``, ``SWVERSN``, ``MODEL``, ``PRECISN``, ``RUNID``, ``DATE``
        (UTC, ``YYYY-MM-DDThh:mm:ss``), then the extras; assign with
        ``header[key] = (value, comment)``.

    Raises
    ------
    ValueError
        A keyword that is not a valid FITS keyword of at most 8 characters
        (``A-Z``, ``0-9``, ``_``, ``-``), or a value FITS cannot hold.

    Examples
    --------
    >>> cards = provenance("run-42", model="morpheus-astro 0.5.1 model-440",
    ...                    precision="float32")
    >>> cards["PRECISN"]
    ('float32', 'numerical precision of inference')
    """
    date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    cards: dict[str, Card] = {
        "SOFTWARE": (SOFTWARE, "software that wrote this file"),
        "SWVERSN": (software_version(), "version of the software"),
        "MODEL": (str(model), "classification network"),
        "PRECISN": (str(precision), "numerical precision of inference"),
        "RUNID": (str(run_id), "run identifier"),
        "DATE": (date, "UTC date of file creation"),
    }
    for key, item in (extra or {}).items():
        value, comment = item if isinstance(item, tuple) else (item, "")
        cards[_check_keyword(key)] = (_check_value(key, value), str(comment))
    return cards


def write_fits_image(path: str | os.PathLike[str], data: np.ndarray, *,
                     wcs_header: str | None, provenance: Mapping[str, Card],
                     bunit: str | None = None, extname: str | None = None,
                     comments: Iterable[str] = ()) -> Path:
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
        Keywords from :func:`provenance`.
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
    return write_fits_image_strips(path, data, strip=max(1, data.shape[0]), wcs_header=wcs_header,
                                   provenance=provenance, bunit=bunit, extname=extname, comments=comments)


def write_fits_image_strips(path: str | os.PathLike[str], source: Any, *, strip: int,
                            wcs_header: str | None, provenance: Mapping[str, Card],
                            bunit: str | None = None, extname: str | None = None,
                            comments: Iterable[str] = ()) -> Path:
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
    header.extend(_image_header(wcs_header, provenance=provenance, bunit=bunit, extname=extname,
                                comments=comments), unique=True)

    def write(fh: Any, tmp: Path) -> None:  # StreamingHDU opens the file by name
        stream = fits.StreamingHDU(str(tmp), header)
        for y in range(0, ny, max(1, int(strip))):
            stream.write(_as_fits_image(np.asarray(source[y : min(y + strip, ny)]), "source"))
        stream.close()

    return _atomic_file(Path(path), write)


def _check_keyword(key: str) -> str:
    if not isinstance(key, str) or not _KEYWORD.match(key):
        raise ValueError(f"FITS keyword must be 1-8 characters of A-Z, 0-9, '_' or '-', "
                         f"got {key!r}")
    return key


def _check_value(key: str, value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (str, bool, int, float)):
        raise ValueError(f"FITS keyword {key}: value must be str, bool, int or float, "
                         f"got {type(value).__name__} {value!r}")
    return value


def _as_fits_image(data: np.ndarray, what: str) -> np.ndarray:
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"{what} must be a 2-D image, got shape {data.shape}")
    if data.dtype == bool:
        return data.astype(np.uint8)
    if data.dtype == np.float16:
        return data.astype(np.float32)
    return data


def _celestial_header(wcs_header: str) -> fits.Header:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(fits.Header.fromstring(wcs_header)).celestial
    if not wcs.has_celestial or wcs.naxis != 2:
        raise ValueError("wcs_header holds no 2-D celestial WCS (RA/Dec)")
    return wcs.to_header()


def _image_header(wcs_header: str | None, *, provenance: Mapping[str, Card],
                  bunit: str | None, extname: str | None,
                  comments: Iterable[str]) -> fits.Header:
    header = fits.Header()
    if extname is not None:
        header["EXTNAME"] = (str(extname), "name of this image")
    if bunit is not None:
        header["BUNIT"] = (str(bunit), "physical unit of the values")
    wcs_cards = fits.Header() if wcs_header is None else _celestial_header(wcs_header)
    header.extend(wcs_cards, unique=True)
    _add_provenance(header, provenance, reserved=frozenset(wcs_cards.keys()))
    for line in comments:
        header["COMMENT"] = str(line)
    return header


def _add_provenance(header: fits.Header, cards: Mapping[str, Card], *,
                    reserved: frozenset[str]) -> None:
    for key, (value, comment) in cards.items():
        _check_keyword(key)
        if key in _STRUCTURAL or key in reserved:
            raise ValueError(f"provenance keyword {key} would overwrite a structural "
                             f"or WCS keyword")
        value = _check_value(key, value)
        if len(repr(value)) + len(comment) > 64:  # a card holds 80 characters: drop the comment,
            comment = ""                          # not astropy's truncation warning
        header[key] = (value, comment)


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


class _Plane:
    """One plane ``array[index]`` of a 3-D array (Zarr), read lazily row-strip by row-strip."""

    def __init__(self, array: Any, index: int) -> None:
        self.array, self.index = array, index
        self.shape = tuple(array.shape[1:])

    def __getitem__(self, rows: slice) -> Any:
        return self.array[self.index, rows]


def write_classification_products(fits_dir: Path, *, classification: Any, coverage: Any, wcs_header: str,
                                  cards: Mapping[str, Card], strip: int) -> list[Path]:
    """Write the classification images, ``n`` and the coverage mask as FITS, in row strips.

    Parameters
    ----------
    fits_dir : pathlib.Path
        The ``fits/`` folder (created if missing).
    classification : zarr.Group
        The finished classification store (``mean``, ``variance``, ``rank``, ``n``).
    coverage : array-like
        The mosaic's coverage mask.
    wcs_header : str
        The mosaic's WCS header.
    cards : mapping
        Provenance keywords (:func:`provenance`).
    strip : int
        Rows per strip.

    Returns
    -------
    list of pathlib.Path
        The 15 class images (``<class>_{mean,var,rank}.fits``), ``n.fits`` and
        ``coverage.fits``.
    """
    from morpheus_core import CLASSES
    from pipeline.rundir.layout import FITS_FILES, FITS_SUFFIX

    fits_dir.mkdir(parents=True, exist_ok=True)
    written = []
    classes = tuple(classification.attrs.get("classes", CLASSES))  # the model card's
    for kind, suffix in FITS_SUFFIX.items():
        cube = classification[kind]
        for i, name in enumerate(classes):
            written.append(write_fits_image_strips(
                fits_dir / RunLayout.class_image_name(kind, name), _Plane(cube, i), strip=strip, wcs_header=wcs_header,
                provenance=cards, extname=f"{name.upper()}_{suffix.upper()}"))
    written.append(write_fits_image_strips(fits_dir / FITS_FILES["n"], classification["n"], strip=strip,
                                           wcs_header=wcs_header, provenance=cards, extname="N",
                                           comments=["windows that counted each pixel"]))
    written.append(write_fits_image_strips(fits_dir / FITS_FILES["coverage"], coverage, strip=strip,
                                           wcs_header=wcs_header, provenance=cards, extname="COVERAGE",
                                           comments=["1 where every band has valid data"]))
    return written


def write_downstream_products(out_root: Path, *, table: Table, segmentation: Any, wcs_header: str,
                              cards: Mapping[str, Card], chunk: int, value_added: bool) -> list[Path]:
    """Write the downstream products under ``out_root``, streamed ``chunk`` rows at a time.

    ``fits/segmap.fits`` and ``fits/segmap_deblended.fits`` (from the ``segments``
    and ``deblended`` arrays of ``segmentation``), ``catalog/catalog.<suffix>`` for
    each of :data:`CATALOG_FORMATS` (no machine-readable table for an empty
    catalog), and ``colour.png`` (from ``colour``).

    Parameters
    ----------
    out_root : pathlib.Path
        The run directory (or a local folder to upload from).
    table : astropy.table.Table
        The catalog.
    segmentation : zarr.Group
        The finished segmentation store.
    wcs_header : str
        The mosaic's WCS header.
    cards : mapping
        Provenance keywords (:func:`provenance`).
    chunk : int
        Rows per strip.
    value_added : bool
        Whether the deblended map's pixel values are catalog rows of external markers.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    layout = RunLayout(Location(out_root))
    fits_dir = layout.fits.path
    fits_dir.mkdir(exist_ok=True)
    written = [
        write_fits_image_strips(layout.fits_file("segments").path, segmentation["segments"], strip=chunk,
                                wcs_header=wcs_header, provenance=cards, extname="SEGMAP",
                                comments=["segments of Algorithm 1 (before deblending); 0 = no source"]),
        write_fits_image_strips(layout.fits_file("deblended").path, segmentation["deblended"], strip=chunk,
                                wcs_header=wcs_header, provenance=cards, extname="DEBLENDED",
                                comments=["objects after Algorithm 2: pixel value = catalog "
                                          + ("row number of the input markers" if value_added else "id")]),
    ]
    out_dir = layout.catalog.path
    out_dir.mkdir(exist_ok=True)
    for suffix, fmt in CATALOG_FORMATS.items():
        if fmt == "ascii.mrt" and len(table) == 0:  # astropy's MRT writer needs a row
            layout.catalog_file(suffix).path.unlink(missing_ok=True)
            logger.warning("empty catalog: no machine-readable table written")
            continue
        written.append(write_catalog_table(table, layout.catalog_file(suffix).path, fmt))
    written.append(write_png_strips(layout.colour.path, segmentation["colour"], strip=chunk))
    return written


def write_png_strips(path: Path, array: Any, strip: int) -> Path:
    """Stream an ``(H, W, 3)`` uint8 array (Zarr) to a PNG, ``strip`` rows at a time, atomically."""
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

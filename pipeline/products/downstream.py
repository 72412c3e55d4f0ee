"""The downstream graph's products: segmentation maps, the catalog files, the colour image.

:func:`write_downstream_products` streams them from ``segmentation.zarr`` strip by
strip; :func:`downstream_keywords` builds, once, the provenance they carry: the FITS
keywords of the segmentation maps and the catalog's metadata, from the same settings
keywords and the recorded model card's.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from morpheus_core import CLASSES
from pipeline.products.catalog_files import write_catalog_table
from pipeline.products.fits import write_fits_image_strips
from pipeline.products.png import write_png_strips
from pipeline.products.provenance import Card, provenance
from pipeline.products.regions import write_regions
from pipeline.rundir.layout import CATALOG_FORMATS, RunLayout
from pipeline.rundir.location import Location
from pipeline.settings.downstream import DownstreamSettings

logger = logging.getLogger(__name__)

__all__ = ["downstream_keywords", "write_downstream_products"]


def downstream_keywords(
    settings: DownstreamSettings, *, run_id: str | None, model: str, precision: str, card_keywords: Mapping[str, Card]
) -> tuple[dict[str, Card], dict[str, Any]]:
    """The provenance of the downstream products: FITS keywords and catalog metadata, built once.

    Parameters
    ----------
    settings : DownstreamSettings
        The settings the products were made with (flux band resolved).
    run_id, model, precision : str
        As :func:`pipeline.products.provenance.provenance` (``None``/empty: ``""``
        and ``"unknown"``).
    card_keywords : mapping of str to (value, comment)
        The recorded model card's keywords (:func:`pipeline.inputs.model_cards.header_cards`).

    Returns
    -------
    cards : dict of str to (value, comment)
        The segmentation maps' keywords: the provenance block, the settings
        (``DETECT``, ``SEGTHR``, ``MINDIST``, ``NDMAX``, ``FLUXBAND``), the model card's.
    meta : dict
        The catalog's metadata: the provenance block (``SOFTWARE``, ``SWVERSN``,
        ``MODEL``, ``PRECISN``, ``RUNID``; no ``DATE``), the same settings, ``MARKERS``
        (file name), ``APERTURE`` (arcsec), the model card's.
    """
    chosen: dict[str, Card] = {
        "DETECT": (settings.detection, "Alg. 1 rule: paper (rank vote), mean or mixed"),
        "SEGTHR": (settings.threshold, "Alg. 1: source if background <= this"),
        "MINDIST": (settings.min_distance, "Alg. 2: min peak separation (px)"),
        "NDMAX": (settings.nd_max, "Alg. 2: max children per segment"),
        "FLUXBAND": (settings.flux_band, "band of deblending and Eq. 16 weights"),
    }
    cards = {**provenance(run_id or "", model=model or "unknown", precision=precision, extra=chosen), **card_keywords}
    # No DATE: the same catalog written again is the same file.
    meta = {
        **{key: value for key, (value, _) in cards.items() if key not in card_keywords and key != "DATE"},
        "MARKERS": Path(settings.markers).name if settings.markers else "",
        "APERTURE": settings.aperture_arcsec,
        **{key: value for key, (value, _) in card_keywords.items()},
    }
    return cards, meta


def write_downstream_products(
    out_root: Path,
    *,
    table: Table,
    segmentation: Any,
    wcs_header: str,
    cards: Mapping[str, Card],
    chunk: int,
    value_added: bool,
    catalog_name: str | None = None,
    classes: Sequence[str] = CLASSES,
) -> list[Path]:
    """Write the downstream products under ``out_root``, streamed ``chunk`` rows at a time.

    ``fits/segmap.fits`` and ``fits/segmap_deblended.fits`` (from the ``segments``
    and ``deblended`` arrays of ``segmentation``), the catalog
    (:meth:`~pipeline.rundir.layout.RunLayout.catalog_files`): ``catalog/catalog.<suffix>``
    for each of :data:`~pipeline.rundir.layout.CATALOG_FORMATS` (no machine-readable
    table for an empty catalog) and the DS9 regions ``catalog/objects.reg``; and
    ``colour.png`` (from ``colour``). In value-added mode the maps and catalog of
    ``catalog_name`` (default ``value_added``): ``fits/<name>_segmap.fits``,
    ``fits/<name>_segmap_deblended.fits`` (:meth:`~pipeline.rundir.layout.RunLayout.segmap_file`)
    and ``catalog/<name>.*``, beside the internal maps, catalog and colour image, which stay
    as they are.

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
        FITS keywords (:func:`downstream_keywords`).
    chunk : int
        Rows per strip.
    value_added : bool
        Whether the deblended map's pixel values are catalog rows of external markers.
    catalog_name : str, optional
        Value-added mode: the catalog's name (:meth:`~pipeline.rundir.layout.RunLayout.catalog_name`).
    classes : sequence of str
        The run's classes (the region file's colours).

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    layout = RunLayout(Location(out_root))
    name = RunLayout.catalog_name(value_added, catalog_name)
    fits_dir = layout.fits.path
    fits_dir.mkdir(exist_ok=True)
    written = [
        write_fits_image_strips(
            layout.segmap_file("segments", name).path,
            segmentation["segments"],
            strip=chunk,
            wcs_header=wcs_header,
            provenance=cards,
            extname="SEGMAP",
            comments=["segments of Algorithm 1 (before deblending); 0 = no source", "values are segment ids (no unit)"],
        ),
        write_fits_image_strips(
            layout.segmap_file("deblended", name).path,
            segmentation["deblended"],
            strip=chunk,
            wcs_header=wcs_header,
            provenance=cards,
            extname="DEBLENDED",
            comments=[
                "objects after Algorithm 2: pixel value = catalog "
                + ("row number of the input markers" if value_added else "id"),
                "values are ids (no unit); 0 = no object",
            ],
        ),
    ]
    out_dir = layout.catalog.path
    out_dir.mkdir(exist_ok=True)
    for suffix, fmt in CATALOG_FORMATS.items():
        if fmt == "ascii.mrt" and len(table) == 0:  # astropy's MRT writer needs a row
            layout.catalog_file(suffix, name).path.unlink(missing_ok=True)
            logger.warning("empty catalog: no machine-readable table written")
            continue
        written.append(write_catalog_table(table, layout.catalog_file(suffix, name).path, fmt))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(fits.Header.fromstring(wcs_header)) if wcs_header else None
    written.append(
        write_regions(
            table,
            layout.regions_file(name).path,
            classes=classes,
            wcs=wcs if wcs is not None and wcs.has_celestial else None,
        )
    )
    if not value_added:  # the colour image is the classification's: a value-added run leaves it
        written.append(write_png_strips(layout.colour.path, segmentation["colour"], strip=chunk))
    return written

"""The catalog as a DS9 region file (``catalog/objects.reg``), written with astropy's
``regions`` package.

One region per measured row, coloured by its dominant class with the map's colours
(:func:`morpheus_core.colour.class_colours`, the legend of ``python -m pipeline
view``), labelled with its ``id`` (``source_id`` in a value-added catalog):

- an **ellipse** when the row has shape columns (photutils' ``semimajor_sigma``,
  ``semiminor_sigma``, ``orientation``): the Kron ellipse as photutils measures it,
  semi-axes ``kron_scale * kron_radius`` times the 1-sigma axes (``kron_scale`` is
  the photometry's ``kron_params[0]``, 2.5, SExtractor's ``PHOT_AUTOPARAMS``), or
  :data:`SIGMA_SCALE` times the 1-sigma axes where the row has no Kron radius;
- a **circle** of the object's area (``sqrt(area / pi)``) otherwise.

With a WCS the regions are written in ICRS (the system of the catalog's ``ra`` and
``dec``), sizes in arcsec through the local pixel scale and angles from north through
the local direction of north, as ``regions`` converts a single region
(``to_sky``) but for all rows at once; without one, in image coordinates (DS9's
1-based pixels: the 0-based ``x``, ``y`` plus one). Rows without a measured centre
(value-added sources outside the classified area) get no region.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.wcs import WCS

from morpheus_core import CLASSES
from morpheus_core.colour import class_colours
from morpheus_core.photutils_catalog import KRON_PARAMS
from pipeline.rundir.location import atomic_path

__all__ = ["KRON_SCALE", "SIGMA_SCALE", "catalog_regions", "write_regions"]

#: Scale of the Kron ellipse: the catalog's ``kron_params[0]`` (SExtractor's ``PHOT_AUTOPARAMS`` k).
KRON_SCALE = KRON_PARAMS[0]
#: Semi-axes of the drawn ellipse in units of the 1-sigma axes when a row has no Kron radius.
SIGMA_SCALE = 3.0
_SHAPE = ("semimajor_sigma", "semiminor_sigma", "orientation")
_ARCSEC_STEP = 1.0  # offset towards north that measures the local pixel scale and north angle


def _values(table: Table, name: str) -> np.ndarray:
    """A column as float64 with masked entries NaN (NaN where the column is absent)."""
    if name not in table.colnames:
        return np.full(len(table), np.nan)
    return np.ma.filled(np.ma.asarray(table[name], dtype=np.float64), np.nan)


def _axes(table: Table, kron_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Semi-major and semi-minor axes (pixels) and angle (deg from +x, counter-clockwise);
    NaN minor axis marks a circle.
    """
    a, b, theta = (_values(table, c) for c in _SHAPE)
    kron = _values(table, "kron_radius")
    scale = np.where(np.isfinite(kron) & (kron > 0), kron_scale * kron, SIGMA_SCALE)
    ellipse = np.isfinite(a) & np.isfinite(b) & np.isfinite(theta) & (a > 0) & (b > 0)
    radius = np.sqrt(np.maximum(_values(table, "area"), 0.0) / np.pi)
    major = np.where(ellipse, scale * a, radius)
    minor = np.where(ellipse, scale * b, np.nan)
    return major, minor, np.where(ellipse, theta, 0.0)


def _labels(table: Table) -> list[str]:
    name = "source_id" if "source_id" in table.colnames else "id"
    return (
        [str(v) for v in np.ma.filled(np.ma.asarray(table[name]).astype(str), "")]
        if name in table.colnames
        else [""] * len(table)
    )


def catalog_regions(
    table: Table, *, classes: Sequence[str] = CLASSES, wcs: WCS | None = None, kron_scale: float = KRON_SCALE
):
    """The catalog's rows as ``regions`` shapes.

    Parameters
    ----------
    table : astropy.table.Table
        The catalog: ``x``, ``y`` (0-based pixels), ``dominant_class``, and ``area``
        or the shape columns (see the module).
    classes : sequence of str
        The run's classes (their colours are the map's).
    wcs : astropy.wcs.WCS, optional
        The mosaic's WCS: regions on the sky (ICRS); ``None``: image coordinates.
    kron_scale : float
        Scale of the Kron ellipse (photutils' ``kron_params[0]``).

    Returns
    -------
    regions.Regions
        One region per row with a measured centre, in row order.
    """
    from regions import CirclePixelRegion, CircleSkyRegion, EllipsePixelRegion, EllipseSkyRegion, PixCoord, Regions

    x, y = _values(table, "x"), _values(table, "y")
    major, minor, theta = _axes(table, kron_scale)
    colours = {c: "#{:02x}{:02x}{:02x}".format(*rgb) for c, rgb in class_colours(classes).items()}
    dominant = (
        np.ma.filled(np.ma.asarray(table["dominant_class"]).astype(str), "")
        if "dominant_class" in table.colnames
        else np.full(len(table), "")
    )
    labels = _labels(table)
    rows = np.flatnonzero(np.isfinite(x) & np.isfinite(y) & np.isfinite(major))
    if wcs is not None and len(rows):
        celestial = wcs.celestial
        centre = celestial.pixel_to_world(x[rows], y[rows])
        north = centre.directional_offset_by(0 * u.deg, _ARCSEC_STEP * u.arcsec)
        nx, ny = celestial.world_to_pixel(north)
        dx, dy = nx - x[rows], ny - y[rows]
        arcsec_per_pixel = _ARCSEC_STEP / np.hypot(dx, dy)
        north_angle = np.degrees(np.arctan2(dy, dx))
        centre = SkyCoord(centre.icrs.ra, centre.icrs.dec, frame="icrs")
    shapes = []
    for k, i in enumerate(rows):
        meta = {"text": labels[i]}
        visual = {"color": colours.get(str(dominant[i]), "#ffffff")}
        if wcs is None:
            centre_i = PixCoord(x[i], y[i])
            if np.isnan(minor[i]):
                shapes.append(CirclePixelRegion(centre_i, radius=major[i], meta=meta, visual=visual))
            else:
                shapes.append(
                    EllipsePixelRegion(
                        centre_i,
                        width=2 * major[i],
                        height=2 * minor[i],
                        angle=theta[i] * u.deg,
                        meta=meta,
                        visual=visual,
                    )
                )
            continue
        scale = arcsec_per_pixel[k] * u.arcsec
        if np.isnan(minor[i]):
            shapes.append(CircleSkyRegion(centre[k], radius=major[i] * scale, meta=meta, visual=visual))
        else:
            shapes.append(
                EllipseSkyRegion(
                    centre[k],
                    width=2 * major[i] * scale,
                    height=2 * minor[i] * scale,
                    angle=(theta[i] - (north_angle[k] - 90.0)) * u.deg,
                    meta=meta,
                    visual=visual,
                )
            )
    return Regions(shapes)


def write_regions(
    table: Table,
    path: Path,
    *,
    classes: Sequence[str] = CLASSES,
    wcs: WCS | None = None,
    kron_scale: float = KRON_SCALE,
) -> Path:
    """Write the catalog as a DS9 region file, atomically (see :func:`catalog_regions`).

    Parameters
    ----------
    table : astropy.table.Table
        The catalog.
    path : pathlib.Path
        Destination (``catalog/objects.reg``); an existing file is replaced.
    classes, wcs, kron_scale
        As :func:`catalog_regions`.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    regions = catalog_regions(table, classes=classes, wcs=wcs, kron_scale=kron_scale)
    header = (
        f"# {len(regions)} objects; colour = dominant class: "
        + ", ".join(
            f"{c} {'#{:02x}{:02x}{:02x}'.format(*rgb)}" for c, rgb in class_colours(classes).items() if c != classes[-1]
        )
        + "\n"
    )
    text = regions.serialize(format="ds9") if len(regions) else "# Region file format: DS9\nimage\n"
    with atomic_path(path) as tmp:
        tmp.write_text(header + text)
    return path

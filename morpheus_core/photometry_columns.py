"""Column names, units and descriptions of the photometry (:mod:`morpheus_core.photometry`).

The pipeline writes them into the catalog's Parquet, FITS and MRT metadata:
:data:`SHAPE_COLUMNS` (from the shape band), :func:`band_columns` (per band, suffixed
with its name), :func:`column_info` for a frame's columns, and :func:`photometry_table`
for an astropy Table with units, descriptions and masked nulls.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from astropy import units as u
from astropy.table import MaskedColumn, Table

from morpheus_core.magnitudes import N_SIGMA_LIMIT

__all__ = ["SHAPE_COLUMNS", "band_columns", "column_info", "photometry_table"]

#: Shape columns (from the shape band): name -> (unit, description); ``{band}`` is the shape band.
SHAPE_COLUMNS: dict[str, tuple[str | None, str]] = {
    "x_centroid": (
        "pix",
        "centroid x of the object's pixels in {band} (photutils centroid: first moments), 0-based full-image pixel",
    ),
    "y_centroid": ("pix", "centroid y of the object's pixels in {band} (photutils centroid), 0-based full-image pixel"),
    "bbox_xmin": ("pix", "first column of the object's pixels (0-based, inclusive)"),
    "bbox_xmax": ("pix", "last column of the object's pixels (0-based, inclusive)"),
    "bbox_ymin": ("pix", "first row of the object's pixels (0-based, inclusive)"),
    "bbox_ymax": ("pix", "last row of the object's pixels (0-based, inclusive)"),
    "semimajor_sigma": (
        "pix",
        "1-sigma semi-major axis of the {band} second moments over the object's pixels (SExtractor A_IMAGE)",
    ),
    "semiminor_sigma": ("pix", "1-sigma semi-minor axis of the {band} second moments (SExtractor B_IMAGE)"),
    "ellipticity": (None, "1 - semiminor_sigma / semimajor_sigma"),
    "orientation": ("deg", "angle of the semi-major axis, counter-clockwise from +x"),
    "equivalent_radius": ("pix", "radius of the circle with the object's unmasked pixel area"),
    "gini": (None, "Gini coefficient of the object's {band} pixel values (Lotz et al. 2004)"),
    "kron_radius": (
        "pix",
        "unscaled first-moment Kron radius in {band} (photutils kron_radius, in units of the "
        "second-moment ellipse; the Kron aperture is kron_params[0] times this ellipse)",
    ),
    "half_light_radius": ("pix", "radius of the circle holding half the {band} Kron flux (photutils flux_radius(0.5))"),
}


def band_columns(
    band: str, *, magnitudes: bool = True, n_sigma: float = N_SIGMA_LIMIT
) -> dict[str, tuple[str | None, str]]:
    """Per-band columns: name -> (unit, description); unit ``"flux"`` is the image's unit.

    Parameters
    ----------
    band : str
        Band name (the columns' suffix).
    magnitudes : bool
        Include the AB magnitude columns (only when the band's zero point is known).
    n_sigma : float
        Significance of the ``maglim_*`` upper limits.

    Returns
    -------
    dict
        ``segment_flux_<band>``, ``segment_fluxerr_<band>``, ``kron_flux_<band>``,
        ``kron_fluxerr_<band>`` and, with ``magnitudes``, ``mag_<kind>_<band>``,
        ``magerr_<kind>_<band>``, ``maglim_<kind>_<band>`` for kind ``segment`` and ``kron``.
    """
    cols = {
        f"segment_flux_{band}": ("flux", f"sum of {band} over the object's pixels (photutils segment_flux)"),
        f"segment_fluxerr_{band}": ("flux", f"error of segment_flux_{band} from the {band} error map"),
        f"kron_flux_{band}": (
            "flux",
            f"{band} flux in the shape band's Kron aperture, neighbours' pixels replaced "
            "by their mirror through the centroid (photutils kron_flux)",
        ),
        f"kron_fluxerr_{band}": ("flux", f"error of kron_flux_{band} from the {band} error map"),
    }
    if magnitudes:
        for kind in ("segment", "kron"):
            cols[f"mag_{kind}_{band}"] = ("mag", f"AB magnitude of {kind}_flux_{band}; null where the flux <= 0")
            cols[f"magerr_{kind}_{band}"] = (
                "mag",
                f"1.0857 * {kind}_fluxerr_{band} / {kind}_flux_{band}; null where the flux <= 0",
            )
            cols[f"maglim_{kind}_{band}"] = (
                "mag",
                f"{n_sigma:g}-sigma upper limit, AB magnitude of {n_sigma:g} * "
                f"{kind}_fluxerr_{band}; given where {kind}_flux_{band} < "
                f"{n_sigma:g} * {kind}_fluxerr_{band} (null otherwise)",
            )
    return cols


def column_info(
    columns: Sequence[str],
    *,
    shape_band: str,
    bands: Sequence[str],
    flux_unit: str | u.UnitBase | None = None,
    n_sigma: float = N_SIGMA_LIMIT,
) -> dict[str, tuple[u.UnitBase | None, str]]:
    """Unit and description of each column of a :func:`measure_objects` frame.

    Parameters
    ----------
    columns : sequence of str
        Column names (e.g. ``frame.columns``).
    shape_band : str
        The band the shape columns were measured in.
    bands : sequence of str
        Bands measured.
    flux_unit : str or astropy.units.UnitBase, optional
        Unit of the images (flux columns); None: no unit.
    n_sigma : float
        Significance of the upper limits, as given to :func:`measure_objects`.

    Returns
    -------
    dict
        name -> (astropy unit or None, description) for every name of ``columns``.

    Raises
    ------
    KeyError
        For a column this module does not make.
    """
    known = {name: (unit, text.format(band=shape_band)) for name, (unit, text) in SHAPE_COLUMNS.items()}
    for band in bands:
        known.update(band_columns(band, n_sigma=n_sigma))
    flux = u.Unit(flux_unit) if flux_unit else None
    units = {"pix": u.pix, "deg": u.deg, "mag": u.mag, "flux": flux, None: None}
    return {name: (units[known[name][0]], known[name][1]) for name in columns}


def photometry_table(
    frame: pd.DataFrame,
    *,
    shape_band: str,
    bands: Sequence[str],
    flux_unit: str | u.UnitBase | None = None,
    n_sigma: float = N_SIGMA_LIMIT,
) -> Table:
    """A :func:`measure_objects` frame as an astropy Table with units, descriptions and masked nulls.

    Parameters
    ----------
    frame : pandas.DataFrame
        Output of :func:`measure_objects` (possibly concatenated over groups).
    shape_band, bands, flux_unit, n_sigma
        As for :func:`column_info`.

    Returns
    -------
    astropy.table.Table
        Column ``id`` then the frame's columns; NaN entries are masked (Parquet nulls,
        FITS and MRT blanks when written by the pipeline).
    """
    info = column_info(list(frame.columns), shape_band=shape_band, bands=bands, flux_unit=flux_unit, n_sigma=n_sigma)
    table = Table()
    table["id"] = frame.index.to_numpy(np.int64)
    table["id"].description = "object id: the pixel value in the deblended segmentation map"
    for name in frame.columns:
        values = frame[name].to_numpy()
        null = ~np.isfinite(values) if values.dtype.kind == "f" else np.zeros(len(values), bool)
        unit, text = info[name]
        table[name] = MaskedColumn(values, mask=null, unit=unit, description=text)
    return table

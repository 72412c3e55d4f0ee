"""AB zero points from FITS headers, and AB magnitudes with upper limits.

Zero point of an image (the AB magnitude of one unit of its pixel values), in this order:

1. ``PHOTFLAM`` and ``PHOTPLAM`` (HST: inverse sensitivity in erg/s/cm^2/A per
   electron/s, pivot wavelength in A)::

       ZP_AB = -2.5 log10(PHOTFLAM) - 21.10 - 5 log10(PHOTPLAM) + 18.692

   (the ST magnitude zero point, ``-21.10``, moved to AB at the pivot wavelength);
2. an AB zero point keyword: ``ABMAG``, ``MAGZP`` or ``ZP``;
3. none: :func:`ab_zeropoint` returns None and the catalog has no magnitude columns (a
   zero point is never guessed). The pipeline may take one from the user instead.

Magnitudes (:func:`ab_magnitudes`): ``mag = -2.5 log10(flux) + ZP`` and
``magerr = 2.5 / ln(10) * fluxerr / flux`` where the flux is positive, null (NaN)
otherwise; ``maglim = -2.5 log10(n_sigma * fluxerr) + ZP``, the ``n_sigma`` upper
limit, wherever the flux is not an ``n_sigma`` detection (``flux < n_sigma * fluxerr``,
which includes every flux <= 0). The paper's catalog wrote -1 for negative fluxes; we
write nulls and the limit instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["AB_KEYWORDS", "N_SIGMA_LIMIT", "ab_magnitudes", "ab_zeropoint", "photflam_zeropoint"]

#: Header keywords read as an AB zero point when PHOTFLAM/PHOTPLAM are absent, in order.
AB_KEYWORDS: tuple[str, ...] = ("ABMAG", "MAGZP", "ZP")
#: Significance of the ``maglim_*`` upper limits.
N_SIGMA_LIMIT = 3.0
_MAGERR = 2.5 / math.log(10.0)


def photflam_zeropoint(photflam: float, photplam: float) -> float:
    """AB zero point of HST data in electrons/s from ``PHOTFLAM`` and ``PHOTPLAM``.

    Parameters
    ----------
    photflam : float
        Inverse sensitivity, erg/s/cm^2/A per electron/s.
    photplam : float
        Pivot wavelength, Angstrom.

    Returns
    -------
    float
        ``-2.5 log10(PHOTFLAM) - 21.10 - 5 log10(PHOTPLAM) + 18.692``.

    Raises
    ------
    ValueError
        Unless both are finite and positive.

    Examples
    --------
    >>> round(photflam_zeropoint(1.9275e-20, 15369.176), 3)  # WFC3/IR F160W
    25.946
    """
    for name, value in (("PHOTFLAM", photflam), ("PHOTPLAM", photplam)):
        if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    return -2.5 * math.log10(photflam) - 21.10 - 5.0 * math.log10(photplam) + 18.692


def ab_zeropoint(header: Mapping[str, Any]) -> float | None:
    """AB zero point of an image from its FITS header, or None when it does not say.

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The image's header.

    Returns
    -------
    float or None
        From ``PHOTFLAM`` + ``PHOTPLAM`` if both are present, else from the first of
        :data:`AB_KEYWORDS` present; None when none is.

    Raises
    ------
    ValueError
        When only one of PHOTFLAM/PHOTPLAM is present, or a keyword holds no usable
        number (the message names it).
    """
    has_flam, has_plam = "PHOTFLAM" in header, "PHOTPLAM" in header
    if has_flam and has_plam:
        return photflam_zeropoint(header["PHOTFLAM"], header["PHOTPLAM"])
    if has_flam != has_plam:
        missing = "PHOTPLAM" if has_flam else "PHOTFLAM"
        raise ValueError(
            f"the header has {'PHOTFLAM' if has_flam else 'PHOTPLAM'} but no {missing}: "
            "both are needed for an AB zero point"
        )
    for key in AB_KEYWORDS:
        if key in header:
            value = header[key]
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.floating, np.integer))
                or not math.isfinite(value)
            ):
                raise ValueError(f"header keyword {key} must be a finite AB zero point, got {value!r}")
            return float(value)
    return None


def ab_magnitudes(
    flux: np.ndarray, fluxerr: np.ndarray, zeropoint: float, *, n_sigma: float = N_SIGMA_LIMIT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AB magnitudes, their errors and ``n_sigma`` upper limits (NaN is null).

    Parameters
    ----------
    flux, fluxerr : numpy.ndarray
        Fluxes and their 1-sigma errors, in the image's units.
    zeropoint : float
        AB magnitude of one unit of flux.
    n_sigma : float
        Significance of the upper limit.

    Returns
    -------
    mag : numpy.ndarray
        ``-2.5 log10(flux) + zeropoint`` where ``flux > 0``, NaN elsewhere.
    magerr : numpy.ndarray
        ``2.5 / ln(10) * fluxerr / flux`` where ``flux > 0``, NaN elsewhere.
    maglim : numpy.ndarray
        ``-2.5 log10(n_sigma * fluxerr) + zeropoint`` where ``flux < n_sigma * fluxerr``
        (not an ``n_sigma`` detection) and ``fluxerr > 0``, NaN elsewhere.

    Examples
    --------
    >>> mag, err, lim = ab_magnitudes(np.array([1.0, -0.1]), np.array([0.1, 0.1]), 25.0)
    >>> mag.round(3).tolist(), err.round(4).tolist(), lim.round(3).tolist()
    ([25.0, nan], [0.1086, nan], [nan, 26.307])
    """
    if not (n_sigma > 0 and math.isfinite(n_sigma)):
        raise ValueError(f"n_sigma must be a positive number, got {n_sigma!r}")
    if not math.isfinite(zeropoint):
        raise ValueError(f"zeropoint must be finite, got {zeropoint!r}")
    flux = np.asarray(flux, dtype=np.float64)
    fluxerr = np.asarray(fluxerr, dtype=np.float64)
    positive = np.isfinite(flux) & (flux > 0)
    safe = np.where(positive, flux, 1.0)
    mag = np.where(positive, -2.5 * np.log10(safe) + zeropoint, np.nan)
    magerr = np.where(positive, _MAGERR * fluxerr / safe, np.nan)
    usable = np.isfinite(fluxerr) & (fluxerr > 0)
    limit = usable & np.isfinite(flux) & (flux < n_sigma * np.where(usable, fluxerr, 0.0))
    lim_safe = np.where(usable, n_sigma * fluxerr, 1.0)
    maglim = np.where(limit, -2.5 * np.log10(lim_safe) + zeropoint, np.nan)
    return mag, magerr, maglim

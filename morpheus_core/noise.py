"""Per-pixel errors for the photometry: from a weight or rms map, or from the sky itself.

Three sources of the background rms, best first:

- an inverse-variance **weight map** (HST drizzle ``WHT``): ``rms = 1 / sqrt(wht)``,
  pixels with ``wht <= 0`` (or non-finite) unobserved (:func:`rms_from_weight`);
- an **rms map** (:func:`rms_from_map`): pixels with ``rms <= 0`` unobserved;
- neither: a per-chunk estimate from the pixels the classification calls sky
  (:func:`sky_pixels`: rank-vote background exactly 1, classified, observed, outside
  every segment) with astropy's ``sigma_clipped_stats`` (:func:`sky_noise`): the
  clipped median is the background level, the clipped standard deviation the rms.

The error array of the photometry is then :func:`total_error`: with an effective gain
(exposure time for images in electrons/s, :func:`effective_gain`) photutils'
``calc_total_error`` adds the sources' Poisson noise to the background rms; without
one it is the **background-only** error (the rms itself), which underestimates the
error of bright sources. Drizzled images have correlated noise, so the scatter of
single pixels is smaller than what sums over apertures show: on the XDF F160W cut of
``tests/data/hst_xdf`` the sky pixels' rms is 0.45 of the weight map's, and sums over
3-pixel-radius apertures scatter as the weight map predicts, 2.1 times what the pixel
rms predicts (docs/validation.md, "Real HST data"). Errors from :func:`sky_noise` are
therefore too small for drizzled data (no correction is applied here); prefer a
weight map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.stats import sigma_clipped_stats
from photutils.utils import calc_total_error

from morpheus_core.catalog import image_unit

__all__ = [
    "SkyNoise",
    "effective_gain",
    "rms_from_map",
    "rms_from_weight",
    "sky_noise",
    "sky_pixels",
    "total_error",
]

#: Electrons per second, as :func:`morpheus_core.catalog.image_unit` writes it.
_ELECTRON_RATE = "electron / s"


@dataclass(frozen=True)
class SkyNoise:
    """Background level and per-pixel rms of a piece of sky.

    Attributes
    ----------
    background : float
        Sigma-clipped median of the sky pixels.
    rms : float
        Sigma-clipped standard deviation of the sky pixels.
    n_pixels : int
        Number of sky pixels used (before clipping).
    """

    background: float
    rms: float
    n_pixels: int


def sky_pixels(
    background: np.ndarray,
    *,
    classified: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    data: np.ndarray | None = None,
) -> np.ndarray:
    """Pixels the classification calls certain sky.

    Parameters
    ----------
    background : numpy.ndarray
        ``(H, W)`` normalised rank-vote background image (1: every window that counted
        the pixel ranked background first).
    classified : numpy.ndarray, optional
        ``(H, W)`` bool, pixels with a classification (``n > 0``).
    labels : numpy.ndarray, optional
        ``(H, W)`` segmentation; pixels of segments are not sky.
    mask : numpy.ndarray, optional
        ``(H, W)`` bool, unobserved pixels.
    data : numpy.ndarray, optional
        ``(H, W)`` image; its non-finite pixels are not sky.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool.
    """
    background = np.asarray(background)
    sky = background == 1.0
    for name, extra in (("classified", classified), ("labels", labels), ("mask", mask), ("data", data)):
        if extra is None:
            continue
        extra = np.asarray(extra)
        if extra.shape != background.shape:
            raise ValueError(
                f"{name} and background must have the same shape, got {extra.shape} and {background.shape}"
            )
        if name == "classified":
            sky &= extra.astype(bool)
        elif name == "labels":
            sky &= extra == 0
        elif name == "mask":
            sky &= ~extra.astype(bool)
        else:
            sky &= np.isfinite(extra)
    return sky


def sky_noise(
    data: np.ndarray, sky: np.ndarray, *, sigma: float = 3.0, maxiters: int = 10, min_pixels: int = 100
) -> SkyNoise:
    """Sigma-clipped background level and rms of the sky pixels of an image.

    Parameters
    ----------
    data : numpy.ndarray
        ``(H, W)`` image (e.g. one chunk of one band).
    sky : numpy.ndarray
        ``(H, W)`` bool, the sky pixels (:func:`sky_pixels`).
    sigma, maxiters : float, int
        Clipping of ``astropy.stats.sigma_clipped_stats``.
    min_pixels : int
        Fewest finite sky pixels accepted.

    Returns
    -------
    SkyNoise

    Raises
    ------
    ValueError
        With fewer than ``min_pixels`` finite sky pixels.
    """
    data = np.asarray(data, dtype=np.float64)
    sky = np.asarray(sky, dtype=bool)
    if sky.shape != data.shape:
        raise ValueError(f"sky and data must have the same shape, got {sky.shape} and {data.shape}")
    values = data[sky & np.isfinite(data)]
    if values.size < min_pixels:
        raise ValueError(f"only {values.size} sky pixels (need {min_pixels}) to estimate the noise")
    _, median, std = sigma_clipped_stats(values, sigma=sigma, maxiters=maxiters)
    return SkyNoise(float(median), float(std), int(values.size))


def rms_from_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel rms from an inverse-variance weight map.

    Parameters
    ----------
    weight : numpy.ndarray
        ``(H, W)`` inverse variance (HST drizzle ``WHT``).

    Returns
    -------
    rms : numpy.ndarray
        ``1 / sqrt(weight)`` (float64), NaN where unobserved.
    unobserved : numpy.ndarray
        bool, where ``weight <= 0`` or non-finite.
    """
    weight = np.asarray(weight, dtype=np.float64)
    unobserved = ~(np.isfinite(weight) & (weight > 0))
    rms = np.full(weight.shape, np.nan)
    np.divide(1.0, np.sqrt(weight, where=~unobserved, out=np.ones_like(weight)), out=rms, where=~unobserved)
    return rms, unobserved


def rms_from_map(rms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A checked rms map.

    Parameters
    ----------
    rms : numpy.ndarray
        ``(H, W)`` per-pixel 1-sigma background noise.

    Returns
    -------
    rms : numpy.ndarray
        float64, NaN where unobserved.
    unobserved : numpy.ndarray
        bool, where ``rms <= 0`` or non-finite.
    """
    rms = np.asarray(rms, dtype=np.float64)
    unobserved = ~(np.isfinite(rms) & (rms > 0))
    return np.where(unobserved, np.nan, rms), unobserved


def effective_gain(header: Mapping[str, Any]) -> float | None:
    """Effective gain of an image in electrons/s: its exposure time, else None.

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The image's header.

    Returns
    -------
    float or None
        ``EXPTIME`` (s) when ``BUNIT`` is electrons per second in any spelling
        :func:`morpheus_core.catalog.image_unit` reads
        and ``EXPTIME > 0``; None otherwise (then the error is background-only).
    """
    exptime = header.get("EXPTIME")
    if (
        image_unit([header.get("BUNIT")]) == _ELECTRON_RATE
        and isinstance(exptime, (int, float))
        and not isinstance(exptime, bool)
        and np.isfinite(exptime)
        and exptime > 0
    ):
        return float(exptime)
    return None


def total_error(
    data: np.ndarray, rms: np.ndarray | float, *, effective_gain: float | np.ndarray | None = None
) -> np.ndarray:
    """Per-pixel 1-sigma error for the photometry.

    Parameters
    ----------
    data : numpy.ndarray
        ``(H, W)`` background-subtracted image.
    rms : numpy.ndarray or float
        Background rms, per pixel or one value.
    effective_gain : float or numpy.ndarray, optional
        Electrons per data unit (exposure time for electrons/s). None: background-only.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float64: ``rms`` where ``effective_gain`` is None, else photutils'
        ``calc_total_error`` (``sqrt(rms**2 + max(data, 0) / effective_gain)``).
    """
    data = np.asarray(data, dtype=np.float64)
    rms = np.broadcast_to(np.asarray(rms, dtype=np.float64), data.shape)
    if effective_gain is None:
        return rms.copy()
    return np.asarray(calc_total_error(data, rms, effective_gain), dtype=np.float64)

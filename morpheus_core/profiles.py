"""Sersic and PSF profiles rendered on pixel grids (no noise, no sky).

The pieces the simulator (:mod:`morpheus_core.simulate`) builds its scenes from, also
useful alone in tests and validation: pixel-integrated circular Gaussians (the PSFs
and point sources), elliptical Sersic profiles averaged over sub-pixel points with an
oversampled core, and the stamps they are rendered on. Pixel coordinates are 0-based
with integers at pixel centres, ``x`` is the column; angles are degrees
counter-clockwise from +x.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from astropy.modeling.models import Sersic2D
from scipy.special import erf

__all__ = [
    "add_stamp",
    "check_shape",
    "gaussian_psf",
    "gaussian_stamp",
    "point_source_image",
    "sersic_image",
    "sersic_stamp",
]

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
_CORE_HALF = 3  # the central (2*3+1)^2 pixels of a Sersic stamp are oversampled


def check_shape(shape: Sequence[int]) -> tuple[int, int]:
    """The ``(ny, nx)`` of an image shape, checked.

    Parameters
    ----------
    shape : (int, int)
        Image shape.

    Returns
    -------
    (int, int)

    Raises
    ------
    ValueError
        Unless ``shape`` is two positive integers.
    """
    if len(shape) != 2 or any(int(s) != s or s < 1 for s in shape):
        raise ValueError(f"shape must be two positive integers (ny, nx), got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def gaussian_stamp(size: int, x: float, y: float, fwhm_px: float) -> np.ndarray:
    """Unit-sum circular Gaussian integrated over the pixels of a ``size``^2 grid.

    Parameters
    ----------
    size : int
        Side of the square grid (pixels).
    x, y : float
        Centre in the grid's 0-based pixel coordinates.
    fwhm_px : float
        Full width at half maximum in pixels.

    Returns
    -------
    np.ndarray
        ``(size, size)`` float64, summing to one.
    """
    edges, s = np.arange(size + 1) - 0.5, math.sqrt(2.0) * fwhm_px * _FWHM_TO_SIGMA
    k = np.outer(np.diff(erf((edges - y) / s)), np.diff(erf((edges - x) / s)))
    return k / k.sum()


def gaussian_psf(fwhm_px: float, size: int | None = None) -> np.ndarray:
    """Pixel-integrated circular Gaussian PSF kernel, normalised to unit sum.

    Parameters
    ----------
    fwhm_px : float
        Full width at half maximum in pixels.
    size : int, optional
        Odd kernel side; default ``2 * ceil(3 * fwhm_px) + 1`` (+-3 FWHM).

    Returns
    -------
    np.ndarray
        ``(size, size)`` float64 kernel centred on the middle pixel.
    """
    if not fwhm_px > 0:
        raise ValueError(f"fwhm_px must be > 0, got {fwhm_px}")
    size = 2 * math.ceil(3 * fwhm_px) + 1 if size is None else size
    if int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size}")
    c = (size - 1) / 2.0
    return gaussian_stamp(int(size), c, c, fwhm_px)


def add_stamp(image: np.ndarray, stamp: np.ndarray, iy0: int, ix0: int) -> None:
    """Add ``stamp`` (lower corner at ``(iy0, ix0)``) into ``image`` where they overlap.

    Parameters
    ----------
    image : np.ndarray
        ``(..., ny, nx)``, changed in place; the stamp is added to every leading index.
    stamp : np.ndarray
        ``(sy, sx)``; the parts outside ``image`` are dropped.
    iy0, ix0 : int
        Row and column of ``image`` under the stamp's first pixel (may be negative).
    """
    ny, nx = image.shape[-2:]
    sy, sx = stamp.shape
    y0, x0, y1, x1 = max(iy0, 0), max(ix0, 0), min(iy0 + sy, ny), min(ix0 + sx, nx)
    if y0 < y1 and x0 < x1:
        image[..., y0:y1, x0:x1] += stamp[y0 - iy0 : y1 - iy0, x0 - ix0 : x1 - ix0]


def _pixel_average(model, start: int, count: int, sub: int) -> np.ndarray:
    """Mean of ``model`` over ``sub``^2 points in each pixel of a square block."""
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    g = (np.arange(start, start + count)[:, None] + offs[None, :]).ravel()
    fy, fx = np.meshgrid(g, g, indexing="ij")
    return model(fx, fy).reshape(count, sub, count, sub).mean(axis=(1, 3))


def sersic_stamp(
    x: float,
    y: float,
    *,
    r_eff: float,
    n: float,
    axis_ratio: float,
    pa_deg: float,
    oversample: int,
    truncate: float,
    pad: int,
) -> tuple[np.ndarray, int, int]:
    """Unit-flux Sersic stamp around ``(x, y)``, as :func:`sersic_image` renders it.

    Parameters
    ----------
    x, y : float
        Centre (0-based pixels of the image the stamp is meant for).
    r_eff, n, axis_ratio, pa_deg, oversample, truncate
        As :func:`sersic_image`.
    pad : int
        Extra pixels on each side beyond the truncation radius (room for a PSF).

    Returns
    -------
    (np.ndarray, int, int)
        The square float64 stamp summing to one, and the image row and column of its
        first pixel (for :func:`add_stamp`).

    Raises
    ------
    ValueError
        For a non-positive ``r_eff``, ``n`` or ``truncate``, an axis ratio outside
        (0, 1], or an ``oversample`` that is not a positive integer.
    """
    if not (r_eff > 0 and n > 0 and 0 < axis_ratio <= 1 and truncate > 0):
        raise ValueError(
            f"need r_eff > 0, n > 0, 0 < axis_ratio <= 1 and truncate > 0, got "
            f"r_eff={r_eff}, n={n}, axis_ratio={axis_ratio}, truncate={truncate}"
        )
    if int(oversample) != oversample or oversample < 1:
        raise ValueError(f"oversample must be a positive integer, got {oversample}")
    half = math.ceil(truncate * r_eff) + 1 + pad
    ix0, iy0 = int(round(x)) - half, int(round(y)) - half
    dx, dy, size = x - ix0, y - iy0, 2 * half + 1
    theta = math.radians(pa_deg)
    model = Sersic2D(amplitude=1.0, r_eff=r_eff, n=n, x_0=dx, y_0=dy, ellip=1.0 - axis_ratio, theta=theta)
    # 3x3 sub-samples everywhere (curvature error / 9), oversample^2 in the core.
    img = _pixel_average(model, 0, size, 3)
    c = min(_CORE_HALF, half)
    img[half - c : half + c + 1, half - c : half + c + 1] = _pixel_average(model, half - c, 2 * c + 1, int(oversample))
    yy, xx = np.mgrid[:size, :size].astype(float)
    # Truncate along the ellipse with a one-pixel linear taper (~ area fraction).
    u = (xx - dx) * math.cos(theta) + (yy - dy) * math.sin(theta)
    v = -(xx - dx) * math.sin(theta) + (yy - dy) * math.cos(theta)
    img *= np.clip(truncate * r_eff + 0.5 - np.hypot(u, v / axis_ratio), 0.0, 1.0)
    return img / img.sum(), iy0, ix0


def sersic_image(
    shape: Sequence[int],
    *,
    x: float,
    y: float,
    flux: float,
    r_eff: float,
    n: float,
    axis_ratio: float,
    pa_deg: float,
    oversample: int = 10,
    truncate: float = 8.0,
) -> np.ndarray:
    """Render a flux-normalised elliptical Sersic profile (no PSF, no noise).

    ``astropy.modeling.models.Sersic2D`` averaged over 3x3 points per pixel
    (``oversample``^2 in the central 7x7 pixels, where the cusp is), truncated at
    ``truncate`` effective radii along the ellipse and scaled so the stamp sums to
    ``flux``; flux falling outside ``shape`` is lost.

    Parameters
    ----------
    shape : (int, int)
        Output shape ``(ny, nx)``.
    x, y, flux : float
        Centre (0-based pixels); total flux (e.g. electrons/s).
    r_eff, n : float
        Semi-major-axis half-light radius in pixels; Sersic index.
    axis_ratio, pa_deg : float
        Minor/major axis ratio in (0, 1]; major-axis angle, degrees CCW from +x.
    oversample, truncate : int, float
        Core sub-sampling factor; truncation radius in units of ``r_eff``.

    Returns
    -------
    np.ndarray
        float64 image of ``shape``.
    """
    out = np.zeros(check_shape(shape))
    stamp, iy0, ix0 = sersic_stamp(
        x, y, r_eff=r_eff, n=n, axis_ratio=axis_ratio, pa_deg=pa_deg, oversample=oversample, truncate=truncate, pad=0
    )
    add_stamp(out, flux * stamp, iy0, ix0)
    return out


def point_source_image(shape: Sequence[int], *, x: float, y: float, flux: float, fwhm_px: float) -> np.ndarray:
    """Render a point source: a pixel-integrated Gaussian PSF summing to ``flux``.

    Parameters
    ----------
    shape : (int, int)
        Output shape ``(ny, nx)``.
    x, y, flux, fwhm_px : float
        Centre (0-based pixels), total flux, PSF FWHM in pixels.

    Returns
    -------
    np.ndarray
        float64 image of ``shape``.
    """
    if not fwhm_px > 0:
        raise ValueError(f"fwhm_px must be > 0, got {fwhm_px}")
    out = np.zeros(check_shape(shape))
    half = math.ceil(4 * fwhm_px) + 1
    ix0, iy0 = int(round(x)) - half, int(round(y)) - half
    add_stamp(out, flux * gaussian_stamp(2 * half + 1, x - ix0, y - iy0, fwhm_px), iy0, ix0)
    return out

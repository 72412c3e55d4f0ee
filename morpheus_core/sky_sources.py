"""One source of the synthetic skies: its drawn parameters and its rendered stamps.

The per-class model of :func:`morpheus_core.simulate.render_sky`'s sources: structural
ranges (Sersic index, axis ratio, size at H = 23), colours as ``mag_band - mag_H`` per
class (spheroids red, disks bluer, irregular discs bluer still, their star-forming
clumps bluer than H), and for other band sets colours interpolated in log wavelength
between the HST bands' ranges (:func:`colour_range`). :func:`render_source` draws one
source's parameters and renders its PSF-convolved stamp in every band with
:mod:`morpheus_core.profiles`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.signal import fftconvolve

from morpheus_core.passbands import HST_BANDS, Passband
from morpheus_core.profiles import gaussian_stamp, sersic_stamp

__all__ = ["colour_range", "render_source"]

# Structural ranges per class: Sersic n, axis ratio q, r_eff (px) at H = 23.
_SHAPES = {
    "spheroid": {"n": (3.5, 5.0), "q": (0.55, 1.0), "r0": 5.0},
    "disk": {"n": (0.8, 1.5), "q": (0.25, 1.0), "r0": 8.0},
    "irregular": {"n": (0.5, 1.2), "q": (0.35, 1.0), "r0": 8.0},
}
# Colours as mag_band - mag_H, drawn uniformly: spheroids red, disks bluer,
# irregular discs bluer still, their star-forming clumps bluer than H.
_COLOURS = {
    "spheroid": {"J": (0.3, 0.6), "V": (1.6, 2.4), "Z": (0.8, 1.3)},
    "disk": {"J": (0.1, 0.3), "V": (0.6, 1.1), "Z": (0.3, 0.6)},
    "irregular": {"J": (0.05, 0.2), "V": (0.3, 0.7), "Z": (0.1, 0.35)},
    "clump": {"J": (-0.2, 0.0), "V": (-0.6, -0.1), "Z": (-0.4, 0.0)},
    "point_source": {"J": (0.0, 0.5), "V": (0.3, 2.0), "Z": (0.1, 1.0)},
}

#: Log-wavelength slope (mag per unit ln lambda, as mag_band - mag_ref) of each
#: colour range beyond the reddest HST band (H): old populations stay red, star
#: formation flattens out.
_RED_SLOPE = {
    "spheroid": (-0.8, -0.4),
    "disk": (-0.5, -0.2),
    "irregular": (-0.3, 0.0),
    "clump": (0.0, 0.4),
    "point_source": (-0.6, 0.6),
}
_HST_WAVELENGTH = {b.name: b.wavelength_um for b in HST_BANDS}


def colour_range(cls: str, wavelength_um: float, reference_um: float = _HST_WAVELENGTH["H"]) -> tuple[float, float]:
    """Range of ``mag_band - mag_reference`` for a source class at a wavelength.

    Piecewise linear in ``ln(lambda)`` through the HST bands' ranges (H: 0, J, Z, V:
    the ranges of the default scene), extended beyond H with a per-class slope; the
    result is then taken relative to ``reference_um`` (the band whose magnitude is
    drawn), so the reference band has colour 0.

    Parameters
    ----------
    cls : str
        ``spheroid``, ``disk``, ``irregular``, ``point_source`` or ``clump``.
    wavelength_um, reference_um : float
        The band's and the reference band's wavelengths (micrometres).

    Returns
    -------
    (float, float)
        Lower and upper colour (AB magnitudes).
    """

    def absolute(wl: float) -> np.ndarray:
        anchors = sorted(
            [("H", _HST_WAVELENGTH["H"], (0.0, 0.0))]
            + [(b, _HST_WAVELENGTH[b], _COLOURS[cls][b]) for b in ("J", "V", "Z")],
            key=lambda a: a[1],
        )
        x = np.log([a[1] for a in anchors])
        lo = np.array([a[2][0] for a in anchors])
        hi = np.array([a[2][1] for a in anchors])
        t = math.log(wl)
        if t > x[-1]:
            dl = t - x[-1]
            return np.array([lo[-1] + _RED_SLOPE[cls][0] * dl, hi[-1] + _RED_SLOPE[cls][1] * dl])
        return np.array([np.interp(t, x, lo), np.interp(t, x, hi)])

    c = absolute(wavelength_um) - absolute(reference_um).mean()
    return float(min(c)), float(max(c))


def _flux(mag: float, band: str, zero_points: Mapping[str, float]) -> float:
    return 10 ** (-0.4 * (mag - zero_points[band]))


def _colours(rng: np.random.Generator, cls: str, bands: Sequence[Passband], reference: Passband) -> dict[str, float]:
    """Draw ``mag_band - mag_reference`` for every band but the reference, in band order.

    The default HST scene (reference H) draws from the table of its bands directly.
    """
    if reference.name == "H" and all(b.name in _COLOURS[cls] or b.name == "H" for b in bands):
        return {b.name: rng.uniform(*_COLOURS[cls][b.name]) for b in bands if b.name != "H"}
    return {
        b.name: rng.uniform(*colour_range(cls, b.wavelength_um, reference.wavelength_um))
        for b in bands
        if b is not reference
    }


def render_source(
    rng: np.random.Generator,
    cls: str,
    x: float,
    y: float,
    mag_h: float,
    fwhm_px: dict[str, float],
    kernels: list[np.ndarray],
    bands: Sequence[Passband] = HST_BANDS,
    reference: Passband = HST_BANDS[0],
):
    """Draw one source's parameters and render its PSF-convolved per-band stamps.

    Parameters
    ----------
    rng : numpy.random.Generator
        The scene's source stream (the draws are taken from it in a fixed order).
    cls : str
        ``spheroid``, ``disk``, ``irregular`` or ``point_source``.
    x, y : float
        Centre (0-based pixels of the whole image).
    mag_h : float
        Total AB magnitude in the ``reference`` band (H for the default scene).
    fwhm_px : dict of str to float
        PSF FWHM of each band, pixels.
    kernels : list of numpy.ndarray
        PSF kernel of each band, in ``bands`` order.
    bands : sequence of Passband
        The bands rendered, in image order.
    reference : Passband
        The band ``mag_h`` refers to.

    Returns
    -------
    stamps : list of numpy.ndarray
        One stamp per band, to add at ``(iy0, ix0)``.
    iy0, ix0 : int
        Position of the stamps' first pixel in the whole image.
    params : tuple of float
        ``(n, r_eff, q, pa)``: Sersic index (NaN for point sources), semi-major
        half-light radius before the PSF (px), axis ratio, angle (deg).
    band_fluxes : dict of str to float
        Total flux of the source in each band (e-/s).
    """
    names = [b.name for b in bands]
    zps = {b.name: b.zero_point_ab for b in bands}
    colours = _colours(rng, cls, bands, reference)
    comp = {b: _flux(mag_h + colours.get(b, 0.0), b, zps) for b in names}
    if cls == "point_source":
        half = math.ceil(4 * max(fwhm_px.values())) + 1
        ix0, iy0 = int(round(x)) - half, int(round(y)) - half
        stamps = [comp[b] * gaussian_stamp(2 * half + 1, x - ix0, y - iy0, fwhm_px[b]) for b in names]
        return stamps, iy0, ix0, (np.nan, 0.0, 1.0, 0.0), comp
    shp = _SHAPES[cls]
    r_eff = shp["r0"] * 10 ** (-0.1 * (mag_h - 23.0)) * rng.lognormal(0.0, 0.3)
    r_eff = float(np.clip(r_eff, 2.0, 20.0))
    params = (rng.uniform(*shp["n"]), r_eff, rng.uniform(*shp["q"]), rng.uniform(0.0, 180.0))
    pad = max(k.shape[0] for k in kernels) // 2  # room for the PSF: no flux lost at the edge
    unit, iy0, ix0 = sersic_stamp(
        x, y, r_eff=r_eff, n=params[0], axis_ratio=params[2], pa_deg=params[3], oversample=10, truncate=8.0, pad=pad
    )
    raws, totals = [comp[b] * unit for b in names], comp
    if cls == "irregular":  # low-n disc plus 2-5 compact, blue, off-centre clumps
        frac, n_cl = rng.uniform(0.15, 0.35), int(rng.integers(2, 6))
        rad, ang = rng.uniform(0.3, 1.5, n_cl) * r_eff, rng.uniform(0.0, 2 * math.pi, n_cl)
        w = rng.dirichlet(np.ones(n_cl))
        clumps = sum(
            wj * gaussian_stamp(unit.shape[0], x - ix0 + rj * math.cos(aj), y - iy0 + rj * math.sin(aj), fj)
            for wj, rj, aj, fj in zip(w, rad, ang, rng.uniform(1.0, 2.5, n_cl))
        )
        cl_col = _colours(rng, "clump", bands, reference)
        f_cl = {b: frac * _flux(mag_h + cl_col.get(b, 0.0), b, zps) for b in names}
        raws = [(1 - frac) * comp[b] * unit + f_cl[b] * clumps for b in names]
        totals = {b: (1 - frac) * comp[b] + f_cl[b] for b in names}
    stamps = [fftconvolve(r, kern, mode="same") for r, kern in zip(raws, kernels)]
    return stamps, iy0, ix0, params, totals

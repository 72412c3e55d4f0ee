"""Sky coordinates in the browser: the mosaic's WCS as a model the map's JavaScript evaluates.

The map (``static/viewer.js``) shows the cursor's RA/Dec. It evaluates the
gnomonic (TAN) projection of the mosaic's celestial WCS (Calabretta & Greisen 2002,
eqs. 2 and 54: ``CRPIX``, ``CRVAL``, the ``CD`` matrix and ``LONPOLE``), plus a
correction interpolated bilinearly on a grid of nodes where astropy's answer was
computed: zero for a pure TAN WCS (the HLF mosaics), the SIP or other distortion, or
the difference from another projection, otherwise. :func:`sky_model` refines the
grid until the interpolated answer is within :data:`TOLERANCE_ARCSEC` of astropy at
the cell centres (the farthest points from the nodes) and at the image's corners;
:func:`model_pixel_to_sky` is the same arithmetic in NumPy, used for that check.

Pixel coordinates here are astropy's: 0-based, pixel centres at integers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.wcs import WCS

__all__ = ["TOLERANCE_ARCSEC", "model_pixel_to_sky", "sky_model"]

#: Largest allowed difference between the model and astropy (the map promises 0.01").
TOLERANCE_ARCSEC = 1e-3
_MAX_NODES = 1025


def _tan_sky(model: dict[str, Any], px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA, Dec (deg) of the TAN part of the model at 0-based pixel coordinates."""
    u = np.asarray(px, dtype=np.float64) + 1.0 - model["crpix"][0]
    v = np.asarray(py, dtype=np.float64) + 1.0 - model["crpix"][1]
    (c11, c12), (c21, c22) = model["cd"]
    x, y = c11 * u + c12 * v, c21 * u + c22 * v
    phi = np.arctan2(x, -y)
    theta = np.arctan2(180.0 / np.pi, np.hypot(x, y))
    alpha_p, delta_p = np.radians(model["crval"])
    dphi = phi - np.radians(model["lonpole"])
    sin_delta = np.sin(theta) * np.sin(delta_p) + np.cos(theta) * np.cos(delta_p) * np.cos(dphi)
    alpha = alpha_p + np.arctan2(
        -np.cos(theta) * np.sin(dphi), np.sin(theta) * np.cos(delta_p) - np.cos(theta) * np.sin(delta_p) * np.cos(dphi)
    )
    return np.degrees(alpha) % 360.0, np.degrees(np.arcsin(np.clip(sin_delta, -1.0, 1.0)))


def model_pixel_to_sky(model: dict[str, Any], px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA, Dec (deg) of 0-based pixel coordinates by the model (what the map shows).

    Parameters
    ----------
    model : dict
        :func:`sky_model`'s output.
    px, py : numpy.ndarray
        Pixel coordinates (0-based, astropy's convention).

    Returns
    -------
    tuple of numpy.ndarray
        Right ascension in [0, 360) and declination, degrees.
    """
    px, py = np.asarray(px, dtype=np.float64), np.asarray(py, dtype=np.float64)
    ra, dec = _tan_sky(model, px, py)
    g = model["grid"]
    fx = np.clip((px - g["x0"]) / g["step"], 0.0, g["nx"] - 1.0)
    fy = np.clip((py - g["y0"]) / g["step"], 0.0, g["ny"] - 1.0)
    i = np.minimum(fx.astype(int), g["nx"] - 2) if g["nx"] > 1 else np.zeros_like(fx, dtype=int)
    j = np.minimum(fy.astype(int), g["ny"] - 2) if g["ny"] > 1 else np.zeros_like(fy, dtype=int)
    tx, ty = fx - i, fy - j
    out = []
    for name in ("dra", "ddec"):
        d = np.asarray(g[name], dtype=np.float64).reshape(g["ny"], g["nx"])
        i1, j1 = np.minimum(i + 1, g["nx"] - 1), np.minimum(j + 1, g["ny"] - 1)
        out.append((d[j, i] * (1 - tx) + d[j, i1] * tx) * (1 - ty) + (d[j1, i] * (1 - tx) + d[j1, i1] * tx) * ty)
    return (ra + out[0]) % 360.0, dec + out[1]


def _separation_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Angular separation (Vincenty), arcsec."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (ra1, dec1, ra2, dec2))
    dra = ra2 - ra1
    num = np.hypot(np.cos(dec2) * np.sin(dra), np.cos(dec1) * np.sin(dec2) - np.sin(dec1) * np.cos(dec2) * np.cos(dra))
    den = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(dra)
    return np.degrees(np.arctan2(num, den)) * 3600.0


def sky_model(wcs: WCS, shape: tuple[int, int], *, tolerance_arcsec: float = TOLERANCE_ARCSEC) -> dict[str, Any]:
    """The model of a mosaic's WCS that the map's JavaScript evaluates.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        The mosaic's WCS (its celestial part is used).
    shape : tuple of int
        ``(H, W)`` of the mosaic.
    tolerance_arcsec : float
        Largest allowed difference from astropy at the check points.

    Returns
    -------
    dict
        ``crpix``, ``crval``, ``cd``, ``lonpole``, ``grid`` (``x0``, ``y0``, ``step``,
        ``nx``, ``ny``, ``dra``, ``ddec``: corrections at the nodes, degrees),
        ``pixel_scale`` (arcsec per pixel) and ``max_error_arcsec`` (measured).

    Raises
    ------
    ValueError
        No celestial WCS, or no grid of at most 1025 x 1025 nodes reaches the tolerance.
    """
    from astropy.wcs.utils import proj_plane_pixel_scales

    cel = wcs.celestial
    if not cel.has_celestial or cel.naxis != 2:
        raise ValueError("the mosaic's WCS has no celestial (RA/Dec) part")
    lon, lat = (0, 1) if cel.wcs.lng == 0 else (1, 0)
    base = {
        "crpix": [float(v) for v in cel.wcs.crpix],
        "crval": [float(cel.wcs.crval[lon]), float(cel.wcs.crval[lat])],
        "cd": np.asarray(cel.pixel_scale_matrix, dtype=np.float64)[[lon, lat]].tolist(),
        "lonpole": float(cel.wcs.lonpole) if np.isfinite(cel.wcs.lonpole) else 180.0,
        "pixel_scale": float(np.mean(proj_plane_pixel_scales(cel))) * 3600.0,
    }
    ny, nx = shape

    def world(px, py):
        values = cel.pixel_to_world_values(px, py)
        return np.asarray(values[lon], dtype=np.float64), np.asarray(values[lat], dtype=np.float64)

    # Check points: 4000 seeded random points (between the nodes of any grid tried), the
    # corners of the image (pixel edges, -0.5 .. n - 0.5) and its centre.
    rng = np.random.default_rng(0)
    cx = np.concatenate([rng.uniform(-0.5, nx - 0.5, 4000), [-0.5, nx - 0.5, -0.5, nx - 0.5, (nx - 1) / 2]])
    cy = np.concatenate([rng.uniform(-0.5, ny - 0.5, 4000), [-0.5, -0.5, ny - 0.5, ny - 0.5, (ny - 1) / 2]])
    truth = world(cx, cy)
    nodes = 2
    while True:
        step = max(nx, ny) / (nodes - 1)
        gx = -0.5 + step * np.arange(int(np.ceil(nx / step)) + 1)
        gy = -0.5 + step * np.arange(int(np.ceil(ny / step)) + 1)
        xx, yy = np.meshgrid(gx, gy)
        ra_t, dec_t = _tan_sky(base, xx, yy)
        ra_w, dec_w = world(xx, yy)
        dra = (ra_w - ra_t + 180.0) % 360.0 - 180.0
        model = {
            **base,
            "grid": {
                "x0": -0.5,
                "y0": -0.5,
                "step": step,
                "nx": len(gx),
                "ny": len(gy),
                "dra": dra.ravel().tolist(),
                "ddec": (dec_w - dec_t).ravel().tolist(),
            },
        }
        error = float(np.max(_separation_arcsec(*model_pixel_to_sky(model, cx, cy), *truth)))
        if error <= tolerance_arcsec:
            model["max_error_arcsec"] = error
            return model
        if nodes >= _MAX_NODES:
            raise ValueError(
                f"the map's sky model differs from astropy by {error:.3g} arcsec with "
                f"{nodes} x {nodes} nodes (tolerance {tolerance_arcsec} arcsec)"
            )
        nodes = 2 * nodes - 1

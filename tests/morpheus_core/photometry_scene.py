"""A synthetic two-band scene for the photometry tests: a deblended map with objects on
chunk faces and corners, on the image edge, next to a NaN footprint edge, and with an
exact-zero censored core (shared by ``test_photometry.py`` and ``test_flags.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from morpheus_core.deblend import deblend
from morpheus_core.noise import total_error
from morpheus_core.simulate import render_sky

SHAPE = (150, 170)
CHUNK = 40
#: Effective gain (exposure time, s) of the H band: its error includes the sources' Poisson noise.
GAIN_H = 2000.0


@dataclass(frozen=True)
class Scene:
    bands: dict[str, np.ndarray]
    errors: dict[str, np.ndarray]
    mask: np.ndarray
    labels: np.ndarray
    parents: np.ndarray
    ids: np.ndarray
    sub_id: np.ndarray
    sigma: dict[str, float]


def make_scene(seed: int = 3) -> Scene:
    sky = render_sky(
        SHAPE, seed=seed, n_galaxies=16, n_stars=3, margin_px=3, min_separation_px=8, mag_range=(20.0, 25.0)
    )
    h, j = (sky.images[k].astype(np.float64) for k in (0, 1))
    sigma = {"H": float(sky.noise_sigma[0]), "J": float(sky.noise_sigma[1])}
    # The brightest source: an exact-zero censored core (3x3) in H, as the HLF has.
    bright = int(np.argmin(sky.truth["mag_H"]))
    cx, cy = (int(round(float(sky.truth[c][bright]))) for c in ("x", "y"))
    h[cy - 1 : cy + 2, cx - 1 : cx + 2] = 0.0
    # A tilted NaN footprint edge through the second brightest source, in both bands.
    second = int(np.argsort(sky.truth["mag_H"])[1])
    sx, sy = (float(sky.truth[c][second]) for c in ("x", "y"))
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    unobserved = (xx - sx) + 0.5 * (yy - sy) > 4.0
    unobserved &= np.hypot(xx - sx, yy - sy) < 30
    h[unobserved] = np.nan
    j[unobserved] = np.nan
    # Detection: 2.5 sigma on the H image smoothed by a unit Gaussian (noise sigma / (2 sqrt(pi))).
    smooth = ndi.gaussian_filter(np.nan_to_num(h), 1.0)
    detected = ndi.binary_opening(smooth > 2.5 * sigma["H"] / (2 * np.sqrt(np.pi))) & ~unobserved
    parents, _ = ndi.label(detected)
    blend = deblend(parents, np.nan_to_num(h), min_distance=5)
    errors = {"H": total_error(np.nan_to_num(h), sigma["H"], effective_gain=GAIN_H), "J": total_error(j, sigma["J"])}
    return Scene({"H": h, "J": j}, errors, unobserved, blend.segmap, parents, blend.id, blend.sub_id, sigma)

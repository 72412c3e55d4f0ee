"""Synthetic HST-like four-band skies with truth tables (our ``photutils.datasets``).

:func:`render_sky` draws a seeded scene (positions, classes, magnitudes, shapes,
colours), renders each source (:func:`morpheus_core.sky_sources.render_source`, with
:mod:`morpheus_core.profiles`), adds noise and masks, and returns the images with
their WCS and truth table.

Other instruments: ``render_sky(bands=...)`` renders any set of
:class:`~morpheus_core.passbands.Passband` (a card's band with a PSF FWHM, zero point
and depth), e.g. :data:`~morpheus_core.passbands.NIRCAM_BANDS` (a JWST NIRCam-like
set at 0.03"/px); colours are then interpolated in log wavelength between the HST
bands' colour ranges (:func:`~morpheus_core.sky_sources.colour_range`).

Follows the simulated tests of the Morpheus paper (Sections 7.2-7.3): Sersic
galaxies and point sources on the HLF GOODS-S grid (0.06"/px, electrons/s, HLF AB
zero points), PSF-convolved, with Gaussian sky noise. Simplifications: Gaussian
PSFs of the band's FWHM instead of Tiny Tim, and white instead of PSF-correlated
noise. Pixel coordinates are 0-based with integers at pixel centres, ``x`` is the
column; angles are degrees counter-clockwise from +x; images are ``(band, y, x)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from morpheus_core import BANDS, CLASSES
from morpheus_core.passbands import HST_BANDS, Passband, reference_band
from morpheus_core.profiles import add_stamp, check_shape, gaussian_psf
from morpheus_core.sky_sources import render_source

__all__ = [
    "DEFAULT_NOISE_SIGMA",
    "MORPH_CLASSES",
    "SNR_APERTURE_RADIUS_ARCSEC",
    "SyntheticSky",
    "make_wcs",
    "render_sky",
]

#: Radius of the aperture in which ``snr_H`` is measured (0.5" diameter, paper 7.2).
SNR_APERTURE_RADIUS_ARCSEC = 0.25
MORPH_CLASSES: tuple[str, ...] = CLASSES[:-1]  # the morphological classes, without background

_GALAXY_CLASS_P = {"spheroid": 0.30, "disk": 0.45, "irregular": 0.25}
_COUNT_SLOPE = 0.3  # d log10 N / dm of the galaxy number counts


def _depth_sigma(pixel_scale: float, bands: Sequence[Passband] = HST_BANDS) -> np.ndarray:
    """Per-pixel white-noise sigma (e-/s) giving each band's depth in the SNR aperture."""
    npix = math.pi * (SNR_APERTURE_RADIUS_ARCSEC / pixel_scale) ** 2
    return np.array([10 ** (-0.4 * (b.depth_5sigma_ab - b.zero_point_ab)) / (5 * math.sqrt(npix)) for b in bands])


#: Default per-band sky sigma per 0.06" pixel, electrons/s.
DEFAULT_NOISE_SIGMA: dict[str, float] = dict(zip(BANDS, _depth_sigma(0.06).tolist()))


@dataclass(frozen=True, eq=False)
class SyntheticSky:
    """A rendered four-band scene and its truth.

    Attributes
    ----------
    images : np.ndarray
        ``(4, H, W)`` float32 in ``BANDS`` order, electrons/s.
    wcs : astropy.wcs.WCS
        Celestial TAN WCS of the grid.
    truth : astropy.table.Table
        One row per source; columns carry units and descriptions. ``snr_H`` is the
        aperture SNR of the noiseless source alone in a 0.25"-radius circle.
    noise_sigma : np.ndarray
        ``(4,)`` per-pixel Gaussian sky sigma per band, electrons/s.
    coverage : np.ndarray
        ``(H, W)`` bool, True where every band is finite and not censored. It is
        taken from the masks applied, not from pixel values (a noiseless sky is 0).
    """

    images: np.ndarray
    wcs: WCS
    truth: Table
    noise_sigma: np.ndarray
    coverage: np.ndarray


def make_wcs(shape: Sequence[int], *, ra: float = 53.12, dec: float = -27.81, pixel_scale: float = 0.06) -> WCS:
    """Build a north-up, east-left TAN WCS centred on ``(ra, dec)``.

    Parameters
    ----------
    shape : (int, int)
        Image shape ``(ny, nx)``; the reference pixel is the image centre.
    ra, dec, pixel_scale : float
        Tangent point in degrees (default: GOODS-S); arcseconds per pixel.

    Returns
    -------
    astropy.wcs.WCS
    """
    ny, nx = check_shape(shape)
    if not pixel_scale > 0:
        raise ValueError(f"pixel_scale must be > 0 arcsec, got {pixel_scale}")
    w = WCS(naxis=2)
    w.wcs.ctype, w.wcs.cunit, w.wcs.radesys = ["RA---TAN", "DEC--TAN"], ["deg", "deg"], "ICRS"
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]  # FITS is 1-based
    w.wcs.cdelt = [-pixel_scale / 3600.0, pixel_scale / 3600.0]
    w.pixel_shape = (nx, ny)
    return w


def _noise_array(noise_sigma, pixel_scale: float, bands: Sequence[Passband] = HST_BANDS) -> np.ndarray:
    names = [b.name for b in bands]
    if noise_sigma is None:
        sig = _depth_sigma(pixel_scale, bands)
    elif isinstance(noise_sigma, Mapping):
        sig = np.array([noise_sigma[b] for b in names], dtype=float)
    else:
        sig = np.broadcast_to(np.asarray(noise_sigma, dtype=float), (len(names),)).copy()
    if not np.all(np.isfinite(sig) & (sig >= 0)):
        raise ValueError(f"noise_sigma must be finite and >= 0 per band, got {sig.tolist()}")
    return sig


def _place(rng: np.random.Generator, count: int, ny: int, nx: int, margin: float, min_sep: float) -> np.ndarray:
    """Uniform positions ``(count, 2)`` as (x, y), >= margin from edges, >= min_sep apart."""
    pos = np.empty((count, 2))
    lo, hi = np.array([margin, margin]), np.array([nx - 1 - margin, ny - 1 - margin])
    for i in range(count):
        for _ in range(2000):
            p = rng.uniform(lo, hi)
            if i == 0 or np.min(np.hypot(*(pos[:i] - p).T)) >= min_sep:
                pos[i] = p
                break
        else:
            raise ValueError(
                f"could not place {count} sources {min_sep} px apart in shape "
                f"{(ny, nx)}; lower n_galaxies/n_stars or min_separation_px"
            )
    return pos


def _apply_masks(
    rng: np.random.Generator,
    image: np.ndarray,
    pos: np.ndarray,
    flux_h: np.ndarray,
    nan_regions: int,
    censored_regions: int,
) -> np.ndarray:
    """Zero-censor clusters (one band, on bright sources) then NaN blocks; return coverage."""
    _, ny, nx = image.shape
    coverage = np.ones((ny, nx), dtype=bool)
    yy, xx = np.ogrid[:ny, :nx]
    for _ in range(censored_regions):
        if len(pos):
            cx, cy = np.round(pos[rng.choice(len(pos), p=flux_h / flux_h.sum())])
        else:
            cx, cy = rng.integers(nx), rng.integers(ny)
        band, rad = int(rng.integers(image.shape[0])), rng.uniform(1.0, 2.5)
        hit = (xx - cx) ** 2 + (yy - cy) ** 2 <= rad**2
        image[band][hit] = 0.0
        coverage &= ~hit
    for _ in range(nan_regions):
        h = int(rng.integers(max(2, ny // 20), max(3, ny // 5) + 1))
        w = int(rng.integers(max(2, nx // 20), max(3, nx // 5) + 1))
        y0, x0 = int(rng.integers(0, ny - h + 1)), int(rng.integers(0, nx - w + 1))
        image[:, y0 : y0 + h, x0 : x0 + w] = np.nan
        coverage[y0 : y0 + h, x0 : x0 + w] = False
    return coverage


def render_sky(
    shape: Sequence[int] = (512, 512),
    *,
    seed: int = 0,
    n_galaxies: int | None = None,
    n_stars: int | None = None,
    ra: float = 53.12,
    dec: float = -27.81,
    pixel_scale: float = 0.06,
    mag_range: tuple[float, float] = (20.0, 26.5),
    noise_sigma: float | Sequence[float] | Mapping[str, float] | None = None,
    nan_regions: int = 0,
    censored_regions: int = 0,
    min_separation_px: float = 15.0,
    margin_px: float = 20.0,
    bands: Sequence[Passband] | None = None,
    reference: str | None = None,
) -> SyntheticSky:
    """Render a seeded four-band HST-like scene (or another band set) with its truth table.

    Spheroids (n 3.5-5, red), disks (n 0.8-1.5, bluer), irregulars (low-n disc plus
    2-5 blue clumps with 15-35% of the H flux) and point sources (the band's PSF).
    Galaxy H magnitudes follow counts rising as 10^(0.3 m), point sources are
    uniform in ``mag_range``; r_eff shrinks with magnitude. Each source is rendered
    on a local stamp and convolved with the band's ``gaussian_psf``; then come white
    noise, zero-censored clusters (one band, on bright sources, as in the HLF) and
    NaN blocks (all bands). Sources, noise and masks use independent streams
    spawned from ``seed``: changing ``noise_sigma`` leaves the sources unchanged.

    Parameters
    ----------
    shape : (int, int)
        Image shape ``(ny, nx)``.
    seed : int
        Seed; the output is a pure function of the arguments.
    n_galaxies, n_stars : int, optional
        Defaults: one galaxy per 2500 px^2 (~400 per arcmin^2 at 0.06") and one
        point source per 25000 px^2 (compact sources over-represented on purpose).
    ra, dec, pixel_scale : float
        WCS tangent point (deg) and scale (arcsec/px).
    mag_range : (float, float)
        Range of total H magnitudes (AB).
    noise_sigma : float, sequence of 4 or mapping band -> float, optional
        Per-pixel sky sigma, electrons/s; default from the bands' ``depth_5sigma_ab``; 0: noiseless.
    bands : sequence of Passband, optional
        The bands to render, in image order (default
        :data:`~morpheus_core.passbands.HST_BANDS`: H, J, V, Z); e.g.
        :data:`~morpheus_core.passbands.NIRCAM_BANDS` with ``pixel_scale=0.03``.
    reference : str, optional
        The band whose magnitudes ``mag_range`` draws and whose SNR ``snr_<band>``
        reports: default H, or for other sets the band nearest H in wavelength.
    nan_regions, censored_regions : int
        Numbers of NaN blocks and of zero-censored clusters.
    min_separation_px, margin_px : float
        Minimum distance between source centres and from a centre to the image edge.

    Returns
    -------
    SyntheticSky

    Raises
    ------
    ValueError
        For invalid arguments or when the sources cannot be placed.
    """
    ny, nx = check_shape(shape)
    if not mag_range[0] < mag_range[1]:
        raise ValueError(f"mag_range must be (bright, faint) with bright < faint, got {mag_range}")
    n_gal = round(ny * nx / 2500) if n_galaxies is None else int(n_galaxies)
    n_pts = round(ny * nx / 25000) if n_stars is None else int(n_stars)
    if min(n_gal, n_pts, nan_regions, censored_regions) < 0:
        raise ValueError(
            "n_galaxies, n_stars, nan_regions and censored_regions must be >= 0, got "
            f"{n_gal}, {n_pts}, {nan_regions}, {censored_regions}"
        )
    if min(nx, ny) - 1 - 2 * margin_px < 0:
        raise ValueError(f"shape {(ny, nx)} is too small for margin_px={margin_px}")
    bands = tuple(HST_BANDS if bands is None else bands)
    ref = reference_band(bands, reference)
    band_names = [b.name for b in bands]
    sigma = _noise_array(noise_sigma, pixel_scale, bands)
    streams = np.random.SeedSequence(seed).spawn(3)
    rng, rng_noise, rng_mask = (np.random.default_rng(s) for s in streams)
    fwhm_px = {b.name: b.psf_fwhm_arcsec / pixel_scale for b in bands}
    kernels = [gaussian_psf(fwhm_px[b]) for b in band_names]
    r_ap = SNR_APERTURE_RADIUS_ARCSEC / pixel_scale

    pos = _place(rng, n_gal + n_pts, ny, nx, margin_px, min_separation_px)
    names = list(_GALAXY_CLASS_P)
    classes = [names[i] for i in rng.choice(len(names), n_gal, p=list(_GALAXY_CLASS_P.values()))]
    classes += ["point_source"] * n_pts
    k = _COUNT_SLOPE * math.log(10.0)
    ea, eb = np.exp(k * np.asarray(mag_range, dtype=float))
    mags = np.concatenate([np.log(ea + rng.uniform(size=n_gal) * (eb - ea)) / k, rng.uniform(*mag_range, size=n_pts)])

    image = np.zeros((len(bands), ny, nx))
    k_ref = band_names.index(ref.name)
    rows, flux_h = [], []
    for i, (cls, (x, y), mag_h) in enumerate(zip(classes, pos, mags)):
        stamps, iy0, ix0, params, totals = render_source(rng, cls, x, y, mag_h, fwhm_px, kernels, bands, ref)
        for j, st in enumerate(stamps):
            add_stamp(image[j], st, iy0, ix0)
        gy, gx = np.ogrid[: stamps[0].shape[0], : stamps[0].shape[1]]
        in_ap = np.hypot(gx - (x - ix0), gy - (y - iy0)) <= r_ap
        noise_ap = sigma[k_ref] * math.sqrt(in_ap.sum())
        snr = stamps[k_ref][in_ap].sum() / noise_ap if noise_ap > 0 else np.inf
        rows.append(
            (i + 1, x, y, cls, *params, *(b.zero_point_ab - 2.5 * math.log10(totals[b.name]) for b in bands), snr)
        )
        flux_h.append(totals[ref.name])

    image += rng_noise.standard_normal(image.shape) * sigma[:, None, None]
    coverage = _apply_masks(rng_mask, image, pos, np.asarray(flux_h), nan_regions, censored_regions)
    wcs = make_wcs((ny, nx), ra=ra, dec=dec, pixel_scale=pixel_scale)
    return SyntheticSky(
        images=image.astype(np.float32),
        wcs=wcs,
        truth=_truth_table(rows, wcs, coverage, seed, pixel_scale, bands, ref.name),
        noise_sigma=sigma,
        coverage=coverage,
    )


def _columns(bands: Sequence[str], reference: str) -> tuple:
    """Truth-table columns: name, unit, description."""
    return (
        ("id", None, "source id, 1-based"),
        ("x", "pix", "centre, 0-based column"),
        ("y", "pix", "centre, 0-based row"),
        ("morph_class", None, "one of spheroid, disk, irregular, point_source"),
        ("sersic_n", None, "Sersic index (NaN for point sources)"),
        ("r_eff_px", "pix", "semi-major half-light radius before PSF (0 for point sources)"),
        ("axis_ratio", None, "minor/major axis ratio"),
        ("pa_deg", "deg", "major-axis angle counter-clockwise from +x"),
        *((f"mag_{b}", "mag(AB)", f"total AB magnitude in {b}") for b in bands),
        (
            f"snr_{reference}",
            None,
            f"noiseless {reference} flux of the source alone in a "
            f'{SNR_APERTURE_RADIUS_ARCSEC}" radius aperture over the aperture noise '
            "sigma (inf if noiseless)",
        ),
    )


def _truth_table(
    rows: list,
    wcs: WCS,
    coverage: np.ndarray,
    seed: int,
    pixel_scale: float,
    bands: Sequence[Passband] = HST_BANDS,
    reference: str = "H",
) -> Table:
    columns = _columns([b.name for b in bands], reference)
    names = [c[0] for c in columns]
    dtype = ["i8", "f8", "f8", "U12"] + ["f8"] * (len(names) - 4)
    t = Table(rows=rows, names=names, dtype=dtype) if rows else Table(names=names, dtype=dtype)
    for name, unit, desc in columns:
        t[name].unit, t[name].description = unit, desc
    ra, dec = wcs.pixel_to_world_values(np.asarray(t["x"]), np.asarray(t["y"]))
    t.add_column(np.asarray(ra, dtype=float), name="ra", index=3)
    t.add_column(np.asarray(dec, dtype=float), name="dec", index=4)
    for name, desc in (("ra", "ICRS right ascension"), ("dec", "ICRS declination")):
        t[name].unit, t[name].description = "deg", desc
    ix, iy = (np.round(np.asarray(t[c])).astype(int) for c in ("x", "y"))
    t["in_coverage"] = coverage[iy, ix]
    t["in_coverage"].description = "coverage is True at the centre pixel"
    t.meta.update(
        {
            "seed": seed,
            "pixel_scale_arcsec": pixel_scale,
            "bands": [b.name for b in bands],
            "zero_points_ab": {b.name: b.zero_point_ab for b in bands},
            "psf_fwhm_arcsec": {b.name: b.psf_fwhm_arcsec for b in bands},
        }
    )
    return t

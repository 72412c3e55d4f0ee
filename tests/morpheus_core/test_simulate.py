"""Tests of the synthetic-sky simulator (``morpheus_core.simulate``)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from astropy.wcs.utils import proj_plane_pixel_scales
from scipy.signal import fftconvolve
from scipy.special import gammainc, gammaincinv

from morpheus_core import BANDS
from morpheus_core.passbands import PSF_FWHM_ARCSEC, ZERO_POINTS_AB
from morpheus_core.profiles import gaussian_psf, point_source_image, sersic_image
from morpheus_core.simulate import MORPH_CLASSES, make_wcs, render_sky

SHAPE = (256, 256)


def _flux(mag: float, band: str) -> float:
    return 10 ** (-0.4 * (mag - ZERO_POINTS_AB[band]))


@pytest.fixture(scope="module")
def sky():
    return render_sky((384, 384), seed=7)


@pytest.fixture(scope="module")
def noiseless():
    # Same seed as `sky`: the sources come from a stream independent of the noise.
    return render_sky((384, 384), seed=7, noise_sigma=0.0)


def test_same_seed_identical_different_seed_differs():
    a = render_sky(SHAPE, seed=3, nan_regions=1, censored_regions=2)
    b = render_sky(SHAPE, seed=3, nan_regions=1, censored_regions=2)
    c = render_sky(SHAPE, seed=4, nan_regions=1, censored_regions=2)
    np.testing.assert_array_equal(a.images, b.images)  # equal_nan is the default
    np.testing.assert_array_equal(a.coverage, b.coverage)
    assert all((a.truth[k] == b.truth[k]).all() for k in ("x", "y", "mag_H", "morph_class"))
    assert a.images.shape == c.images.shape
    assert not np.array_equal(a.images, c.images, equal_nan=True)
    assert not np.array_equal(a.truth["x"], c.truth["x"])


def test_noise_does_not_change_sources(sky, noiseless):
    for name in ("x", "y", "mag_H", "mag_V", "r_eff_px", "sersic_n"):
        np.testing.assert_array_equal(sky.truth[name], noiseless.truth[name])


def test_images_shape_dtype_and_band_order():
    s = render_sky((128, 96), seed=1, n_galaxies=0, n_stars=1, noise_sigma=0.0)
    assert s.images.shape == (4, 128, 96) and s.images.dtype == np.float32
    assert s.coverage.shape == (128, 96) and s.coverage.dtype == bool and s.coverage.all()
    assert s.noise_sigma.shape == (4,)
    assert BANDS == ("H", "J", "V", "Z")
    row = s.truth[0]
    # Each plane holds its band's flux (colours differ per band) ...
    for j, b in enumerate(BANDS):
        assert s.images[j].sum() == pytest.approx(_flux(row[f"mag_{b}"], b), rel=1e-4)
    # ... and its band's PSF: the peak fraction rises as the FWHM shrinks.
    peak_frac = s.images.max(axis=(1, 2)) / s.images.sum(axis=(1, 2))
    order = np.argsort([PSF_FWHM_ARCSEC[b] for b in BANDS])
    assert np.all(np.diff(peak_frac[order]) < 0)


@pytest.mark.parametrize(
    "n, r_eff, q, pa, centroid_tol",
    [
        (1.0, 10.0, 1.0, 0.0, 0.01),
        (1.2, 8.0, 0.4, 30.0, 0.01),
        # Cuspy profiles put much of their flux inside the central pixel, so pixel
        # integration pulls the image centroid towards that pixel's centre (~0.06 px).
        (4.0, 6.0, 1.0, 0.0, 0.1),
        (4.5, 1.0, 0.7, 120.0, 0.1),
    ],
)
def test_sersic_total_flux_and_centre(n, r_eff, q, pa, centroid_tol):
    img = sersic_image((200, 200), x=100.3, y=99.6, flux=12.5, r_eff=r_eff, n=n, axis_ratio=q, pa_deg=pa)
    # Renormalised after truncation, so only float rounding separates it from 12.5.
    assert img.sum() == pytest.approx(12.5, rel=1e-2)
    yy, xx = np.mgrid[:200, :200]
    assert (xx * img).sum() / img.sum() == pytest.approx(100.3, abs=centroid_tol)
    assert (yy * img).sum() / img.sum() == pytest.approx(99.6, abs=centroid_tol)


@pytest.mark.parametrize("n, r_eff", [(1.0, 10.0), (4.0, 8.0)])
def test_sersic_half_light_radius(n, r_eff):
    img = sersic_image(
        (201, 201), x=100.0, y=100.0, flux=1.0, r_eff=r_eff, n=n, axis_ratio=1.0, pa_deg=0.0, truncate=8.0
    )
    yy, xx = np.mgrid[:201, :201]
    inside = img[np.hypot(xx - 100, yy - 100) <= r_eff].sum()
    b = gammaincinv(2 * n, 0.5)
    expected = 0.5 / gammainc(2 * n, b * 8.0 ** (1 / n))  # truncated at 8 r_eff
    # 2%: a pixel-centre aperture of radius ~10 px misestimates the area by ~1%.
    assert inside == pytest.approx(expected, abs=0.02)


def test_point_source_and_psf_flux_and_width():
    img = point_source_image((64, 64), x=31.7, y=30.2, flux=3.0, fwhm_px=3.0)
    assert img.sum() == pytest.approx(3.0, rel=1e-6)
    k = gaussian_psf(3.0)
    assert k.shape == (19, 19) and k.sum() == pytest.approx(1.0)
    assert np.unravel_index(k.argmax(), k.shape) == (9, 9)
    # Half maximum falls between the 1st and 2nd pixels from the centre for FWHM 3.
    row = k[9] / k[9, 9]
    assert row[10] > 0.5 > row[11]
    gal = sersic_image((128, 128), x=64, y=64, flux=2.0, r_eff=5, n=1, axis_ratio=0.5, pa_deg=10)
    assert fftconvolve(gal, k, mode="same").sum() == pytest.approx(2.0, rel=1e-6)


def test_render_noiseless_flux_conserved():
    s = render_sky((256, 256), seed=5, n_galaxies=0, n_stars=6, noise_sigma=0.0)
    for j, b in enumerate(BANDS):
        expected = sum(_flux(m, b) for m in s.truth[f"mag_{b}"])
        # Point-source stamps span +-4 FWHM, so only rounding is lost.
        assert s.images[j].sum() == pytest.approx(expected, rel=1e-4)


def test_truth_columns_and_classes(sky):
    t = sky.truth
    for name in (
        "id",
        "x",
        "y",
        "ra",
        "dec",
        "morph_class",
        "sersic_n",
        "r_eff_px",
        "axis_ratio",
        "pa_deg",
        "mag_H",
        "mag_J",
        "mag_V",
        "mag_Z",
        "snr_H",
    ):
        assert name in t.colnames
    assert len(t) == round(384 * 384 / 2500) + round(384 * 384 / 25000)
    assert set(t["morph_class"]) <= set(MORPH_CLASSES)
    assert set(t["morph_class"]) == set(MORPH_CLASSES)  # every class is represented
    assert np.all((t["x"] >= 20) & (t["x"] <= 383 - 20) & (t["y"] >= 20) & (t["y"] <= 383 - 20))
    d = np.hypot(t["x"][:, None] - t["x"][None], t["y"][:, None] - t["y"][None])
    assert d[~np.eye(len(t), dtype=bool)].min() >= 15.0
    assert np.all((t["mag_H"] >= 20.0) & (t["mag_H"] <= 26.5))
    gal = t["morph_class"] != "point_source"
    assert np.all((t["sersic_n"][gal] > 0) & (t["r_eff_px"][gal] > 0))
    assert np.all(t["snr_H"] > 0)


def test_truth_positions_are_bright(noiseless):
    h, t = noiseless.images[0], noiseless.truth
    yy, xx = np.mgrid[: h.shape[0], : h.shape[1]]
    for r in t:
        ix, iy = int(round(r["x"])), int(round(r["y"]))
        # Well above its surroundings: a ring outside 2 r_eff + 3 px, taking the ring's
        # 10th percentile so that a bright neighbour's wing on one side does not count
        # (over seeds 0-11 the worst source has a ratio of 4.7).
        rad = np.hypot(xx - r["x"], yy - r["y"])
        ring = (rad >= 2 * r["r_eff_px"] + 3) & (rad < 2 * r["r_eff_px"] + 5)
        assert h[iy, ix] > 3 * np.percentile(h[ring], 10), r["id"]
        # Smooth sources with no comparably bright neighbour peak at their centre
        # (irregulars may peak on a clump instead).
        d = np.hypot(t["x"] - r["x"], t["y"] - r["y"])
        crowded = np.any((d > 0) & (d < 30) & (t["mag_H"] < r["mag_H"] + 1))
        if r["morph_class"] == "irregular" or crowded:
            continue
        win = h[iy - 3 : iy + 4, ix - 3 : ix + 4]
        jy, jx = np.unravel_index(win.argmax(), win.shape)
        assert np.hypot(ix - 3 + jx - r["x"], iy - 3 + jy - r["y"]) <= 1.0, r["id"]


def test_wcs_maps_truth_and_scale(sky):
    t, w = sky.truth, sky.wcs
    coords = w.pixel_to_world(np.asarray(t["x"]), np.asarray(t["y"]))  # 0-based
    np.testing.assert_allclose(coords.ra.deg, t["ra"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(coords.dec.deg, t["dec"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(proj_plane_pixel_scales(w) * 3600, [0.06, 0.06], rtol=1e-9)
    centre = w.pixel_to_world((384 - 1) / 2, (384 - 1) / 2)
    assert centre.ra.deg == pytest.approx(53.12) and centre.dec.deg == pytest.approx(-27.81)
    # North up, east left: RA decreases with x.
    assert w.pixel_to_world(10, 0).ra.deg < w.pixel_to_world(0, 0).ra.deg
    assert make_wcs((10, 20)).pixel_shape == (20, 10)


def test_noise_sigma_in_source_free_region(sky, noiseless):
    empty = np.all(np.abs(noiseless.images) < 1e-3 * sky.noise_sigma[:, None, None], axis=0)
    assert empty.sum() > 10_000
    for j in range(4):
        # ~10^4+ pixels give a ~1% error on the std, well inside the 5% tolerance.
        assert sky.images[j][empty].std() == pytest.approx(sky.noise_sigma[j], rel=0.05)
    custom = render_sky(SHAPE, seed=2, n_galaxies=0, n_stars=0, noise_sigma={"H": 0.1, "J": 0.2, "V": 0.3, "Z": 0.4})
    np.testing.assert_allclose(custom.images.std(axis=(1, 2)), [0.1, 0.2, 0.3, 0.4], rtol=0.05)


def test_nan_and_censored_regions_match_coverage():
    s = render_sky((384, 384), seed=11, nan_regions=3, censored_regions=5)
    bad = np.isnan(s.images).any(axis=0) | (s.images == 0.0).any(axis=0)
    np.testing.assert_array_equal(bad, ~s.coverage)
    assert np.isnan(s.images).any() and (s.images == 0.0).any()
    # NaN blocks are in every band at once; censored pixels in exactly one band.
    nan = np.isnan(s.images)
    np.testing.assert_array_equal(nan.any(axis=0), nan.all(axis=0))
    zero = s.images == 0.0
    assert np.all(zero.sum(axis=0)[zero.any(axis=0)] == 1)
    clean = render_sky((384, 384), seed=11)
    assert clean.coverage.all() and np.isfinite(clean.images).all()


def test_spheroids_redder_than_disks(sky):
    t = sky.truth
    colour = t["mag_V"] - t["mag_H"]
    sph = colour[t["morph_class"] == "spheroid"].mean()
    disk = colour[t["morph_class"] == "disk"].mean()
    irr = colour[t["morph_class"] == "irregular"].mean()
    assert sph > disk + 0.5 and disk > irr


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (10,)},
        {"mag_range": (26.0, 20.0)},
        {"noise_sigma": -1.0},
        {"n_galaxies": -1},
        {"n_galaxies": 500, "shape": (64, 64)},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        render_sky(**kwargs)


def test_render_512_is_fast():
    start = time.perf_counter()
    render_sky((512, 512), seed=0, nan_regions=2, censored_regions=3)
    assert time.perf_counter() - start < 10.0  # budget: the demo sky in seconds on a 2-core CPU

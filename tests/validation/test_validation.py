"""The section 7 validation scripts (``validation/``): calibration, and reduced runs.

The reduced runs use small grids and stride 4 so that the scripts cannot rot; the
full grids run from the command line (results in docs/validation.md).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import Table

from morpheus_core import BANDS, CLASSES
from morpheus_core.passbands import ZERO_POINTS_AB
from validation import false_negatives, false_positives, sersic
from validation.common import (
    APERTURE_RADIUS_PX,
    NoiseModel,
    aperture_mask,
    aperture_sigma,
    aperture_snr,
    finish,
    flux_weighted_classes,
    psf_image,
    scale_to_snr,
)


@pytest.mark.parametrize("correlation", ["white", "psf", 2.0])
def test_noise_is_calibrated_on_the_aperture(correlation):
    noise = NoiseModel(correlation)
    field = noise.field((480, 480), np.random.default_rng(5))
    size = 2 * math.ceil(APERTURE_RADIUS_PX) + 1
    ap = aperture_mask((size, size), size // 2, size // 2)
    for i, band in enumerate(BANDS):
        # Aperture sums on a 12 px grid: 1,521 nearly independent samples, so the
        # sample std is within ~2% (1 sigma) of the truth; accept 8%.
        sums = [
            field[i, y : y + size, x : x + size][ap].sum()
            for y in range(0, 480 - size, 12)
            for x in range(0, 480 - size, 12)
        ]
        assert np.std(sums) == pytest.approx(aperture_sigma(band), rel=0.08)
        assert field[i].std() == pytest.approx(noise.pixel_sigma(band), rel=0.05)
    # 5 sigma depth: H 27.0 AB -> 10**(-0.4 * (27 - 25.94)) / 5 e-/s.
    assert aperture_sigma("H") == pytest.approx(10 ** (-0.4 * 1.06) / 5, rel=1e-12)


def test_psf_correlated_noise_has_smaller_pixel_sigma():
    assert NoiseModel("psf").pixel_sigma("H") < 0.5 * NoiseModel("white").pixel_sigma("H")
    with pytest.raises(ValueError, match="correlation"):
        NoiseModel("pink")


def test_snr_scaling_is_exact():
    unit = psf_image((64, 64), 32, 32, "J")
    src = scale_to_snr(unit, 7.5, "J", 32, 32)
    assert aperture_snr(src, "J", 32, 32) == pytest.approx(7.5, rel=1e-12)
    # A single pixel: all its flux is in the aperture, F = SNR * sigma_ap.
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    stamp = false_positives.fluctuation_stamp(4.0, "pixel", rng_a)
    diff = stamp - NoiseModel().field((64, 64), rng_b)
    assert np.count_nonzero(np.abs(diff) > 1e-12) == 1
    assert diff[0, 32, 32] == pytest.approx(4.0 * aperture_sigma("H"), rel=1e-9)
    assert np.abs(diff[1:]).max() < 1e-12  # V, z and J untouched


def test_point_source_has_the_snr_in_every_band():
    stamp = false_negatives.source_stamp(12.0, np.random.default_rng(2))
    model = stamp - NoiseModel().field((64, 64), np.random.default_rng(2))
    for i, band in enumerate(BANDS):
        assert aperture_snr(model[i], band, 32, 32) == pytest.approx(12.0, rel=1e-9)


def test_sersic_stamp_flat_fnu_and_snr():
    images, model_h, mag = sersic.sersic_stamp(2.0, 5.0, np.random.default_rng(3), size=64)
    model = images - NoiseModel().field((64, 64), np.random.default_rng(3))
    np.testing.assert_allclose(model[0], model_h, rtol=0, atol=1e-12)
    assert aperture_snr(model_h, "H", 32, 32) == pytest.approx(sersic.SNR, rel=1e-9)
    # Same AB magnitude in every band: fluxes scale as 10**(0.4 * ZP_band). The stamp
    # loses ~0.6% of the flux outside its edge, the same fraction in every band to 1e-3
    # (only the PSF wings differ).
    for i, band in enumerate(BANDS):
        expected = 10 ** (-0.4 * (mag - ZERO_POINTS_AB[band]))
        assert model[i].sum() == pytest.approx(expected, rel=0.01)
        ratio = model[i].sum() / model[0].sum()
        assert ratio == pytest.approx(10 ** (0.4 * (ZERO_POINTS_AB[band] - ZERO_POINTS_AB["H"])), rel=1e-3)


def test_flux_weighted_classes_eq16():
    cube = np.zeros((5, 2, 2))
    cube[1] = [[1.0, 0.0], [0.5, 0.0]]  # disk
    cube[3] = [[0.0, 1.0], [0.5, 0.0]]  # point source
    cube[4] = [[0.0, 0.0], [0.0, 1.0]]  # background
    flux = np.array([[3.0, 1.0], [2.0, -5.0]])
    mask = np.array([[True, True], [True, False]])
    # weights 3, 1, 2: disk (3 + 1) / 6, point source (1 + 1) / 6.
    np.testing.assert_allclose(flux_weighted_classes(cube, flux, mask), [0, 4 / 6, 0, 2 / 6, 0], rtol=0, atol=1e-15)


def test_false_positives_reduced(released_classifier, tmp_path):
    table, examples = false_positives.run(released_classifier, snrs=(1.0, 10.0), realisations=1, stride=4)
    assert len(table) == 4 and set(table["shape"]) == {"pixel", "psf"}
    # The paper: no H-only fluctuation up to SNR 10 gets background = 0.
    assert (table["detected"] == 0).all() and (table["n_bkg_0"] == 0).all()
    control = false_positives.texture_control(released_classifier, textures=(0.0, "psf"), realisations=1, stride=4)
    white, psf = control
    assert white["frac_bkg_lt_1"] == 0.0  # white noise alone is background
    assert psf["frac_bkg_lt_1"] > 0.05  # PSF-correlated noise alone is partly called source
    paths = finish(table, false_positives.figure(table, examples, control), "fp", tmp_path, started=0.0)
    assert paths["figure"].stat().st_size > 10_000
    assert len(Table.read(paths["table"])) == 4


def test_false_negatives_reduced(released_classifier, tmp_path):
    table = false_negatives.run(released_classifier, snrs=(2.0, 25.0), realisations=1, stride=4)
    faint, bright = table
    assert faint["detected"] == 0 and bright["detected"] == 1
    counts = [bright[false_negatives._column(t)] for t in false_negatives.THRESHOLDS]
    assert counts == sorted(counts) and counts[0] > 10  # cumulative in the threshold
    finish(table, false_negatives.figure(table), "fn", tmp_path, started=0.0)


def test_sersic_reduced(released_classifier, tmp_path):
    table = sersic.run(released_classifier, indices=(1.0, 6.0), radii=(3.0,), realisations=1, stride=4, size=64)
    morph = np.array([[row[c] for c in CLASSES[:-1]] for row in table])
    np.testing.assert_allclose(morph.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    low_n, high_n = table
    assert high_n["point_source"] > low_n["point_source"] + 0.2  # compact profiles -> point source
    assert high_n["dominant"] == "point_source" and low_n["dominant"] != "point_source"
    finish(table, sersic.figure(table), "sersic", tmp_path, started=0.0)


@pytest.mark.parametrize(
    "script, name", [(false_positives, "false_positives"), (false_negatives, "false_negatives"), (sersic, "sersic")]
)
def test_script_command_line(script, name, tmp_path, capsys):
    # Each command line end to end (its own network) in reduced mode, at stride 8.
    assert script.main(["--reduced", "--out", str(tmp_path), "--stride", "8", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "SNR" in out or "snr" in out
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    table = Table.read(tmp_path / f"{name}.ecsv")
    assert len(table) >= 2 and table.meta["stride"] == 8

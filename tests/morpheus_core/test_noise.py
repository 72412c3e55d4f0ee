"""Per-pixel errors (morpheus_core.noise): the sky estimate against a simulated sky's
true sigma, weight and rms maps, the total error."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from morpheus_core.noise import effective_gain, rms_from_map, rms_from_weight, sky_noise, sky_pixels, total_error
from morpheus_core.simulate import render_sky


def test_sky_noise_recovers_the_simulated_sigma():
    sigma, level = 0.004, 0.02
    sky = render_sky((256, 256), seed=11, n_galaxies=20, n_stars=4, noise_sigma=sigma)
    data = sky.images[0].astype(np.float64) + level
    truth = sky.truth
    yy, xx = np.mgrid[:256, :256]
    near = np.zeros((256, 256), bool)
    for x, y in zip(truth["x"], truth["y"]):
        near |= np.hypot(xx - x, yy - y) < 25
    background = np.where(near, 0.5, 1.0)  # the classification's certain sky: far from every source
    labels = np.zeros((256, 256), np.int32)
    labels[:10, :10] = 1  # a segment on the sky is not sky
    mask = np.zeros((256, 256), bool)
    mask[-5:] = True
    chosen = sky_pixels(background, classified=np.ones((256, 256), bool), labels=labels, mask=mask, data=data)
    assert not chosen[:10, :10].any() and not chosen[-5:].any() and not chosen[near].any()
    noise = sky_noise(data, chosen)
    # n ~ 3e4 sky pixels: the sample std is within 0.4% (1 sigma) of the truth, and
    # 3-sigma clipping of a Gaussian shrinks it by 1.3% (std of a Gaussian cut at 3
    # sigma: 0.9866): 3%. The level: the median's standard error is 1.25 sigma / sqrt(n)
    # = 3e-5, but the galaxies' faint wings beyond 25 px add 2.9e-4 on average to these
    # pixels (measured on the noiseless scene): 0.1 sigma = 4e-4.
    assert noise.n_pixels > 25000
    assert noise.rms == pytest.approx(sigma, rel=0.03)
    assert noise.background == pytest.approx(level, abs=0.1 * sigma)
    with pytest.raises(ValueError, match="sky pixels"):
        sky_noise(data, np.zeros((256, 256), bool))


def test_errors_from_weight_and_rms_maps():
    weight = np.array([[4.0, 0.0], [-1.0, np.nan]])
    rms, bad = rms_from_weight(weight)
    assert rms[0, 0] == 0.5 and np.isnan(rms[0, 1]) and bad.tolist() == [[False, True], [True, True]]
    rms2, bad2 = rms_from_map(np.array([[0.5, 0.0], [-1.0, np.inf]]))
    assert rms2[0, 0] == 0.5 and bad2.tolist() == [[False, True], [True, True]]
    data = np.array([[10.0, -3.0], [0.0, 1.0]])
    np.testing.assert_array_equal(total_error(data, 0.1), np.full((2, 2), 0.1))  # background-only
    np.testing.assert_allclose(
        total_error(data, 0.1, effective_gain=1000.0), np.sqrt(0.01 + np.maximum(data, 0) / 1000.0), rtol=1e-14
    )
    assert effective_gain(fits.Header({"BUNIT": "ELECTRONS/S", "EXPTIME": 5000.0})) == 5000.0
    assert effective_gain(fits.Header({"BUNIT": "COUNTS/S", "EXPTIME": 5000.0})) is None
    assert effective_gain(fits.Header({"BUNIT": "ELECTRONS/S"})) is None

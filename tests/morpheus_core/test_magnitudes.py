"""AB zero points and magnitudes (morpheus_core.magnitudes) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits

from morpheus_core.magnitudes import ab_magnitudes, ab_zeropoint, photflam_zeropoint


def test_zero_points_from_headers():
    # WFC3/IR F160W: -2.5 log10(1.9275e-20) = 49.287514, 5 log10(15369.176) = 20.933253,
    # 49.287514 - 21.10 - 20.933253 + 18.692 = 25.946261 (the commonly quoted 25.946).
    header = fits.Header({"PHOTFLAM": 1.9275e-20, "PHOTPLAM": 15369.176, "ABMAG": 99.0})
    assert ab_zeropoint(header) == pytest.approx(25.946261, abs=2e-6)
    assert photflam_zeropoint(1.9275e-20, 15369.176) == ab_zeropoint(header)
    assert ab_zeropoint(fits.Header({"MAGZP": 26.23})) == 26.23
    assert ab_zeropoint(fits.Header({"ZP": 24.87, "EXPTIME": 1.0})) == 24.87
    assert ab_zeropoint(fits.Header({"EXPTIME": 1.0})) is None
    with pytest.raises(ValueError, match="no PHOTPLAM"):
        ab_zeropoint(fits.Header({"PHOTFLAM": 1.9275e-20}))
    with pytest.raises(ValueError, match="PHOTFLAM must be a positive number"):
        ab_zeropoint(fits.Header({"PHOTFLAM": 0.0, "PHOTPLAM": 15369.176}))
    with pytest.raises(ValueError, match="ABMAG must be a finite"):
        ab_zeropoint(fits.Header({"ABMAG": "unknown"}))


def test_magnitudes_errors_and_upper_limits_by_hand():
    flux = np.array([1.0, 100.0, 0.25, 0.0, -0.5, np.nan])
    err = np.array([0.1, 1.0, 0.1, 0.1, 0.2, 0.1])
    mag, magerr, maglim = ab_magnitudes(flux, err, 25.0, n_sigma=3.0)
    np.testing.assert_allclose(mag[:3], [25.0, 20.0, 25.0 + 2.5 * math.log10(4.0)], rtol=0, atol=1e-12)
    np.testing.assert_allclose(magerr[:3], [0.1085736205, 0.01085736205, 0.4342944819], rtol=1e-9)
    assert np.isnan(mag[3:]).all() and np.isnan(magerr[3:]).all()
    # Limits where flux < 3 sigma: 0.25 < 0.3 (mag given too), 0 and -0.5; none for NaN.
    expected = [
        np.nan,
        np.nan,
        25.0 - 2.5 * math.log10(0.3),
        25.0 - 2.5 * math.log10(0.3),
        25.0 - 2.5 * math.log10(0.6),
        np.nan,
    ]
    np.testing.assert_allclose(maglim, expected, rtol=0, atol=1e-12)

"""Stamps of ``morpheus_core.profiles`` (the profiles themselves: tests/morpheus_core/test_simulate.py)."""

from __future__ import annotations

import numpy as np
import pytest

from morpheus_core.profiles import add_stamp, check_shape, gaussian_stamp


@pytest.mark.parametrize("iy0,ix0", [(-3, -4), (5, 6), (9, 11), (-7, 12), (14, -2)])
def test_add_stamp_equals_pasting_on_a_padded_canvas_and_cropping(iy0, ix0):
    rng = np.random.default_rng(3)
    image = rng.normal(size=(2, 15, 17))
    stamp = rng.normal(size=(7, 9))
    pad = 10
    canvas = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
    canvas[:, pad + iy0 : pad + iy0 + 7, pad + ix0 : pad + ix0 + 9] += stamp
    add_stamp(image, stamp, iy0, ix0)
    np.testing.assert_array_equal(image, canvas[:, pad:-pad, pad:-pad])


def test_gaussian_stamp_sums_to_one_and_is_centred_where_asked():
    k = gaussian_stamp(31, 14.3, 16.8, 3.0)
    yy, xx = np.indices(k.shape)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    # Over 10 sigma of grid on every side: the centroid of the pixel-integrated Gaussian
    # is the requested centre to float rounding (binning and truncation terms < 1e-12).
    assert (xx * k).sum() == pytest.approx(14.3, abs=1e-6)
    assert (yy * k).sum() == pytest.approx(16.8, abs=1e-6)


@pytest.mark.parametrize("shape", [(3,), (0, 4), (2.5, 4), (1, 2, 3)])
def test_check_shape_refuses_what_is_not_two_positive_integers(shape):
    with pytest.raises(ValueError, match="shape must be two positive integers"):
        check_shape(shape)

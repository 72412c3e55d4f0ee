"""Units of the paper's catalog columns (morpheus_core.catalog): areas in pix2, fluxes in the bands' BUNIT."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u

from morpheus_core.catalog import image_unit, object_catalog
from morpheus_core.object_sums import merge_object_sums, object_sums


@pytest.mark.parametrize(
    ("bunits", "unit"),
    [
        (["ELECTRONS/S"] * 4, u.electron / u.s),  # HST drizzled science images
        (["electrons/s", "ELECTRONS/S"], u.electron / u.s),
        (["e-/s"], u.electron / u.s),
        (["COUNTS/S"], u.count / u.s),
        (["nJy", "nJy"], u.nJy),
        (["MJy/sr"], u.MJy / u.sr),
    ],
)
def test_bunit_values_read_as_astropy_units(bunits, unit):
    assert u.Unit(image_unit(bunits)) == unit


@pytest.mark.parametrize("bunits", [["nJy", "uJy"], ["ELECTRONS/S", None], [""], ["not a unit"], []])
def test_no_unit_rather_than_a_wrong_one(bunits):
    assert image_unit(bunits) is None


def test_area_in_square_pixels_and_fluxes_in_the_bands_unit():
    labels = np.zeros((6, 7), dtype=np.int64)
    labels[1:3, 1:4], labels[4:6, 5:7] = 1, 2
    rng = np.random.default_rng(0)
    bands = rng.uniform(0.1, 1.0, (4, 6, 7))
    cube = rng.uniform(0.0, 1.0, (5, 6, 7))
    sums = merge_object_sums([object_sums(labels, flux=bands[0], mean=cube, variance=cube, bands=bands)])
    table = object_catalog(sums, wcs=None, width=7, flux_unit="ELECTRONS/S")
    assert table["area"].unit == u.pix**2 and list(table["area"]) == [6, 4]
    assert table["flux_H"].unit == u.electron / u.s
    np.testing.assert_allclose(table["flux_H"], [bands[0][labels == k].sum() for k in (1, 2)], rtol=1e-12)
    assert object_catalog(sums, wcs=None, width=7)["flux_H"].unit is None

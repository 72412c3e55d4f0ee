"""The simulator's passbands (``morpheus_core.passbands``): the cards' bands, imaged."""

from __future__ import annotations

import pytest

from morpheus_core import BANDS
from morpheus_core.cards import JWST_NIRCAM_BANDS, RELEASED_BANDS, Band
from morpheus_core.passbands import (
    DEPTH_5SIGMA_AB,
    HST_BANDS,
    NIRCAM_BANDS,
    PSF_FWHM_ARCSEC,
    ZERO_POINTS_AB,
    Passband,
    reference_band,
)


def test_name_filter_and_wavelength_come_from_the_cards_band_tables():
    # The very Band objects of the cards: one table of names, filters and wavelengths.
    assert all(p.band is b for p, b in zip(HST_BANDS, RELEASED_BANDS, strict=True))
    assert all(p.band is JWST_NIRCAM_BANDS[p.name] for p in NIRCAM_BANDS)
    assert tuple(p.name for p in HST_BANDS) == BANDS
    assert [(p.filter, p.wavelength_um) for p in HST_BANDS] == [(b.filter, b.wavelength_um) for b in RELEASED_BANDS]
    assert [p.name for p in NIRCAM_BANDS] == ["F090W", "F115W", "F150W", "F200W", "F277W", "F444W"]


def test_the_band_dictionaries_are_views_of_the_hst_passbands():
    assert PSF_FWHM_ARCSEC == {p.name: p.psf_fwhm_arcsec for p in HST_BANDS}
    assert ZERO_POINTS_AB == {p.name: p.zero_point_ab for p in HST_BANDS}
    assert DEPTH_5SIGMA_AB == {p.name: p.depth_5sigma_ab for p in HST_BANDS}
    assert list(ZERO_POINTS_AB) == list(BANDS)


def test_a_simulated_band_needs_a_wavelength():
    with pytest.raises(ValueError, match="band X: a simulated band needs a wavelength"):
        Passband(Band("X", "FX"), 0.1, 25.0, 27.0)


def test_reference_band_is_h_or_the_band_nearest_h_in_log_wavelength():
    assert reference_band(HST_BANDS, None).name == "H"
    assert reference_band(HST_BANDS, "V").name == "V"
    # F150W (1.50 um) is nearest H (1.54 um); F200W (1.99 um) is farther by ratio.
    assert reference_band(NIRCAM_BANDS, None).name == "F150W"
    assert reference_band((NIRCAM_BANDS[0], NIRCAM_BANDS[5]), None).name == "F090W"
    with pytest.raises(ValueError, match="reference band 'H' is not one of"):
        reference_band(NIRCAM_BANDS, "H")
    with pytest.raises(ValueError, match="distinct and at least one"):
        reference_band((HST_BANDS[0], HST_BANDS[0]), None)
    with pytest.raises(ValueError, match="distinct and at least one"):
        reference_band((), None)

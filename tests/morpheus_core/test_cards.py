"""Model cards (morpheus_core.cards): round trip, validation, band lookup, wavelength mapping."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from morpheus_core import BANDS, CLASSES
from morpheus_core.cards import (
    JWST_NIRCAM_BANDS,
    RELEASED_CARD,
    Band,
    ModelCard,
    nearest_bands,
    parse_band,
)


def test_released_card_says_what_the_released_weights_are():
    card = RELEASED_CARD
    assert card.band_names == BANDS == ("H", "J", "V", "Z")
    assert [b.filter for b in card.bands] == ["F160W", "F125W", "F606W", "F850LP"]
    assert card.classes == CLASSES
    assert card.pixel_scale_arcsec == 0.06 and (card.window, card.border) == (40, 5)
    assert card.standardization["method"] == "per_image_standardization"


def test_round_trip_through_json_keeps_everything():
    card = ModelCard(
        bands=(Band("F150W", "F150W", 1.5007), Band("r", "", None)),
        classes=("galaxy", "star", "background"),
        pixel_scale_arcsec=0.03,
        name="test",
        provenance={"metrics": {"accuracy": 0.9, "nan": float("nan")}, "steps": (1, 2)},
    )
    text = card.to_json()
    doc = json.loads(text)
    assert doc["format"] == "morpheus-model-card" and doc["provenance"]["metrics"]["nan"] is None
    back = ModelCard.from_json(text)
    assert back.bands == card.bands and back.classes == card.classes
    assert back.pixel_scale_arcsec == 0.03 and back.name == "test"
    assert back.provenance["steps"] == [1, 2]
    assert ModelCard.from_json(back.to_json()) == back  # a fixed point after one JSON trip
    assert ModelCard.from_json(RELEASED_CARD.to_json()) == RELEASED_CARD


@pytest.mark.parametrize(
    "change, match",
    [
        ({"bands": ()}, "at least one band"),
        ({"bands": (Band("H", "F160W"), Band("X", "f160w"))}, "repeated: F160W"),
        ({"classes": ("disk", "background", "star")}, "last class must be 'background'"),
        ({"classes": ("disk", "disk", "background")}, "distinct"),
        ({"pixel_scale_arcsec": 0.0}, "pixel_scale_arcsec"),
        ({"window": 36}, "multiple of 8"),
        ({"bands": (Band("H", "", -1.0),)}, "wavelength_um"),
    ],
)
def test_invalid_cards_are_refused(change, match):
    kwargs = {"bands": RELEASED_CARD.bands, "classes": CLASSES, "pixel_scale_arcsec": 0.06, **change}
    with pytest.raises(ValueError, match=match):
        ModelCard(**kwargs)


@pytest.mark.parametrize(
    "text, match",
    [
        ("{", "not valid JSON"),
        ('{"format": "other"}', "not a model card"),
        (
            '{"format": "morpheus-model-card", "version": 99, "bands": [], "classes": [], "pixel_scale_arcsec": 1}',
            "newer",
        ),
        ('{"format": "morpheus-model-card", "version": 1, "classes": ["background"]}', "lacks bands"),
    ],
)
def test_malformed_documents_are_refused(text, match):
    with pytest.raises(ValueError, match=match):
        ModelCard.from_json(text)


def test_band_index_matches_names_and_filters_in_any_case():
    card = RELEASED_CARD
    assert [card.band_index(x) for x in ("h", "F160W", "f125w", " z ", "F850LP", "K", "F444W")] == [
        0,
        0,
        1,
        3,
        3,
        None,
        None,
    ]


def test_nearest_bands_hand_built_expectation():
    # Released pivots: H 1.54, J 1.25, V 0.59, Z 0.90 um.
    new = [JWST_NIRCAM_BANDS[n] for n in ("F090W", "F115W", "F150W", "F200W", "F277W", "F444W")]
    assert [BANDS[i] for i in nearest_bands(new)] == ["Z", "J", "H", "H", "H", "H"]
    # 0.7 um: |ln(0.7/0.592)| = 0.168 < |ln(0.7/0.903)| = 0.255 -> V. 1.07 um is nearer Z in
    # wavelength (0.167 um against 0.179 um) but nearer J in log wavelength (0.154 against 0.169) -> J.
    assert [BANDS[i] for i in nearest_bands([Band("a", "", 0.7), Band("b", "", 1.07)])] == ["V", "J"]
    # A band named like a released one maps to it whatever its wavelength.
    assert nearest_bands([Band("J", "", 4.0), Band("x", "F606W", 2.0)]) == [1, 2]


def test_nearest_bands_equals_a_direct_log_wavelength_argmin():
    rng = np.random.default_rng(4)
    waves = np.exp(rng.uniform(math.log(0.3), math.log(5.0), 200))
    ref = np.array([b.wavelength_um for b in RELEASED_CARD.bands])
    expected = np.argmin(np.abs(np.log(waves[:, None]) - np.log(ref[None, :])), axis=1)
    got = nearest_bands([Band(f"b{i}", "", float(w)) for i, w in enumerate(waves)])
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="no wavelength"):
        nearest_bands([Band("mystery")])


def test_parse_band_forms():
    assert parse_band("F150W") == JWST_NIRCAM_BANDS["F150W"]
    assert parse_band("h") == RELEASED_CARD.bands[0]
    assert parse_band("r:SDSS_r:0.62") == Band("r", "SDSS_r", 0.62)
    assert parse_band("i=0.75") == Band("i", "", 0.75)
    assert parse_band("k:F160W") == Band("k", "F160W", 1.5369)  # wavelength from a known filter
    with pytest.raises(ValueError, match="not a number"):
        parse_band("r:SDSS_r:red")


def test_the_default_flux_band_is_the_reddest_band():
    from morpheus_core.cards import JWST_NIRCAM_BANDS

    assert RELEASED_CARD.flux_band() == "H"  # F160W, as the paper
    nircam = ModelCard(
        bands=tuple(JWST_NIRCAM_BANDS[b] for b in ("F150W", "F444W", "F090W")),
        classes=RELEASED_CARD.classes,
        pixel_scale_arcsec=0.03,
    )
    assert nircam.flux_band() == max(nircam.bands, key=lambda b: b.wavelength_um).name == "F444W"
    unknown = ModelCard(bands=(Band("a", "A"), Band("b", "B")), classes=RELEASED_CARD.classes, pixel_scale_arcsec=0.1)
    assert unknown.flux_band() == "a"

"""Tests for pipeline.products.downstream: one set of keywords for the FITS headers and the catalog."""

from __future__ import annotations

from morpheus_core.cards import RELEASED_CARD
from pipeline.inputs.model_cards import header_cards
from pipeline.products.downstream import downstream_keywords
from pipeline.settings import DownstreamSettings

SETTINGS = ("DETECT", "SEGTHR", "MINDIST", "NDMAX", "FLUXBAND")


def test_fits_keywords_and_catalog_metadata_say_the_same(tmp_path):
    markers = tmp_path / "sources.csv"
    settings = DownstreamSettings(detection="mixed", min_distance=4, nd_max=3, flux_band="J", markers=str(markers),
                                  aperture_arcsec=0.5)
    card = header_cards(RELEASED_CARD)
    cards, meta = downstream_keywords(settings, run_id="r9", model="m", precision="float32", card_keywords=card)
    assert [cards[k][0] for k in SETTINGS] == [meta[k] for k in SETTINGS] == ["mixed", 0.3, 4, 3, "J"]
    assert cards["RUNID"][0] == meta["RUNID"] == "r9" and cards["MODEL"][0] == "m"
    assert {k: cards[k] for k in card} == card and {k: meta[k] for k in card} == {k: v for k, (v, _) in card.items()}
    assert meta["MARKERS"] == "sources.csv" and meta["APERTURE"] == 0.5
    provenance = ["SOFTWARE", "SWVERSN", "MODEL", "PRECISN", "RUNID"]
    assert list(meta) == [*provenance, *SETTINGS, "MARKERS", "APERTURE", *card]
    assert {k: meta[k] for k in provenance} == {k: cards[k][0] for k in provenance}
    # no run id, model or markers, no recorded card
    cards, meta = downstream_keywords(DownstreamSettings(flux_band="H"), run_id=None, model="", precision="float32",
                                      card_keywords={})
    assert cards["RUNID"][0] == meta["RUNID"] == "" and cards["MODEL"][0] == "unknown" and meta["MARKERS"] == ""
    assert "MODBANDS" not in cards and "MODBANDS" not in meta

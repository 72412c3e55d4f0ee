"""Tests for pipeline.products.provenance: the FITS keywords that say where a product came from."""

from __future__ import annotations

import importlib.metadata
from datetime import datetime, timezone

import pytest

from pipeline.products.provenance import provenance, software_version

MODEL = "morpheus-astro 0.5.1 model-440"


def test_provenance_keywords():
    before = datetime.now(timezone.utc).replace(microsecond=0)
    cards = provenance(
        "run-7", model=MODEL, precision="mixed_float16", extra={"TILE": 256, "MOSAIC": ("goods-s", "mosaic name")}
    )
    assert list(cards)[:6] == ["SOFTWARE", "SWVERSN", "MODEL", "PRECISN", "RUNID", "DATE"]
    assert cards["SOFTWARE"][0] == "morpheus-survey"
    assert cards["SWVERSN"][0] == importlib.metadata.version("morpheus-survey")
    assert cards["MODEL"][0] == MODEL
    assert cards["PRECISN"][0] == "mixed_float16"
    assert cards["RUNID"][0] == "run-7"
    assert cards["TILE"] == (256, "")
    assert cards["MOSAIC"] == ("goods-s", "mosaic name")
    date = datetime.strptime(cards["DATE"][0], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    assert before <= date <= datetime.now(timezone.utc)
    for key, (_, comment) in cards.items():
        assert len(key) <= 8
        assert len(comment) <= 40


def test_software_version_falls_back_to_morpheus_core(monkeypatch):
    import morpheus_core

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert software_version() == morpheus_core.__version__


@pytest.mark.parametrize("key", ["SOFTWAREX", "lower", "BAD KEY", "", "É"])
def test_provenance_rejects_invalid_keywords(key):
    with pytest.raises(ValueError, match="FITS keyword"):
        provenance("r", model=MODEL, precision="float32", extra={key: 1})


def test_provenance_rejects_unstorable_values():
    with pytest.raises(ValueError, match="LIST"):
        provenance("r", model=MODEL, precision="float32", extra={"LIST": [1, 2]})


def test_input_cards_name_each_band_and_its_file_in_order():
    from pipeline.products.provenance import input_cards

    cards = input_cards([{"band": "H", "path": "/data/goods/h.fits"}, {"band": "F814W", "path": "s3://b/i.fits.fz"}])
    assert cards == {
        "BAND1": ("H", "band 1 of the mosaic"),
        "FILE1": ("h.fits", "input file of band H"),
        "BAND2": ("F814W", "band 2 of the mosaic"),
        "FILE2": ("i.fits.fz", "input file of band F814W"),
    }

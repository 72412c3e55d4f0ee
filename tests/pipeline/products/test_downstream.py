"""Tests for pipeline.products.downstream: one set of keywords for the FITS headers and the catalog."""

from __future__ import annotations

from morpheus_core.cards import RELEASED_CARD
from pipeline.inputs.model_cards import header_cards
from pipeline.products.downstream import downstream_keywords
from pipeline.settings import DownstreamSettings

SETTINGS = ("DETECT", "SEGTHR", "MINDIST", "NDMAX", "FLUXBAND")


def test_fits_keywords_and_catalog_metadata_say_the_same(tmp_path):
    markers = tmp_path / "sources.csv"
    settings = DownstreamSettings(
        detection="mixed", min_distance=4, nd_max=3, flux_band="J", markers=str(markers), aperture_arcsec=0.5
    )
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
    cards, meta = downstream_keywords(
        DownstreamSettings(flux_band="H"), run_id=None, model="", precision="float32", card_keywords={}
    )
    assert cards["RUNID"][0] == meta["RUNID"] == "" and cards["MODEL"][0] == "unknown" and meta["MARKERS"] == ""
    assert "MODBANDS" not in cards and "MODBANDS" not in meta


def test_a_value_added_catalog_is_written_beside_the_internal_one(catalog_run, tmp_path):
    import json
    import shutil

    import pytest
    from astropy.table import Table

    from pipeline.downstream.driver import run_downstream
    from pipeline.errors import InputError
    from pipeline.rundir.layout import RunLayout
    from pipeline.rundir.location import Location
    from pipeline.viewer.catalog import map_catalog
    from tests.pipeline.view_runs import mosaic_wcs

    run_dir = tmp_path / "run"
    shutil.copytree(catalog_run, run_dir)
    layout = RunLayout(Location(run_dir))
    internal = {p.name: p.read_bytes() for p in layout.catalog.path.iterdir()}
    assert set(internal) == {p.name for p in layout.catalog_files()}  # catalog.{parquet,csv,fits,mrt}, objects.reg
    objects = Table.read(layout.catalog_file("parquet").path)
    markers = tmp_path / "markers.csv"
    Table({"id": [f"src-{i}" for i in range(3)], "ra": objects["ra"][:3], "dec": objects["dec"][:3]}).write(markers)
    run_downstream(run_dir, DownstreamSettings(markers=str(markers)), echo=lambda *_: None)
    added = Table.read(layout.catalog_file("parquet", "value_added").path)
    assert list(added["source_id"]) == ["src-0", "src-1", "src-2"]
    # the internal catalog's files are as they were; the value-added ones sit beside them
    assert {p.name: p.read_bytes() for p in layout.catalog.path.iterdir() if p.name in internal} == internal
    named = {p.path for p in [*layout.catalog_files(), *layout.catalog_files("value_added")]}
    assert set(layout.catalog.path.iterdir()) == named
    # the value-added run's record is its own; the internal run's stays as it was
    outputs = json.loads(layout.downstream_record_of("value_added").path.read_text())["outputs"]
    assert {f"catalog/value_added.{s}" for s in ("parquet", "csv", "fits", "mrt", "reg")} <= set(outputs)
    assert not [o for o in outputs if o.startswith("catalog/catalog.") or o == "catalog/objects.reg"]
    # the map keeps showing the internal catalog
    shown = map_catalog(layout, mosaic_wcs(run_dir), ["H", "J", "V", "Z"], "H")
    assert sorted(shown["data"]["name"]) == sorted(str(i) for i in objects["id"])
    # a name of the user's; names that would replace the internal catalog, or leave the folder, are refused
    run_downstream(run_dir, DownstreamSettings(markers=str(markers), catalog_name="3dhst"), echo=lambda *_: None)
    assert layout.catalog_file("fits", "3dhst").path.exists() and layout.regions_file("3dhst").path.exists()
    for bad in ("catalog", "objects", "../elsewhere", "a/b", ""):
        with pytest.raises(InputError, match="--catalog-name"):
            DownstreamSettings(markers=str(markers), catalog_name=bad or " ")
    with pytest.raises(InputError, match="give --markers"):
        DownstreamSettings(catalog_name="mine")

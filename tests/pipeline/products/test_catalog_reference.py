"""docs/downstream.md: the catalog's column tables, generated from a run's column descriptions, are current."""

from __future__ import annotations

from astropy.table import Table

from pipeline.products.catalog_reference import BEGIN, END, REFERENCE, column_rows, main, reference_text


def test_docs_downstream_md_tables_are_current(value_added_run):
    # Run `python -m pipeline.products.catalog_reference RUN_DIR` on a finished run with a
    # value-added catalog after changing a column, its unit or its description.
    document = REFERENCE.read_text()
    assert document.count(BEGIN) == document.count(END) == 1
    assert reference_text(value_added_run, document) == document
    assert main([str(value_added_run), "--check"]) == 0


def test_every_column_is_in_the_tables_once_with_its_unit(value_added_run):
    internal = Table.read(value_added_run / "catalog" / "catalog.parquet")
    rows = column_rows(
        internal, bands=["H", "J", "V", "Z"], classes=["spheroid", "disk", "irregular", "point_source", "background"]
    )
    names = [name for name, _, _ in rows]
    assert len(names) == len(set(names)) and "flux_<band>" in names and "p_<class>" in names
    assert "p_mean_<class>" in names and "sigma_<class>" in names
    expanded = set()
    for name in names:
        expanded |= (
            {name.replace("<band>", b) for b in "HJVZ"}
            if "<band>" in name
            else {name.replace("<class>", c) for c in ("spheroid", "disk", "irregular", "point_source", "background")}
            if "<class>" in name
            else {name}
        )
    assert expanded == set(internal.colnames)
    units = {name: unit for name, unit, _ in rows}
    assert units["flux_<band>"] == "`BUNIT`" and units["area"] == "`pix2`" and units["ra"] == "`deg`"
    assert all(text for _, _, text in rows)


def test_check_fails_when_a_description_changed(value_added_run, tmp_path, monkeypatch, capsys):
    import pipeline.products.catalog_reference as reference

    stale = tmp_path / "downstream.md"
    stale.write_text(REFERENCE.read_text().replace("flux-weighted", "flux weighted", 1))
    monkeypatch.setattr(reference, "REFERENCE", stale)
    assert main([str(value_added_run), "--check"]) == 1
    assert "not current" in capsys.readouterr().err

"""The map's page (``pipeline.viewer.page``) without a browser: the catalog rows, the layers,
labels, class columns, marker colours, filter and legend of the released model's run and
of a model with its own bands and classes, read from the Bokeh document in the page.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
from astropy.table import Table

from morpheus_core import CLASSES
from pipeline.rundir.location import Location
from pipeline.viewer.page import render_page
from pipeline.viewer.pyramid import build_pyramid
from pipeline.viewer.server import MapServer
from tests.pipeline.view_runs import CARD_BANDS, CARD_CLASSES


def _page_config(html: str) -> dict:
    """The configuration the page hands to our script (``MorpheusViewer.configure``)."""
    return json.loads(re.search(r"MorpheusViewer\.configure\((.*?)\);", html).group(1))


def _page_models(html: str) -> dict[str, dict]:
    """The Bokeh document's models embedded in a page, by name (or type when unnamed): their attributes."""
    found: dict[str, dict] = {}

    def walk(node):
        if isinstance(node, dict):
            attributes = node.get("attributes")
            if node.get("type") == "object" and isinstance(attributes, dict):
                found.setdefault(attributes.get("name") or node["name"], attributes)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for text in re.findall(r'<script type="application/json" id="[^"]+">\s*(.*?)\s*</script>', html, re.S):
        walk(json.loads(text))
    return found


_LEGEND_ENTRY = re.compile(
    r'<tr data-layer="([^"]+)" data-class="([^"]+)" data-colour="(#[0-9a-f]{6})" '
    r'data-marker="(#[0-9a-f]{6}|)">'
)


def _check_legend(run_dir: Path, pyramid, models: dict[str, dict]) -> list[tuple[str, str, str, str]]:
    """The legend's entries, checked against what the map draws: one per class layer, in
    order; the colour of each is that of its tiles (every pixel of the finest level is
    ``round(p * colour)``), the marker colour that of the markers' colour mapper (none
    for background, never a dominant class)."""
    from PIL import Image

    entries = _LEGEND_ENTRY.findall(html.unescape(models["legend"]["text"]))  # escaped in the page's JSON
    class_layers = pyramid.layers[2:-2]  # between the composite/colour image and outlines/coverage
    assert [layer for layer, *_ in entries] == class_layers and [c for _, c, *_ in entries] == list(pyramid.classes)
    mapper = models["CategoricalColorMapper"]
    for k, (layer, name, colour, marker) in enumerate(entries):
        c = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=float)
        z = pyramid.grid.max_level
        pixels = np.concatenate(
            [
                np.asarray(Image.open(path).convert("RGBA")).reshape(-1, 4)
                for path in sorted((run_dir / "viewer" / "tiles" / layer / str(z)).rglob("*.png"))
            ]
        )
        v = pixels[pixels[:, 3] > 0, :3].astype(float)
        lit = c > 0  # each pixel is round(p * colour) for some p: its channels' intervals of p meet
        low = ((v[:, lit] - 0.5) / c[lit]).max(axis=1)
        high = ((v[:, lit] + 0.5) / c[lit]).min(axis=1)
        assert np.all(low <= high) and not v[:, ~lit].any(), (layer, colour)
        assert high.max() > 0.5, (layer, high.max())  # bright pixels, so that the colour is pinned down
        assert marker == ("" if k == len(entries) - 1 else mapper["palette"][mapper["factors"].index(name)])
    return entries


def test_pages_list_every_catalog_row_and_the_sky_model(scene_dir):
    pyramid = build_pyramid(scene_dir, echo=lambda *_: None)
    from pipeline.rundir.layout import RunLayout

    page = render_page(pyramid, RunLayout(Location(scene_dir)))
    assert page.objects == len(Table.read(scene_dir / "catalog" / "catalog.parquet"))
    assert set(page.static) >= {"static/js/bokeh.min.js", "static/morpheus/viewer.js"}
    assert all(path.is_file() for path in page.static.values())
    # The released model's map: its layers, labels, class columns, marker colours and filter.
    config, models = _page_config(page.html), _page_models(page.html)
    assert config["classes"] == list(CLASSES)
    assert [c for c, _ in config["columns"] if c.startswith("p_")] == [f"p_{c}" for c in CLASSES]
    assert pyramid.layers == ["bands", "colour", *CLASSES, "segmentation", "coverage"]
    assert [models[f"toggle-{name}"]["label"] for name in pyramid.layers] == [
        "H, J, V colour composite (asinh)",
        "morphological colour (section 6)",
        "spheroid (p)",
        "disk (p)",
        "irregular (p)",
        "point source (p)",
        "background (p)",
        "segmentation outlines (deblended objects)",
        "coverage",
    ]
    assert models["class-filter"]["labels"] == ["spheroid", "disk", "irregular", "point source"]
    assert models["CategoricalColorMapper"] == {
        "factors": list(CLASSES),
        "palette": ["#ff0000", "#0000ff", "#00ff00", "#ffff00", "#ffffff"],
    }
    legend = _check_legend(scene_dir, pyramid, models)  # the paper's colours (section 6), as its tiles
    assert [colour for *_, colour, _ in legend] == ["#ff0000", "#0000ff", "#00ff00", "#ffff00", "#ffffff"]


def test_page_of_a_model_with_its_own_bands_and_classes(card_dir):
    import urllib.request

    from pipeline.rundir.layout import RunLayout

    pyramid = build_pyramid(card_dir, echo=lambda *_: None)
    page = render_page(pyramid, RunLayout(Location(card_dir)))
    catalog = Table.read(card_dir / "catalog" / "catalog.parquet")
    assert page.objects == len(catalog) > 0 and set(catalog["dominant_class"]) <= set(CARD_CLASSES[:-1])
    config, models = _page_config(page.html), _page_models(page.html)
    assert config["classes"] == list(CARD_CLASSES)
    columns = [c for c, _ in config["columns"]]
    assert [c for c in columns if c.startswith("p_")] == ["p_compact", "p_extended", "p_background"]
    assert [c for c in columns if c.startswith("flux_")] == [f"flux_{b}" for b in CARD_BANDS]
    assert pyramid.layers == ["bands", "colour", *CARD_CLASSES, "segmentation", "coverage"]
    assert models["toggle-bands"]["label"] == "F444W, F200W, F090W colour composite (asinh)"
    assert [models[f"toggle-{c}"]["label"] for c in CARD_CLASSES] == ["compact (p)", "extended (p)", "background (p)"]
    assert not any(f"toggle-{c}" in models for c in CLASSES[:-1])
    assert models["class-filter"]["labels"] == ["compact", "extended"] and models["class-filter"]["active"] == [0, 1]
    assert models["CategoricalColorMapper"] == {
        "factors": list(CARD_CLASSES),
        "palette": ["#ff8000", "#00a0ff", "#ffffff"],
    }
    legend = _check_legend(card_dir, pyramid, models)  # the run's palette, as its tiles
    assert [(name, colour, marker) for _, name, colour, marker in legend] == [
        ("compact", "#ff8000", "#ff8000"),
        ("extended", "#00a0ff", "#00a0ff"),
        ("background", "#ffffff", ""),
    ]
    catalog_data = models["catalog"]["data"]
    assert "p_compact" in json.dumps(catalog_data) and "p_spheroid" not in json.dumps(catalog_data)
    server = MapServer(pyramid, page, port=0).start()
    try:
        for layer in ("compact", "bands"):
            with urllib.request.urlopen(server.url + f"tiles/{layer}/0/0/0.png") as response:
                assert response.status == 200
                assert response.read() == (card_dir / "viewer" / "tiles" / layer / "0/0/0.png").read_bytes()
    finally:
        server.stop()

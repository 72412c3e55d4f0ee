"""The map's web page: a BokehJS document over the run's tile pyramid and catalog.

Everything the page loads comes from this machine: BokehJS from the installed
``bokeh`` package (:func:`bokeh_files`), our script and style sheet from
``pipeline/viewer/static``, the tiles from ``viewer/tiles``. The same page is served
by ``python -m pipeline view`` and written by ``--export`` (relative URLs only).

The document fills the browser's window without scrolling it: the controls on the
left, one figure in mosaic pixel coordinates (pixel ``i`` spans ``[i, i+1)``) in the
middle, and a panel on the right with the legend of the class colours
(:func:`legend_html`) and the details of the selected object. The figure has a
:class:`~bokeh.models.TileRenderer` per layer (TMS tiles, see :mod:`pipeline.viewer.pyramid`),
a check box and an opacity slider per layer, the catalog as markers coloured by
dominant class (its rows: :func:`pipeline.viewer.catalog.map_catalog`; a tap shows the
row in the details; at most :data:`MAX_MARKERS` of the brightest in view are drawn), search by id and by RA/Dec, a filter by dominant class,
the cursor's RA/Dec (:mod:`pipeline.viewer.sky_readout`) and a scale bar in arcseconds
(:class:`~bokeh.models.ScaleBar`).

The class layers, their colours, the class columns of a marker's row, the marker
colours and the class filter follow the run's classes (:attr:`Pyramid.classes
<pipeline.viewer.pyramid.Pyramid>`, from the classification store), and the composite's
label its bands.
"""

from __future__ import annotations

import html as html_text
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from morpheus_core import CLASSES
from morpheus_core.colour import class_colours
from pipeline.rundir.layout import RunLayout
from pipeline.viewer.catalog import map_catalog
from pipeline.viewer.pyramid import Pyramid
from pipeline.viewer.sky_readout import sky_model
from pipeline.viewer.tiles import class_layers, layer_labels

__all__ = ["MAX_MARKERS", "STATIC", "Page", "bokeh_files", "legend_html", "marker_colours", "render_page"]

#: Our script and style sheet.
STATIC = Path(__file__).with_name("static")
#: Markers drawn at once (the brightest in view first).
MAX_MARKERS = 2000
#: Layers shown when the page opens, with their opacity.
_SHOWN = {"bands": 1.0, "segmentation": 0.8}

_FOLLOW = "dst.setv({start: src.start * scale, end: src.end * scale})"

_TEMPLATE = """
{% block preamble %}<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">{% endblock %}
{% block postamble %}
<link rel="stylesheet" href="./static/morpheus/viewer.css">
<script src="./static/morpheus/viewer.js"></script>
<script>MorpheusViewer.configure({{ viewer_config }});</script>
{% endblock %}
"""


@dataclass
class Page:
    """A rendered map page.

    Attributes
    ----------
    html : str
        ``index.html``.
    static : dict of str to Path
        URL path under the site (``static/js/bokeh.min.js``) -> local file to serve or copy.
    objects : int
        Catalog rows on the map.
    """

    html: str
    static: dict[str, Path]
    objects: int


def bokeh_files(html: str) -> dict[str, Path]:
    """The BokehJS files a page refers to (``./static/js/...``), found in the ``bokeh`` package."""
    from bokeh.util.paths import bokehjs_path

    root = Path(bokehjs_path())
    names = sorted(set(re.findall(r'"\./static/js/([\w.-]+\.js)"', html)))
    return {f"static/js/{name}": root / "js" / name for name in names}


def marker_colours(classes: Sequence[str] = CLASSES) -> dict[str, str]:
    """Marker colour of each dominant class: its class image's colour as ``#rrggbb``
    (:func:`morpheus_core.colour.class_colours`; white reads as background).
    """
    return {c: "#{:02x}{:02x}{:02x}".format(*rgb) for c, rgb in class_colours(classes).items()}


def legend_html(classes: Sequence[str] = CLASSES, *, markers: bool = True) -> str:
    """The legend of the class colours: one entry per class layer, with its marker colour.

    Each entry (``<tr data-layer=... data-class=...>``) shows the class image's colour
    as a ramp from black (probability 0) to its colour (probability 1,
    :func:`morpheus_core.colour.class_colours`: the paper's colours for the released
    classes, the run's palette for a model card's) and, for the classes a dominant class
    can be (all but the last, background), the marker's ring in its colour
    (:func:`marker_colours`).

    Parameters
    ----------
    classes : sequence of str
        The run's classes in channel order (background last).
    markers : bool
        Whether the map draws a catalog (the marker column).

    Returns
    -------
    str
        HTML for a :class:`~bokeh.models.Div`.
    """
    classes = tuple(classes)
    layers = {c: key for key, c in class_layers(classes).items()}
    rings = marker_colours(classes)
    rows = []
    for i, (name, rgb) in enumerate(class_colours(classes).items()):
        colour = "#{:02x}{:02x}{:02x}".format(*rgb)
        ring = rings[name] if markers and i < len(classes) - 1 else ""
        cell = f'<span class="mv-ring" style="border-color: {ring}"></span>' if ring else ""
        rows.append(
            f'<tr data-layer="{html_text.escape(layers[name])}" data-class="{html_text.escape(name)}" '
            f'data-colour="{colour}" data-marker="{ring}">'
            f'<td><span class="mv-ramp" style="background: linear-gradient(to right, #000000, {colour})">'
            f"</span></td><td>{cell}</td><td>{html_text.escape(name.replace('_', ' '))}</td></tr>"
        )
    head = "<tr><th>image p = 0 \u2192 1</th><th>{}</th><th>class</th></tr>".format("marker" if markers else "")
    note = ("markers: dominant class (background excluded); " if markers else "") + "outlines cyan, selection magenta"
    return f'<b>class colours</b><table class="mv-legend">{head}{"".join(rows)}</table><p class="mv-note">{note}</p>'


def _mosaic_info(layout: RunLayout) -> tuple[WCS, list[str], dict[str, Any]]:
    mosaic = layout.mosaic.open_group(mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(fits.Header.fromstring(mosaic.attrs["wcs_header"]))
    manifest = layout.manifest.read_json() if layout.manifest.exists() else {}
    return wcs, list(mosaic.attrs["bands"]), manifest


def render_page(pyramid: Pyramid, layout: RunLayout) -> Page:
    """The map page of a run directory.

    Parameters
    ----------
    pyramid : Pyramid
        Its built tile pyramid (:func:`pipeline.viewer.pyramid.build_pyramid`).
    layout : RunLayout
        The run directory.

    Returns
    -------
    Page
        The HTML and the static files it needs.
    """
    from bokeh.embed import file_html
    from bokeh.resources import Resources

    wcs, bands, manifest = _mosaic_info(layout)
    grid = pyramid.grid
    model = sky_model(wcs, grid.shape)
    record = layout.downstream_record.read_json() if layout.downstream_record.exists() else {}
    flux_band = (record.get("settings") or {}).get("flux_band") or (bands[0] if bands else None)
    classes = tuple(pyramid.classes)
    catalog = map_catalog(layout, wcs, bands, flux_band, classes)
    mosaic_name = (manifest.get("config") or {}).get("mosaic", "")
    title = f"Morpheus map: {mosaic_name or layout.root.name}"
    root = _document(pyramid, catalog, model["pixel_scale"], title=title, run_id=manifest.get("run_id", ""))
    config = {
        "tiles": [list(v) for v in (grid.tile_counts(z) for z in range(grid.max_level + 1))],
        "sky": model,
        "maxMarkers": MAX_MARKERS,
        "shape": list(grid.shape),
        "classes": list(classes),
        "columns": catalog["columns"] if catalog else [],
    }
    html = file_html(
        root,
        resources=Resources(mode="server", root_url="./"),
        title=title,
        template=_TEMPLATE,
        template_variables={"viewer_config": json.dumps(config, separators=(",", ":"))},
    )
    static = bokeh_files(html)
    static.update({f"static/morpheus/{p.name}": p for p in sorted(STATIC.iterdir()) if p.suffix in (".js", ".css")})
    return Page(html=html, static=static, objects=len(catalog["data"]["mx"]) if catalog else 0)


def _document(pyramid: Pyramid, catalog: dict[str, Any] | None, pixel_scale: float, *, title: str, run_id: str) -> Any:
    """The Bokeh layout: controls on the left, the map on the right."""
    from bokeh import models as bm
    from bokeh.events import MouseMove
    from bokeh.layouts import column, row
    from bokeh.plotting import figure

    grid = pyramid.grid
    ny, nx = grid.shape
    fig = figure(
        x_range=bm.Range1d(0, nx),
        y_range=bm.Range1d(0, ny),
        match_aspect=True,
        sizing_mode="stretch_both",
        tools="pan,wheel_zoom,reset,save",
        active_scroll="wheel_zoom",
        output_backend="webgl",
        x_axis_label="x (pixel)",
        y_axis_label="y (pixel)",
        name="map",
    )
    fig.grid.visible = False
    square = bm.CustomJS(args={"fig": fig}, code="MorpheusViewer.square(fig)")
    fig.js_on_change("inner_width", square)
    fig.js_on_change("inner_height", square)
    fig.background_fill_color = "#202020"
    controls = [bm.Div(text=f"<h3>{title}</h3><p class='mv-run'>run {run_id}</p>", name="title")]
    controls.append(bm.Div(text="<b>layers</b>"))
    version = pyramid.fingerprint[:8]
    labels = layer_labels(pyramid.classes, pyramid.composite)
    for name in pyramid.layers:
        source = bm.TMSTileSource(
            url=f"tiles/{name}/{{Z}}/{{X}}/{{Y}}.png?v={version}",
            tile_size=grid.tile,
            min_zoom=0,
            max_zoom=grid.max_level,
            initial_resolution=float(2**grid.max_level),
            x_origin_offset=0,
            y_origin_offset=0,
            wrap_around=False,
            attribution="",
        )
        renderer = bm.TileRenderer(
            tile_source=source,
            alpha=_SHOWN.get(name, 1.0),
            visible=name in _SHOWN,
            smoothing=False,
            name=f"layer-{name}",
        )
        fig.renderers.append(renderer)
        toggle = bm.Checkbox(label=labels[name], active=name in _SHOWN, name=f"toggle-{name}", width=210)
        toggle.js_link("active", renderer, "visible")
        opacity = bm.Slider(
            start=0,
            end=1,
            step=0.05,
            value=_SHOWN.get(name, 1.0),
            title=None,
            show_value=False,
            width=80,
            name=f"opacity-{name}",
        )
        opacity.js_link("value", renderer, "alpha")
        controls.append(row(toggle, opacity))
    fig.add_tools(bm.BoxZoomTool(match_aspect=True))
    style = [bm.ImportedStyleSheet(url="./static/morpheus/viewer.css")]  # widgets live in shadow DOMs
    readout = bm.Div(text="move the cursor over the map", name="readout", css_classes=["mv-readout"], stylesheets=style)
    fig.js_on_event(
        MouseMove, bm.CustomJS(args={"div": readout}, code="MorpheusViewer.readout(cb_obj.x, cb_obj.y, div)")
    )
    # The scale bar measures a range in arcseconds that follows the map's x range.
    arcsec = bm.Range1d(0, nx * pixel_scale, name="arcsec-range")
    fig.x_range.js_on_change(
        "start", bm.CustomJS(args={"src": fig.x_range, "dst": arcsec, "scale": pixel_scale}, code=_FOLLOW)
    )
    fig.x_range.js_on_change(
        "end", bm.CustomJS(args={"src": fig.x_range, "dst": arcsec, "scale": pixel_scale}, code=_FOLLOW)
    )
    basis = {
        "mas": (0.001, "mas", "milliarcsecond"),
        "\u2033": (1.0, "\u2033", "arcsecond"),
        "\u2032": (60.0, "\u2032", "arcminute"),
        "\u00b0": (3600.0, "\u00b0", "degree"),
    }
    fig.add_layout(
        bm.ScaleBar(
            range=arcsec,
            unit="\u2033",
            location="bottom_left",
            bar_length=0.2,
            dimensional=bm.Angular(basis=basis, ticks=[1, 2, 5, 10, 20, 30, 50, 100, 200, 500]),
            background_fill_alpha=0.6,
            label_text_color="white",
            bar_line_color="white",
            background_fill_color="black",
            name="scalebar",
        )
    )
    controls.append(readout)
    legend = bm.Div(text=legend_html(pyramid.classes, markers=catalog is not None), name="legend", stylesheets=style)
    panel = [legend]
    if catalog is not None:
        more, details = _catalog_controls(fig, catalog, tuple(pyramid.classes))
        controls += more
        panel += [bm.Div(text="<b>selected object</b>"), details]
    # The side columns scroll on their own (viewer.css): the map and the details stay in the window.
    return row(
        column(*controls, width=300, sizing_mode="stretch_height", css_classes=["mv-controls"]),
        fig,
        column(*panel, width=260, sizing_mode="stretch_height", css_classes=["mv-controls"]),
        sizing_mode="stretch_both",
    )


def _catalog_controls(fig: Any, catalog: dict[str, Any], classes: tuple[str, ...]) -> tuple[list, Any]:
    """Markers, search and the filter by dominant class (all classes but background); the row shown on a tap."""
    from bokeh import models as bm
    from bokeh.transform import factor_cmap

    data = catalog["data"]
    colours = marker_colours(classes)
    source = bm.ColumnDataSource(data, name="catalog")
    first = list(range(min(MAX_MARKERS, len(data["mx"]))))
    view = bm.CDSView(filter=bm.IndexFilter(first, name="thin"))
    markers = fig.scatter(
        "mx",
        "my",
        source=source,
        view=view,
        size=12,
        marker="circle",
        fill_alpha=0,
        line_width=1.5,
        name="markers",
        line_color=factor_cmap("dominant_class", list(colours.values()), list(colours)),
        selection_line_color="#ff00ff",
        selection_line_width=3,
        nonselection_line_alpha=0.9,
    )
    target = bm.ColumnDataSource({"mx": [], "my": []}, name="target")
    fig.scatter(
        "mx", "my", source=target, marker="circle_cross", size=22, fill_alpha=0, line_color="#ff00ff", line_width=2
    )
    fig.add_tools(
        bm.HoverTool(renderers=[markers], tooltips=[("id", "@name"), ("class", "@dominant_class")]),
        bm.TapTool(renderers=[markers]),
    )
    info = bm.Div(
        text="click a marker to see its catalog row",
        name="row",
        css_classes=["mv-row"],
        stylesheets=[bm.ImportedStyleSheet(url="./static/morpheus/viewer.css")],
    )
    chosen = bm.CheckboxGroup(
        labels=[c.replace("_", " ") for c in classes[:-1]],
        active=list(range(len(classes) - 1)),
        name="class-filter",
        inline=True,
    )
    args = {"source": source, "filter": view.filter, "classes": chosen, "fig": fig}
    thin = bm.CustomJS(args=args, code="MorpheusViewer.thin(source, filter, classes, fig)")
    chosen.js_on_change("active", thin)
    for rng in (fig.x_range, fig.y_range):
        rng.js_on_change("start", thin)
        rng.js_on_change("end", thin)
    source.selected.js_on_change(
        "indices", bm.CustomJS(args={"source": source, "div": info}, code="MorpheusViewer.showRow(source, div)")
    )
    show = bm.Checkbox(label=f"catalog ({len(data['mx'])} objects)", active=True, name="toggle-catalog")
    show.js_link("active", markers, "visible")
    find_id = bm.TextInput(title="find id", placeholder="e.g. 12", name="find-id")
    find_id.js_on_change(
        "value",
        bm.CustomJS(
            args={**args, "target": target, "div": info},
            code="MorpheusViewer.findId(cb_obj.value, source, target, fig, div)",
        ),
    )
    find_sky = bm.TextInput(title="find RA Dec (deg or h:m:s d:m:s)", placeholder="53.1234 -27.8123", name="find-sky")
    find_sky.js_on_change(
        "value",
        bm.CustomJS(
            args={**args, "target": target, "div": info},
            code="MorpheusViewer.findSky(cb_obj.value, source, target, fig, div)",
        ),
    )
    return [bm.Div(text="<b>catalog</b>"), show, bm.Div(text="dominant class:"), chosen, find_id, find_sky], info

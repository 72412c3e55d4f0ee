"""The map in a real headless browser (``python -m pipeline view``): tiles, the cursor's
RA/Dec against astropy, the catalog's markers, searches and filter, the legend, tiles
drawn where the markers and axes put them through window resizes, and no request
leaving the machine, served and exported (:mod:`tests.pipeline.viewer.browser`).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table

from morpheus_core import CLASSES
from pipeline.rundir.location import Location
from pipeline.viewer.command import prepare
from pipeline.viewer.export import export_site
from pipeline.viewer.server import MapServer
from tests.pipeline.view_runs import mosaic_wcs
from tests.pipeline.viewer.browser import (
    FIND_DEEP,
    PAINT_RECORDER,
    TILE_URL,
    WINDOW,
    Traffic,
    browser,
    browser_internal,
    deep_rect,
    deep_text,
    in_window,
    loaded_tiles,
    misdrawn_tiles,
    move,
    network,
    readout,
    screen_to_pixel,
    static_server,
    wait,
)

#: The map's promise for the cursor's RA/Dec.
SKY_TOLERANCE_ARCSEC = 0.01


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_map_in_a_headless_browser(scene_dir, tmp_path):
    driver = browser()
    pyramid, page = prepare(Location(scene_dir), echo=lambda *_: None)
    server = MapServer(pyramid, page, port=0).start()
    catalog = Table.read(scene_dir / "catalog" / "catalog.parquet")
    wcs = mosaic_wcs(scene_dir)
    try:
        t0 = time.monotonic()
        driver.get(server.url)
        wait(lambda: driver.execute_script("return window.Bokeh && Bokeh.documents.length > 0"), 60, "the page")
        wait(lambda: loaded_tiles(driver, "bands") >= 1, 60, "a tile of the colour composite")
        first_tile = time.monotonic() - t0
        wait(lambda: loaded_tiles(driver, "segmentation") >= 1, 30, "a tile of the segmentation")
        time.sleep(1.0)  # prefetching

        # The cursor's RA/Dec at a known pixel, against astropy.
        offset, scale = screen_to_pixel(driver)
        known = np.array([123.0, 201.0])
        move(driver, *((known - offset) / scale))
        px, py, ra, dec = readout(driver)
        assert abs(px - known[0]) <= abs(scale[0]) and abs(py - known[1]) <= abs(scale[1])
        truth = wcs.celestial.pixel_to_world(px, py)
        assert truth.separation(SkyCoord(ra, dec, unit="deg")).arcsec < SKY_TOLERANCE_ARCSEC

        # ... and anywhere in the field: corners, edges and a grid, through the page's own function.
        ny, nx = pyramid.grid.shape
        gx, gy = np.meshgrid(np.linspace(-0.5, nx - 0.5, 21), np.linspace(-0.5, ny - 0.5, 17))
        points = np.stack([gx.ravel(), gy.ravel()], axis=1)
        sky = np.array(
            driver.execute_script(
                "return arguments[0].map((p) => MorpheusViewer.pixelToSky(p[0], p[1]))", points.tolist()
            )
        )
        truth = wcs.celestial.pixel_to_world(points[:, 0], points[:, 1])
        assert truth.separation(SkyCoord(sky[:, 0], sky[:, 1], unit="deg")).arcsec.max() < SKY_TOLERANCE_ARCSEC
        back = np.array(
            driver.execute_script("return arguments[0].map((p) => MorpheusViewer.skyToPixel(p[0], p[1]))", sky.tolist())
        )
        np.testing.assert_allclose(back, points, atol=1e-4)  # RA/Dec search lands on the pixel

        # Click the brightest object (drawn first): its id and dominant class appear.
        data = driver.execute_script(
            "const s = Bokeh.documents[0].get_model_by_name('catalog').data;"
            "return [s.mx[0], s.my[0], s.name[0], s.dominant_class[0]]"
        )
        mx, my, name, dominant = data
        row = catalog[catalog["id"] == int(name)][0]
        assert dominant == row["dominant_class"]
        move(driver, *((np.array([mx, my]) - 0.5 - offset) / scale), click=True)
        wait(
            lambda: driver.execute_script(
                "return Bokeh.documents[0].get_model_by_name('catalog').selected.indices.length > 0"
            ),
            10,
            "a selection",
        )
        shown = driver.execute_script("return Bokeh.documents[0].get_model_by_name('row').text")
        assert f'data-column="id">{row["id"]}<' in shown and f'data-column="dominant_class">{dominant}<' in shown
        text = wait(lambda: deep_text(driver, ".mv-table"), 10, "the row on the page")
        assert str(row["id"]) in text and dominant in text
        driver.save_screenshot(str(tmp_path / "map.png"))
        print(f"screenshot: {tmp_path / 'map.png'}; first tile after {first_tile:.2f} s")

        # Search by id and by RA/Dec select the object; the class filter hides the others.
        other = catalog[-1]
        driver.execute_script("Bokeh.documents[0].get_model_by_name('find-id').value = arguments[0]", str(other["id"]))
        wait(
            lambda: (
                f'data-column="id">{other["id"]}<'
                in driver.execute_script("return Bokeh.documents[0].get_model_by_name('row').text")
            ),
            10,
            "the searched object's row",
        )
        driver.execute_script(
            "Bokeh.documents[0].get_model_by_name('find-sky').value = arguments[0]", f"{row['ra']:.7f} {row['dec']:.7f}"
        )
        wait(
            lambda: (
                f'data-column="id">{row["id"]}<'
                in driver.execute_script("return Bokeh.documents[0].get_model_by_name('row').text")
            ),
            10,
            "the object at the searched RA/Dec",
        )
        driver.execute_script("Bokeh.documents[0].get_model_by_name('class-filter').active = [0]")  # spheroids
        time.sleep(0.5)
        shown_classes = driver.execute_script(
            "const d = Bokeh.documents[0]; const s = d.get_model_by_name('catalog');"
            "const keep = d.get_model_by_name('thin').indices; const sel = s.selected.indices;"
            "return Array.from(keep).filter((i) => !sel.includes(i)).map((i) => s.data.dominant_class[i])"
        )
        assert shown_classes and set(shown_classes) == {"spheroid"}

        traffic = network(driver, server.url)
        assert not traffic.external and not traffic.bad, (traffic.external, traffic.bad)
        assert any("/tiles/bands/" in url for url in traffic.ours)
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and not browser_internal(e)]
        assert not severe, severe

        # The exported folder on a plain static web server: same page, no failed request.
        site = tmp_path / "site"
        export_site(pyramid, page, site)
        static = static_server(site)
        try:
            url = f"http://127.0.0.1:{static.server_address[1]}/"
            driver.get(url)
            wait(lambda: driver.execute_script("return window.Bokeh && Bokeh.documents.length > 0"), 60, "the site")
            wait(lambda: loaded_tiles(driver, "bands") >= 1, 60, "a tile of the exported site")
            time.sleep(1.0)
            traffic = network(driver, url)
            assert not traffic.external and not traffic.bad, (traffic.external, traffic.bad)
            assert any("/tiles/bands/" in u for u in traffic.ours)
        finally:
            static.shutdown()
            static.server_close()
    finally:
        driver.quit()
        server.stop()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_first_paint_legend_and_details_in_the_window(scene_dir):
    """In a window of 1400 x 900: every paint draws the tiles where the markers and axes put their
    extent (from the first paint on, and on the first paint after each window resize,
    the frame a one-shot screenshot captures); the legend shows each class layer's
    colour; a clicked object's row is in the window without scrolling."""
    driver = browser()
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PAINT_RECORDER})
    pyramid, page = prepare(Location(scene_dir), echo=lambda *_: None)
    server = MapServer(pyramid, page, port=0).start()
    grid = pyramid.grid
    paints = lambda: driver.execute_script("return window.__mapPaints")  # noqa: E731

    def drawn(since: int = 0) -> set[str]:  # layers drawn by the paints since the one numbered `since`
        return {TILE_URL.search(d[0]).group(1) for p in paints()[since:] for d in p["draws"]}

    try:
        driver.get(server.url)
        wait(lambda: {"bands", "segmentation"} <= drawn(), 60, "a paint with tiles of both layers shown")
        # The window sizes change: the first paint at each new size draws the tiles right.
        for size in ((1400, 760), (1150, 900), WINDOW):
            before = len(paints())
            driver.set_window_size(*size)
            wait(lambda: {"bands", "segmentation"} <= drawn(before), 30, f"a paint at {size}")
            time.sleep(0.3)  # and the paints that follow it
        everything = paints()
        assert sum(len(p["draws"]) for p in everything) > 0
        bad = misdrawn_tiles(everything, grid.tile, grid.max_level)
        assert not bad, "\n".join(bad[:8])
        last = everything[-1]
        x_scale, y_scale = last["x"][1] - last["x"][0], last["y"][0] - last["y"][1]
        assert x_scale == pytest.approx(y_scale, rel=1e-6), "mosaic pixels are not square on screen"

        # The legend: one entry per class layer, in the class image's colour (ramp from
        # black) and, but for background, the marker's; in the window.
        assert in_window(deep_rect(driver, ".mv-legend"))
        entries = driver.execute_script(
            FIND_DEEP
            + """
            return Array.from(el.querySelectorAll('tr[data-layer]')).map((tr) => {
              const ring = tr.querySelector('.mv-ring');
              return [tr.dataset.layer, getComputedStyle(tr.querySelector('.mv-ramp')).backgroundImage,
                      ring ? getComputedStyle(ring).borderTopColor : null];
            });""",
            ".mv-legend",
        )
        paper = {
            "spheroid": "rgb(255, 0, 0)",
            "disk": "rgb(0, 0, 255)",
            "irregular": "rgb(0, 255, 0)",
            "point_source": "rgb(255, 255, 0)",
            "background": "rgb(255, 255, 255)",
        }  # paper section 6
        assert [layer for layer, _, _ in entries] == list(CLASSES)
        for layer, ramp, ring in entries:
            assert ramp == f"linear-gradient(to right, rgb(0, 0, 0), {paper[layer]})"
            assert ring == (None if layer == "background" else paper[layer])

        # Click the brightest object: its row is in the window, the page does not scroll.
        offset, scale = screen_to_pixel(driver)
        mx, my, name = driver.execute_script(
            "const s = Bokeh.documents[0].get_model_by_name('catalog').data;return [s.mx[0], s.my[0], s.name[0]]"
        )
        move(driver, *((np.array([mx, my]) - 0.5 - offset) / scale), click=True)
        wait(
            lambda: (
                f'data-column="id">{name}<'
                in driver.execute_script("return Bokeh.documents[0].get_model_by_name('row').text")
            ),
            10,
            "the clicked object's row",
        )
        rect = wait(lambda: deep_rect(driver, ".mv-table"), 10, "the row on the page")
        assert in_window(rect), rect
        assert driver.execute_script(
            "const e = document.scrollingElement;return e.scrollHeight <= e.clientHeight && e.scrollTop === 0"
        )
    finally:
        driver.quit()
        server.stop()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_network_check_counts_what_leaves_the_machine_not_the_browsers_own_loads(card_dir):
    driver = browser()
    pyramid, page = prepare(Location(card_dir), echo=lambda *_: None)
    server = MapServer(pyramid, page, port=0).start()
    try:
        # The browser's own pages load chrome:// resources (some fail when a page is left
        # half loaded): none of it counts.
        driver.get("chrome://version")
        driver.get("chrome://new-tab-page")
        driver.get(server.url)
        wait(lambda: driver.execute_script("return window.Bokeh && Bokeh.documents.length > 0"), 60, "the page")
        wait(lambda: loaded_tiles(driver, "bands") >= 1, 60, "a tile")
        traffic = network(driver, server.url)
        assert not traffic.external and not traffic.bad, (traffic.external, traffic.bad)
        assert any("/tiles/bands/0/0/0.png" in url for url in traffic.ours), traffic.ours
        # ... but the page loading anything from the internet, or a failed request to our
        # server, does.
        internet = ["https://cdn.example.invalid/bokeh.min.js", "http://192.0.2.1/tile.png"]
        driver.execute_script(
            "fetch(arguments[0]).catch(() => null); (new Image()).src = arguments[1];"
            "fetch(arguments[2]).catch(() => null)",
            *internet,
            server.url + "tiles/none/0/0/0.png",
        )
        found = Traffic()

        def seen():
            more = network(driver, server.url)
            found.external += more.external
            found.bad += more.bad
            return len(found.external) >= 2 and found.bad

        wait(seen, 30, "the requests")
        assert sorted(found.external) == sorted(internet)
        assert found.bad == [f"{server.url}tiles/none/0/0/0.png: HTTP 404"]
    finally:
        driver.quit()
        server.stop()

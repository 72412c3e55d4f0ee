"""``python -m pipeline view`` (issue #16): the map in a real headless browser, the exported
static site, the command line; the page of a model with its own bands and classes (issue #17).

The browser test drives Chromium from the distribution's packages (``/usr/bin/chromium``
and ``/usr/bin/chromedriver``, ``apt-get install chromium chromium-driver``) through
Selenium. ``.ci/run`` installs them; elsewhere a missing browser skips the test with the
reason (``pytest -ra`` prints it), except under ``CI`` where it fails.
"""

from __future__ import annotations

import argparse
import functools
import html
import http.server
import ipaddress
import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from morpheus_core import CLASSES
from pipeline.rundir.location import Location
from pipeline.viewer.command import add_parser, main, prepare, view_command
from pipeline.viewer.export import export_site
from pipeline.viewer.page import render_page
from pipeline.viewer.pyramid import build_pyramid
from pipeline.viewer.server import MapServer
from tests.pipeline.test_s3 import BUCKET, endpoint  # noqa: F401 - the moto S3 server fixture
from tests.pipeline.view_runs import CARD_BANDS, CARD_CLASSES, card_run, classified_run, scene_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: The issue's promise for the cursor's RA/Dec.
SKY_TOLERANCE_ARCSEC = 0.01
WINDOW = (1400, 900)


@pytest.fixture(scope="session")
def scene_dir(tmp_path_factory) -> Path:
    """A finished run of a constructed 300 x 420 scene (two zoom levels, dozens of objects)."""
    return scene_run(tmp_path_factory.mktemp("view-scene") / "run")


@pytest.fixture(scope="session")
def card_dir(tmp_path_factory) -> Path:
    """A finished run of a model with six NIRCam bands and the classes compact, extended, background."""
    return card_run(tmp_path_factory.mktemp("view-card") / "run")


@pytest.fixture(scope="session")
def classified_dir(tmp_path_factory) -> Path:
    """A finished run made by ``pipeline.run.run`` with the stand-in network."""
    return classified_run(tmp_path_factory.mktemp("view-run"))


def _wcs(run_dir: Path) -> WCS:
    import zarr

    header = zarr.open_group(str(run_dir / "mosaic.zarr"), mode="r").attrs["wcs_header"]
    return WCS(fits.Header.fromstring(header))


def _browser():
    """A headless Chromium (Selenium), or a skip naming what is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        reason = (f"headless browser test needs {', '.join(missing)}: apt-get install chromium chromium-driver "
                  "(.ci/run installs them)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='morpheus-chromium-')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@dataclass
class Traffic:
    """The page's requests, from Chrome's performance log.

    Attributes
    ----------
    external : list of str
        URLs of requests that leave the machine (``http(s)``/``ws(s)`` to a host that
        is not loopback): the page must make none.
    ours : list of str
        URLs of requests to our own server.
    bad : list of str
        Requests to our own server that failed or got a status other than 200 or 304
        (304: not modified, from the cache).

    The browser's own loads (``chrome://`` pages and their resources, ``data:``,
    ``blob:``, extensions) and requests it cancelled itself are none of these.
    """

    external: list[str] = field(default_factory=list)
    ours: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)


def _leaves_the_machine(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss", "ftp"):
        return False
    host = parts.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _internal(entry: dict) -> bool:
    """Whether a console entry of the browser log comes from the browser's own pages, not the map's."""
    return entry.get("message", "").startswith(("chrome://", "chrome-untrusted://", "chrome-extension://",
                                                  "devtools://"))


def _traffic(messages: list[dict], own: str) -> Traffic:
    """What :class:`Traffic` says of the DevTools ``Network.*`` messages, ``own`` being our server's URL."""
    traffic, urls = Traffic(), {}
    for message in messages:
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            url = params["request"]["url"]
            urls[params.get("requestId")] = url
            if _leaves_the_machine(url):
                traffic.external.append(url)
            elif url.startswith(own):
                traffic.ours.append(url)
        elif message["method"] == "Network.responseReceived":
            url, status = params["response"]["url"], int(params["response"]["status"])
            if url.startswith(own) and status not in (200, 304):
                traffic.bad.append(f"{url}: HTTP {status}")
        elif message["method"] == "Network.loadingFailed" and not params.get("canceled"):
            url = urls.get(params.get("requestId"), "")
            if url.startswith(own):
                traffic.bad.append(f"{url}: {params.get('errorText')}")
    return traffic


def _network(driver, own: str) -> Traffic:
    """The page's requests since the last call (``own``: our server's URL)."""
    return _traffic([json.loads(entry["message"])["message"] for entry in driver.get_log("performance")], own)


_JS_MODEL = "return Bokeh.documents[0].get_model_by_name(arguments[0])"


def _loaded_tiles(driver, layer: str) -> int:
    return driver.execute_script(
        "const r = Bokeh.documents[0].get_model_by_name('layer-' + arguments[0]);"
        "return Array.from(r.tile_source.tiles.values()).filter((t) => t.loaded).length;", layer)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _move(driver, x: float, y: float, click: bool = False) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(int(round(x)), int(round(y)))
    if click:
        actions.pointer_action.click()
    actions.perform()
    ActionChains(driver).pause(0.2).perform()


_READOUT = re.compile(r"pixel x = (-?[\d.]+), y = (-?[\d.]+).*RA = ([\d.]+)\u00b0, Dec = (-?[\d.]+)\u00b0", re.S)


def _readout(driver) -> tuple[float, float, float, float]:
    """The readout's pixel x, y and RA, Dec as the page shows them."""
    text = driver.execute_script("return Bokeh.documents[0].get_model_by_name('readout').text")
    match = _READOUT.search(text)
    assert match, text
    return tuple(float(v) for v in match.groups())


def _screen_to_pixel(driver) -> tuple[np.ndarray, np.ndarray]:
    """The linear map from viewport to astropy pixel coordinates, from the readout at two points."""
    a, b = np.array([500.0, 300.0]), np.array([900.0, 600.0])  # inside the map, between the side columns
    _move(driver, *a)
    pa = np.array(_readout(driver)[:2])
    _move(driver, *b)
    pb = np.array(_readout(driver)[:2])
    scale = (pb - pa) / (b - a)  # data pixels per screen pixel, per axis (y flips)
    assert scale[0] > 0 and scale[1] < 0 and np.isclose(scale[0], -scale[1], rtol=0.02)
    return pa - scale * a, scale


#: Script lines that set ``el`` to the first element matching ``arguments[0]`` anywhere,
#: shadow DOMs included (Bokeh's widgets live in shadow roots).
_FIND_DEEP = """
        const find = (root) => {
          const hit = root.querySelector(arguments[0]);
          if (hit) return hit;
          for (const el of root.querySelectorAll('*')) {
            if (el.shadowRoot) { const h = find(el.shadowRoot); if (h) return h; }
          }
          return null;
        };
        const el = find(document);
"""


def _deep_text(driver, css: str) -> str:
    """Text of the first element matching ``css`` anywhere, shadow DOMs included (Bokeh's widgets)."""
    return driver.execute_script(_FIND_DEEP + "return el ? el.textContent : '';", css)


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


def _static_server(site: Path) -> http.server.ThreadingHTTPServer:
    """A plain static web server (what any static host does) for an exported site."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_map_in_a_headless_browser(scene_dir, tmp_path):
    driver = _browser()
    pyramid, page = prepare(Location(scene_dir), echo=lambda *_: None)
    server = MapServer(pyramid, page, port=0).start()
    catalog = Table.read(scene_dir / "catalog" / "catalog.parquet")
    wcs = _wcs(scene_dir)
    try:
        t0 = time.monotonic()
        driver.get(server.url)
        _wait(lambda: driver.execute_script("return window.Bokeh && Bokeh.documents.length > 0"), 60, "the page")
        _wait(lambda: _loaded_tiles(driver, "bands") >= 1, 60, "a tile of the colour composite")
        first_tile = time.monotonic() - t0
        _wait(lambda: _loaded_tiles(driver, "segmentation") >= 1, 30, "a tile of the segmentation")
        time.sleep(1.0)  # prefetching

        # The cursor's RA/Dec at a known pixel, against astropy.
        offset, scale = _screen_to_pixel(driver)
        known = np.array([123.0, 201.0])
        _move(driver, *((known - offset) / scale))
        px, py, ra, dec = _readout(driver)
        assert abs(px - known[0]) <= abs(scale[0]) and abs(py - known[1]) <= abs(scale[1])
        truth = wcs.celestial.pixel_to_world(px, py)
        assert truth.separation(SkyCoord(ra, dec, unit="deg")).arcsec < SKY_TOLERANCE_ARCSEC

        # ... and anywhere in the field: corners, edges and a grid, through the page's own function.
        ny, nx = pyramid.grid.shape
        gx, gy = np.meshgrid(np.linspace(-0.5, nx - 0.5, 21), np.linspace(-0.5, ny - 0.5, 17))
        points = np.stack([gx.ravel(), gy.ravel()], axis=1)
        sky = np.array(driver.execute_script(
            "return arguments[0].map((p) => MorpheusViewer.pixelToSky(p[0], p[1]))", points.tolist()))
        truth = wcs.celestial.pixel_to_world(points[:, 0], points[:, 1])
        assert truth.separation(SkyCoord(sky[:, 0], sky[:, 1], unit="deg")).arcsec.max() < SKY_TOLERANCE_ARCSEC
        back = np.array(driver.execute_script(
            "return arguments[0].map((p) => MorpheusViewer.skyToPixel(p[0], p[1]))", sky.tolist()))
        np.testing.assert_allclose(back, points, atol=1e-4)  # RA/Dec search lands on the pixel

        # Click the brightest object (drawn first): its id and dominant class appear.
        data = driver.execute_script("const s = Bokeh.documents[0].get_model_by_name('catalog').data;"
                                     "return [s.mx[0], s.my[0], s.name[0], s.dominant_class[0]]")
        mx, my, name, dominant = data
        row = catalog[catalog["id"] == int(name)][0]
        assert dominant == row["dominant_class"]
        _move(driver, *((np.array([mx, my]) - 0.5 - offset) / scale), click=True)
        _wait(lambda: driver.execute_script(
            "return Bokeh.documents[0].get_model_by_name('catalog').selected.indices.length > 0"), 10, "a selection")
        shown = driver.execute_script("return Bokeh.documents[0].get_model_by_name('row').text")
        assert f'data-column="id">{row["id"]}<' in shown and f'data-column="dominant_class">{dominant}<' in shown
        text = _wait(lambda: _deep_text(driver, ".mv-table"), 10, "the row on the page")
        assert str(row["id"]) in text and dominant in text
        driver.save_screenshot(str(tmp_path / "map.png"))
        print(f"screenshot: {tmp_path / 'map.png'}; first tile after {first_tile:.2f} s")

        # Search by id and by RA/Dec select the object; the class filter hides the others.
        other = catalog[-1]
        driver.execute_script("Bokeh.documents[0].get_model_by_name('find-id').value = arguments[0]",
                              str(other["id"]))
        _wait(lambda: f'data-column="id">{other["id"]}<' in driver.execute_script(
            "return Bokeh.documents[0].get_model_by_name('row').text"), 10, "the searched object's row")
        driver.execute_script("Bokeh.documents[0].get_model_by_name('find-sky').value = arguments[0]",
                              f"{row['ra']:.7f} {row['dec']:.7f}")
        _wait(lambda: f'data-column="id">{row["id"]}<' in driver.execute_script(
            "return Bokeh.documents[0].get_model_by_name('row').text"), 10, "the object at the searched RA/Dec")
        driver.execute_script("Bokeh.documents[0].get_model_by_name('class-filter').active = [0]")  # spheroids
        time.sleep(0.5)
        shown_classes = driver.execute_script(
            "const d = Bokeh.documents[0]; const s = d.get_model_by_name('catalog');"
            "const keep = d.get_model_by_name('thin').indices; const sel = s.selected.indices;"
            "return Array.from(keep).filter((i) => !sel.includes(i)).map((i) => s.data.dominant_class[i])")
        assert shown_classes and set(shown_classes) == {"spheroid"}

        traffic = _network(driver, server.url)
        assert not traffic.external and not traffic.bad, (traffic.external, traffic.bad)
        assert any("/tiles/bands/" in url for url in traffic.ours)
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and not _internal(e)]
        assert not severe, severe

        # The exported folder on a plain static web server: same page, no failed request.
        site = tmp_path / "site"
        export_site(pyramid, page, site)
        static = _static_server(site)
        try:
            url = f"http://127.0.0.1:{static.server_address[1]}/"
            driver.get(url)
            _wait(lambda: driver.execute_script("return window.Bokeh && Bokeh.documents.length > 0"), 60, "the site")
            _wait(lambda: _loaded_tiles(driver, "bands") >= 1, 60, "a tile of the exported site")
            time.sleep(1.0)
            traffic = _network(driver, url)
            assert not traffic.external and not traffic.bad, (traffic.external, traffic.bad)
            assert any("/tiles/bands/" in u for u in traffic.ours)
        finally:
            static.shutdown()
            static.server_close()
    finally:
        driver.quit()
        server.stop()


#: Installed before the page's own scripts: records, for every paint of the map, where each
#: tile image was drawn (``drawImage`` on the canvas) and the figure's data-to-screen
#: mapping at the end of that paint (what the markers and axes of the paint used).
_PAINT_RECORDER = """
(() => {
  const draws = [];
  window.__mapPaints = [];
  const drawImage = CanvasRenderingContext2D.prototype.drawImage;
  CanvasRenderingContext2D.prototype.drawImage = function (img, ...args) {
    if (img instanceof HTMLImageElement && img.src.includes('/tiles/') && args.length === 4) {
      draws.push([img.src, ...args]);
    }
    return drawImage.call(this, img, ...args);
  };
  let bokeh;
  Object.defineProperty(window, 'Bokeh', {configurable: true, get: () => bokeh, set(value) {
    bokeh = value;
    const view = value.Models.get('Plot').prototype.default_view.prototype;
    const paint = view._actual_paint;
    view._actual_paint = function () {
      draws.length = 0;
      paint.call(this);
      const xs = this.frame.x_scale, ys = this.frame.y_scale, box = this.frame.bbox;
      window.__mapPaints.push({draws: draws.splice(0), x: [xs.compute(0), xs.compute(1)],
                               y: [ys.compute(0), ys.compute(1)], frame: [box.width, box.height]});
    };
  }});
})();
"""

_TILE_URL = re.compile(r"/tiles/([\w-]+)/(\d+)/(\d+)/(\d+)\.png")


def _misdrawn_tiles(paints: list[dict], tile: int, max_level: int) -> list[str]:
    """Tile draws whose screen rectangle is not their tile's extent under the paint's mapping.

    A TMS tile ``(z, x, y)`` covers map ``[x, x + 1) * s`` by ``[y, y + 1) * s`` with
    ``s = tile * 2**(max_level - z)`` mosaic pixels (:mod:`pipeline.viewer.pyramid`).
    """
    bad = []
    for k, paint in enumerate(paints):
        (ax0, ax1), (ay0, ay1) = paint["x"], paint["y"]
        for url, dx, dy, dw, dh in paint["draws"]:
            layer, z, tx, ty = _TILE_URL.search(url).groups()
            size = tile * 2 ** (max_level - int(z))
            x0, x1 = int(tx) * size, (int(tx) + 1) * size
            y0, y1 = int(ty) * size, (int(ty) + 1) * size
            want = np.array([ax0 + (ax1 - ax0) * x0, ay0 + (ay1 - ay0) * y1,  # left, top (y flips)
                             (ax1 - ax0) * (x1 - x0), (ay1 - ay0) * (y0 - y1)])  # width, height
            # Bokeh draws a tile at exactly its mapped extent: half a screen pixel is all rounding allows.
            if np.abs(np.array([dx, dy, dw, dh]) - want).max() > 0.5:
                bad.append(f"paint {k} (frame {paint['frame']}): {layer} {z}/{tx}/{ty} drawn at "
                           f"{np.round([dx, dy, dw, dh], 1).tolist()}, its extent is at {np.round(want, 1).tolist()}")
    return bad


def _deep_rect(driver, css: str) -> dict | None:
    """``getBoundingClientRect`` of the first element matching ``css``, shadow DOMs included."""
    return driver.execute_script(_FIND_DEEP + """
        if (!el) return null;
        const r = el.getBoundingClientRect();
        return {left: r.left, top: r.top, right: r.right, bottom: r.bottom,
                width: window.innerWidth, height: window.innerHeight};""", css)


def _in_window(rect: dict | None) -> bool:
    return rect is not None and rect["top"] >= 0 and rect["left"] >= 0 and \
        rect["bottom"] <= rect["height"] and rect["right"] <= rect["width"]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_first_paint_legend_and_details_in_the_window(scene_dir):
    """In a window of 1400 x 900: every paint draws the tiles where the markers and axes put their
    extent (from the first paint on, and on the first paint after each window resize,
    the frame a one-shot screenshot captures); the legend shows each class layer's
    colour; a clicked object's row is in the window without scrolling."""
    driver = _browser()
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _PAINT_RECORDER})
    pyramid, page = prepare(Location(scene_dir), echo=lambda *_: None)
    server = MapServer(pyramid, page, port=0).start()
    grid = pyramid.grid
    paints = lambda: driver.execute_script("return window.__mapPaints")  # noqa: E731

    def drawn(since: int = 0) -> set[str]:  # layers drawn by the paints since the one numbered `since`
        return {_TILE_URL.search(d[0]).group(1) for p in paints()[since:] for d in p["draws"]}

    try:
        driver.get(server.url)
        _wait(lambda: {"bands", "segmentation"} <= drawn(), 60, "a paint with tiles of both layers shown")
        # The window sizes change: the first paint at each new size draws the tiles right.
        for size in ((1400, 760), (1150, 900), WINDOW):
            before = len(paints())
            driver.set_window_size(*size)
            _wait(lambda: {"bands", "segmentation"} <= drawn(before), 30, f"a paint at {size}")
            time.sleep(0.3)  # and the paints that follow it
        everything = paints()
        assert sum(len(p["draws"]) for p in everything) > 0
        bad = _misdrawn_tiles(everything, grid.tile, grid.max_level)
        assert not bad, "\n".join(bad[:8])
        last = everything[-1]
        x_scale, y_scale = last["x"][1] - last["x"][0], last["y"][0] - last["y"][1]
        assert x_scale == pytest.approx(y_scale, rel=1e-6), "mosaic pixels are not square on screen"

        # The legend: one entry per class layer, in the class image's colour (ramp from
        # black) and, but for background, the marker's; in the window.
        assert _in_window(_deep_rect(driver, ".mv-legend"))
        entries = driver.execute_script(_FIND_DEEP + """
            return Array.from(el.querySelectorAll('tr[data-layer]')).map((tr) => {
              const ring = tr.querySelector('.mv-ring');
              return [tr.dataset.layer, getComputedStyle(tr.querySelector('.mv-ramp')).backgroundImage,
                      ring ? getComputedStyle(ring).borderTopColor : null];
            });""", ".mv-legend")
        paper = {"spheroid": "rgb(255, 0, 0)", "disk": "rgb(0, 0, 255)", "irregular": "rgb(0, 255, 0)",
                 "point_source": "rgb(255, 255, 0)", "background": "rgb(255, 255, 255)"}  # paper section 6
        assert [layer for layer, _, _ in entries] == list(CLASSES)
        for layer, ramp, ring in entries:
            assert ramp == f"linear-gradient(to right, rgb(0, 0, 0), {paper[layer]})"
            assert ring == (None if layer == "background" else paper[layer])

        # Click the brightest object: its row is in the window, the page does not scroll.
        offset, scale = _screen_to_pixel(driver)
        mx, my, name = driver.execute_script("const s = Bokeh.documents[0].get_model_by_name('catalog').data;"
                                             "return [s.mx[0], s.my[0], s.name[0]]")
        _move(driver, *((np.array([mx, my]) - 0.5 - offset) / scale), click=True)
        _wait(lambda: f'data-column="id">{name}<' in driver.execute_script(
            "return Bokeh.documents[0].get_model_by_name('row').text"), 10, "the clicked object's row")
        rect = _wait(lambda: _deep_rect(driver, ".mv-table"), 10, "the row on the page")
        assert _in_window(rect), rect
        assert driver.execute_script("const e = document.scrollingElement;"
                                     "return e.scrollHeight <= e.clientHeight && e.scrollTop === 0")
    finally:
        driver.quit()
        server.stop()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_network_check_counts_what_leaves_the_machine_not_the_browsers_own_loads(card_dir):
    driver = _browser()
    pyramid, page = prepare(Location(card_dir), echo=lambda *_: None)
    server = MapServer(pyramid, page, port=0).start()
    try:
        # The browser's own pages load chrome:// resources (some fail when a page is left
        # half loaded): none of it counts.
        driver.get("chrome://version")
        driver.get("chrome://new-tab-page")
        driver.get(server.url)
        _wait(lambda: driver.execute_script("return window.Bokeh && Bokeh.documents.length > 0"), 60, "the page")
        _wait(lambda: _loaded_tiles(driver, "bands") >= 1, 60, "a tile")
        traffic = _network(driver, server.url)
        assert not traffic.external and not traffic.bad, (traffic.external, traffic.bad)
        assert any("/tiles/bands/0/0/0.png" in url for url in traffic.ours), traffic.ours
        # ... but the page loading anything from the internet, or a failed request to our
        # server, does.
        internet = ["https://cdn.example.invalid/bokeh.min.js", "http://192.0.2.1/tile.png"]
        driver.execute_script("fetch(arguments[0]).catch(() => null); (new Image()).src = arguments[1];"
                              "fetch(arguments[2]).catch(() => null)", *internet, server.url + "tiles/none/0/0/0.png")
        found = Traffic()

        def seen():
            more = _network(driver, server.url)
            found.external += more.external
            found.bad += more.bad
            return len(found.external) >= 2 and found.bad

        _wait(seen, 30, "the requests")
        assert sorted(found.external) == sorted(internet)
        assert found.bad == [f"{server.url}tiles/none/0/0/0.png: HTTP 404"]
    finally:
        driver.quit()
        server.stop()


def test_a_rebuilt_pyramid_does_not_follow_links_out_of_its_folder(tmp_path):
    run_dir = card_run(tmp_path / "run")
    build_pyramid(run_dir, echo=lambda *_: None)
    outside = tmp_path / "outside"
    (outside / "0").mkdir(parents=True)
    (outside / "0" / "0.png").write_bytes(b"not a tile")
    (run_dir / "viewer" / "tiles" / "linked").symlink_to(outside)
    (run_dir / "viewer" / "work").symlink_to(outside)
    pyramid = build_pyramid(run_dir, echo=lambda *_: None, rebuild=True)
    assert not pyramid.reused and (run_dir / "viewer" / "tiles" / "compact" / "0" / "0" / "0.png").is_file()
    assert not os.path.lexists(run_dir / "viewer" / "tiles" / "linked")
    assert (outside / "0" / "0.png").read_bytes() == b"not a tile"


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["view", *argv])


@pytest.mark.slow
def test_export_of_a_classified_run(classified_dir, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(_args("--run-dir", str(classified_dir), "--export", str(site))) == 0
    out = capsys.readouterr().out
    assert str(site) in out
    html = (site / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from the internet
    for url in re.findall(r"(?:src|href)=\"\./([^\"]+)\"", html):
        assert (site / url).is_file(), url
    record = json.loads((classified_dir / "viewer" / "pyramid.json").read_text())
    assert record["complete"] and (site / "tiles" / "bands" / "0" / "0" / "0.png").is_file()
    n = len(Table.read(classified_dir / "catalog" / "catalog.parquet"))
    assert f"({n} catalog objects)" in out


def _chunk_file(run_dir: Path, array: str = "mean") -> tuple[Path, str]:
    """A chunk file of an array of ``classification.zarr`` in the middle of the image, and its chunk index."""
    files = sorted(p for p in (run_dir / "classification.zarr" / array / "c").rglob("*") if p.is_file())
    chunk = files[len(files) // 2]
    index = tuple(int(part) for part in chunk.relative_to(run_dir / "classification.zarr" / array / "c").parts)
    return chunk, str(index)


@pytest.mark.slow
def test_a_deleted_chunk_of_the_classification_is_named_not_drawn(classified_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(classified_dir, run_dir, ignore=shutil.ignore_patterns("viewer"))
    chunk, index = _chunk_file(run_dir)
    chunk.unlink()  # zarr would read the missing chunk as its fill value: class images of 0
    site = tmp_path / "site"
    assert main(_args("--run-dir", str(run_dir), "--export", str(site))) == 2
    err = capsys.readouterr().err
    assert f"'mean' chunk {index}" in err and f"{chunk} is missing" in err, err
    assert not site.exists() and not (run_dir / "viewer").exists()


@pytest.mark.slow
def test_a_corrupted_chunk_is_refused_before_the_pyramid_is_replaced(classified_dir, tmp_path, capsys):
    """A chunk of the same size with other bytes (it still decodes, to other values) is named
    when the map would be drawn from it; the map drawn before it was damaged stays."""
    import zarr

    run_dir = tmp_path / "run"
    shutil.copytree(classified_dir, run_dir, ignore=shutil.ignore_patterns("viewer"))
    site = tmp_path / "site"
    assert main(_args("--run-dir", str(run_dir), "--export", str(site))) == 0
    capsys.readouterr()
    good = zarr.open_group(str(run_dir / "classification.zarr"), mode="r")["mean"][:]
    chunk, index = _chunk_file(run_dir)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x40
    chunk.write_bytes(bytes(data))
    assert (zarr.open_group(str(run_dir / "classification.zarr"), mode="r")["mean"][:] != good).any()
    record = (run_dir / "viewer" / "pyramid.json").read_bytes()
    exported = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    assert main(_args("--run-dir", str(run_dir), "--export", str(site), "--rebuild")) == 2
    err = capsys.readouterr().err
    assert f"'mean' chunk {index}" in err and f"{chunk} does not match its recorded" in err, err
    assert (run_dir / "viewer" / "pyramid.json").read_bytes() == record  # not removed
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == exported
    # Without --rebuild the map drawn from the verified store is reused: nothing is read again.
    assert main(_args("--run-dir", str(run_dir), "--export", str(site))) == 0


_LEGEND_ENTRY = re.compile(r'<tr data-layer="([^"]+)" data-class="([^"]+)" data-colour="(#[0-9a-f]{6})" '
                           r'data-marker="(#[0-9a-f]{6}|)">')


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
        c = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)
        z = pyramid.grid.max_level
        pixels = np.concatenate([np.asarray(Image.open(path).convert("RGBA")).reshape(-1, 4)
                                 for path in sorted((run_dir / "viewer" / "tiles" / layer / str(z)).rglob("*.png"))])
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
        "H, J, V colour composite (asinh)", "morphological colour (section 6)", "spheroid (p)", "disk (p)",
        "irregular (p)", "point source (p)", "background (p)", "segmentation outlines (deblended objects)", "coverage"]
    assert models["class-filter"]["labels"] == ["spheroid", "disk", "irregular", "point source"]
    assert models["CategoricalColorMapper"] == {"factors": list(CLASSES),
                                                "palette": ["#ff0000", "#0000ff", "#00ff00", "#ffff00", "#ffffff"]}
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
    assert models["CategoricalColorMapper"] == {"factors": list(CARD_CLASSES),
                                                "palette": ["#ff8000", "#00a0ff", "#ffffff"]}
    legend = _check_legend(card_dir, pyramid, models)  # the run's palette, as its tiles
    assert [(name, colour, marker) for _, name, colour, marker in legend] == [
        ("compact", "#ff8000", "#ff8000"), ("extended", "#00a0ff", "#00a0ff"), ("background", "#ffffff", "")]
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


def test_value_added_catalogs_show_their_input_ids(scene_dir, tmp_path):
    from pipeline.downstream.driver import run_downstream
    from pipeline.rundir.layout import RunLayout
    from pipeline.settings import DownstreamSettings
    from pipeline.viewer.catalog import map_catalog

    copy = tmp_path / "run"
    shutil.copytree(scene_dir, copy, ignore=shutil.ignore_patterns("viewer"))
    internal = Table.read(scene_dir / "catalog" / "catalog.parquet")
    markers = Table({"id": [f"src-{i}" for i in range(5)], "ra": internal["ra"][:5], "dec": internal["dec"][:5]})
    markers.write(tmp_path / "markers.csv")
    run_downstream(copy, DownstreamSettings(markers=str(tmp_path / "markers.csv")), echo=lambda *_: None)
    shown = map_catalog(RunLayout(Location(copy)), _wcs(copy), ["H", "J", "V", "Z"], "H")
    assert sorted(shown["data"]["name"]) == [f"src-{i}" for i in range(5)]
    assert [c for c, _ in shown["columns"]][:3] == ["source_id", "object_id", "ra_input"]


def test_bad_run_directory_exits_2_naming_it(tmp_path, capsys):
    assert main(_args("--run-dir", str(tmp_path / "nothing"))) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nothing") in err and "manifest.json" in err


def test_view_command_and_help():
    assert view_command("runs/demo") == "python -m pipeline view --run-dir runs/demo"
    assert view_command("s3://b/run", {"endpoint_url": "http://h:9000"}) == \
        "python -m pipeline view --run-dir s3://b/run --storage-option endpoint_url=http://h:9000"
    args = _args("--run-dir", "s3://bucket/run", "--port", "0")
    assert args.run_dir == "s3://bucket/run" and args.host == "127.0.0.1" and args.export is None


@pytest.mark.slow
def test_run_directory_in_an_object_store(scene_dir, request, tmp_path, capsys):
    """A run in S3 (a local moto server): the pyramid is built into the bucket, served from it and exported."""
    import urllib.request

    s3_url = request.getfixturevalue("endpoint")  # the moto server of tests/pipeline/test_s3.py
    url = f"s3://{BUCKET}/view-run"
    store = Location(url, {"endpoint_url": s3_url})
    store.fs.put(str(scene_dir) + "/", store._key, recursive=True)
    (store / "viewer").remove(recursive=True)
    site = tmp_path / "site"
    args = _args("--run-dir", url, "--storage-option", f"endpoint_url={s3_url}", "--export", str(site))
    assert main(args) == 0, capsys.readouterr().err
    assert (store / "viewer" / "pyramid.json").read_json()["complete"]
    assert (site / "tiles" / "bands" / "0" / "0" / "0.png").is_file() and (site / "index.html").is_file()
    pyramid, page = prepare(store, echo=lambda *_: None)
    assert pyramid.reused
    server = MapServer(pyramid, page, port=0).start()
    try:
        with urllib.request.urlopen(server.url + "tiles/bands/1/0/0.png") as response:
            assert response.status == 200 and response.read() == (site / "tiles/bands/1/0/0.png").read_bytes()
    finally:
        server.stop()

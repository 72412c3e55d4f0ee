"""A headless Chromium for the map's tests, and what to read of the page it shows.

:func:`browser` drives Chromium from the distribution's packages (``/usr/bin/chromium``
and ``/usr/bin/chromedriver``, ``apt-get install chromium chromium-driver``) through
Selenium; ``.ci/run`` installs them. Elsewhere a missing browser skips the test with the
reason (``pytest -ra`` prints it), except under ``CI`` where it fails. The other helpers
read the page (its Bokeh models, the readout, elements inside shadow DOMs), its
requests (:class:`Traffic`) and its paints (:data:`PAINT_RECORDER`).
"""

from __future__ import annotations

import functools
import http.server
import ipaddress
import json
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1400, 900)


def browser():
    """A headless Chromium (Selenium), or a skip naming what is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        reason = (
            f"headless browser test needs {', '.join(missing)}: apt-get install chromium chromium-driver "
            "(.ci/run installs them)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
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


def browser_internal(entry: dict) -> bool:
    """Whether a console entry of the browser log comes from the browser's own pages, not the map's."""
    return entry.get("message", "").startswith(
        ("chrome://", "chrome-untrusted://", "chrome-extension://", "devtools://")
    )


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


def network(driver, own: str) -> Traffic:
    """The page's requests since the last call (``own``: our server's URL)."""
    return _traffic([json.loads(entry["message"])["message"] for entry in driver.get_log("performance")], own)


def loaded_tiles(driver, layer: str) -> int:
    return driver.execute_script(
        "const r = Bokeh.documents[0].get_model_by_name('layer-' + arguments[0]);"
        "return Array.from(r.tile_source.tiles.values()).filter((t) => t.loaded).length;",
        layer,
    )


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def move(driver, x: float, y: float, click: bool = False) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(int(round(x)), int(round(y)))
    if click:
        actions.pointer_action.click()
    actions.perform()
    ActionChains(driver).pause(0.2).perform()


_READOUT = re.compile(r"pixel x = (-?[\d.]+), y = (-?[\d.]+).*RA = ([\d.]+)\u00b0, Dec = (-?[\d.]+)\u00b0", re.S)


def readout(driver) -> tuple[float, float, float, float]:
    """The readout's pixel x, y and RA, Dec as the page shows them."""
    text = driver.execute_script("return Bokeh.documents[0].get_model_by_name('readout').text")
    match = _READOUT.search(text)
    assert match, text
    return tuple(float(v) for v in match.groups())


def screen_to_pixel(driver) -> tuple[np.ndarray, np.ndarray]:
    """The linear map from viewport to astropy pixel coordinates, from the readout at two points."""
    a, b = np.array([500.0, 300.0]), np.array([900.0, 600.0])  # inside the map, between the side columns
    move(driver, *a)
    pa = np.array(readout(driver)[:2])
    move(driver, *b)
    pb = np.array(readout(driver)[:2])
    scale = (pb - pa) / (b - a)  # data pixels per screen pixel, per axis (y flips)
    assert scale[0] > 0 and scale[1] < 0 and np.isclose(scale[0], -scale[1], rtol=0.02)
    return pa - scale * a, scale


#: Script lines that set ``el`` to the first element matching ``arguments[0]`` anywhere,
#: shadow DOMs included (Bokeh's widgets live in shadow roots).
FIND_DEEP = """
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


def deep_text(driver, css: str) -> str:
    """Text of the first element matching ``css`` anywhere, shadow DOMs included (Bokeh's widgets)."""
    return driver.execute_script(FIND_DEEP + "return el ? el.textContent : '';", css)


def static_server(site: Path) -> http.server.ThreadingHTTPServer:
    """A plain static web server (what any static host does) for an exported site."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


#: Installed before the page's own scripts: records, for every paint of the map, where each
#: tile image was drawn (``drawImage`` on the canvas) and the figure's data-to-screen
#: mapping at the end of that paint (what the markers and axes of the paint used).
PAINT_RECORDER = """
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

TILE_URL = re.compile(r"/tiles/([\w-]+)/(\d+)/(\d+)/(\d+)\.png")


def misdrawn_tiles(paints: list[dict], tile: int, max_level: int) -> list[str]:
    """Tile draws whose screen rectangle is not their tile's extent under the paint's mapping.

    A TMS tile ``(z, x, y)`` covers map ``[x, x + 1) * s`` by ``[y, y + 1) * s`` with
    ``s = tile * 2**(max_level - z)`` mosaic pixels (:mod:`pipeline.viewer.pyramid`).
    """
    bad = []
    for k, paint in enumerate(paints):
        (ax0, ax1), (ay0, ay1) = paint["x"], paint["y"]
        for url, dx, dy, dw, dh in paint["draws"]:
            layer, z, tx, ty = TILE_URL.search(url).groups()
            size = tile * 2 ** (max_level - int(z))
            x0, x1 = int(tx) * size, (int(tx) + 1) * size
            y0, y1 = int(ty) * size, (int(ty) + 1) * size
            want = np.array(
                [
                    ax0 + (ax1 - ax0) * x0,
                    ay0 + (ay1 - ay0) * y1,  # left, top (y flips)
                    (ax1 - ax0) * (x1 - x0),
                    (ay1 - ay0) * (y0 - y1),
                ]
            )  # width, height
            # Bokeh draws a tile at exactly its mapped extent: half a screen pixel is all rounding allows.
            if np.abs(np.array([dx, dy, dw, dh]) - want).max() > 0.5:
                bad.append(
                    f"paint {k} (frame {paint['frame']}): {layer} {z}/{tx}/{ty} drawn at "
                    f"{np.round([dx, dy, dw, dh], 1).tolist()}, its extent is at {np.round(want, 1).tolist()}"
                )
    return bad


def deep_rect(driver, css: str) -> dict | None:
    """``getBoundingClientRect`` of the first element matching ``css``, shadow DOMs included."""
    return driver.execute_script(
        FIND_DEEP
        + """
        if (!el) return null;
        const r = el.getBoundingClientRect();
        return {left: r.left, top: r.top, right: r.right, bottom: r.bottom,
                width: window.innerWidth, height: window.innerHeight};""",
        css,
    )


def in_window(rect: dict | None) -> bool:
    return (
        rect is not None
        and rect["top"] >= 0
        and rect["left"] >= 0
        and rect["bottom"] <= rect["height"]
        and rect["right"] <= rect["width"]
    )

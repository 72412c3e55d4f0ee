/* Morpheus map: the page's own script (pipeline/viewer/page.py writes the page).
 *
 * BokehJS draws the map, its tile layers, markers, widgets and scale bar; this script
 * adds what BokehJS has no model for:
 *   - the tile grid of the mosaic: BokehJS's TMS tile source asks for every tile of a
 *     square world; tiles outside the mosaic do not exist, so they are not requested
 *     (TMSTileSource.is_valid_tile, a public method of BokehJS's MercatorTileSource);
 *   - sky coordinates: the mosaic's WCS as a TAN projection plus a correction grid
 *     (pipeline/viewer/sky_readout.py computes it and checks it against astropy);
 *   - the map's aspect (MV.fit): square mosaic pixels, set in one place for all layers,
 *     markers and axes (BokehJS's tile renderer would adjust the shared ranges once per
 *     layer);
 *   - the catalog: thinning to the brightest objects in view, the filter by dominant
 *     class (the run's classes, config.classes: the released five or a model card's),
 *     the tapped object's row, search by id and by RA/Dec.
 * Map coordinates are mosaic pixels with pixel i spanning [i, i + 1); astropy's
 * 0-based pixel coordinate is the map coordinate minus 0.5.
 */
(function () {
  "use strict";

  const MV = {config: null};
  const D2R = Math.PI / 180;

  MV.configure = function (config) {
    MV.config = config;
    const TMS = Bokeh.Models.get("TMSTileSource");
    const valid = TMS.prototype.is_valid_tile;
    TMS.prototype.is_valid_tile = function (x, y, z) {
      const counts = MV.config.tiles[z];  // [rows, columns] of tiles holding mosaic pixels
      if (counts == null || x < 0 || y < 0 || y >= counts[0] || x >= counts[1]) {
        return false;
      }
      return valid.call(this, x, y, z);
    };
    // Prefetching asks for the children of the tiles in view without checking them.
    const children = TMS.prototype.children_by_tile_xyz;
    TMS.prototype.children_by_tile_xyz = function (x, y, z) {
      return children.call(this, x, y, z).filter(([cx, cy, cz]) => this.is_valid_tile(cx, cy, cz));
    };
    // The map's aspect has one owner, MV.fit. BokehJS's tile renderer adjusts the
    // figure's shared ranges itself while it paints, each layer on its own: its first
    // paint snaps them (and moves the reset tool's view), and each visible layer that
    // sees a new frame size rescales them from the ranges that the layer painted before
    // it has already rescaled. With two layers shown, a change of the frame's height by
    // a factor f scaled the y range by f twice in one paint: the first layer was drawn
    // after one rescale, the other layers, the markers and the axes after two, so the
    // image stood a factor f off its outlines and markers until the next repaint (in a
    // screenshot taken on that paint), and the pixels were no longer square until the
    // figure's size change was seen (MV.square).
    const TileView = Bokeh.Models.get("TileRenderer").prototype.default_view.prototype;
    TileView._map_data = TileView._enforce_aspect_ratio = function () {
      const {width, height} = this.plot_view.frame.bbox;
      MV.fit(this.plot_model, width, height);
    };
  };

  // -- sky coordinates ---------------------------------------------------------------
  function tanSky(s, px, py) {
    const u = px + 1 - s.crpix[0], v = py + 1 - s.crpix[1];
    const x = s.cd[0][0] * u + s.cd[0][1] * v, y = s.cd[1][0] * u + s.cd[1][1] * v;
    const phi = Math.atan2(x, -y), theta = Math.atan2(180 / Math.PI, Math.hypot(x, y));
    const ap = s.crval[0] * D2R, dp = s.crval[1] * D2R, dphi = phi - s.lonpole * D2R;
    const sinDelta = Math.sin(theta) * Math.sin(dp) + Math.cos(theta) * Math.cos(dp) * Math.cos(dphi);
    const alpha = ap + Math.atan2(-Math.cos(theta) * Math.sin(dphi),
      Math.sin(theta) * Math.cos(dp) - Math.cos(theta) * Math.sin(dp) * Math.cos(dphi));
    const ra = ((alpha / D2R) % 360 + 360) % 360;
    return [ra, Math.asin(Math.max(-1, Math.min(1, sinDelta))) / D2R];
  }

  function correction(g, px, py) {
    const fx = Math.max(0, Math.min(g.nx - 1, (px - g.x0) / g.step));
    const fy = Math.max(0, Math.min(g.ny - 1, (py - g.y0) / g.step));
    const i = g.nx > 1 ? Math.min(Math.floor(fx), g.nx - 2) : 0;
    const j = g.ny > 1 ? Math.min(Math.floor(fy), g.ny - 2) : 0;
    const tx = fx - i, ty = fy - j;
    const i1 = Math.min(i + 1, g.nx - 1), j1 = Math.min(j + 1, g.ny - 1);
    const at = (d, jj, ii) => d[jj * g.nx + ii];
    return ["dra", "ddec"].map((k) => {
      const d = g[k];
      return (at(d, j, i) * (1 - tx) + at(d, j, i1) * tx) * (1 - ty) + (at(d, j1, i) * (1 - tx) + at(d, j1, i1) * tx) * ty;
    });
  }

  /** RA, Dec (deg) of an astropy (0-based) pixel coordinate. */
  MV.pixelToSky = function (px, py) {
    const s = MV.config.sky;
    const [ra, dec] = tanSky(s, px, py);
    const [dra, ddec] = correction(s.grid, px, py);
    return [((ra + dra) % 360 + 360) % 360, dec + ddec];
  };

  function tanPixel(s, ra, dec) {
    const a = ra * D2R, d = dec * D2R, ap = s.crval[0] * D2R, dp = s.crval[1] * D2R;
    const phi = s.lonpole * D2R + Math.atan2(-Math.cos(d) * Math.sin(a - ap),
      Math.sin(d) * Math.cos(dp) - Math.cos(d) * Math.sin(dp) * Math.cos(a - ap));
    const theta = Math.asin(Math.sin(d) * Math.sin(dp) + Math.cos(d) * Math.cos(dp) * Math.cos(a - ap));
    const r = (180 / Math.PI) / Math.tan(theta);
    const x = r * Math.sin(phi), y = -r * Math.cos(phi);
    const [[a11, a12], [a21, a22]] = s.cd, det = a11 * a22 - a12 * a21;
    return [(a22 * x - a12 * y) / det + s.crpix[0] - 1, (-a21 * x + a11 * y) / det + s.crpix[1] - 1];
  }

  /** Astropy (0-based) pixel coordinate of RA, Dec (deg): the TAN inverse refined on the full model. */
  MV.skyToPixel = function (ra, dec) {
    const s = MV.config.sky;
    let [px, py] = tanPixel(s, ra, dec);
    const [tx, ty] = [px, py];
    for (let k = 0; k < 5; k++) {
      const [r, d] = MV.pixelToSky(px, py);
      const [qx, qy] = tanPixel(s, r, d);
      px += tx - qx;
      py += ty - qy;
    }
    return [px, py];
  };

  function sexagesimal(value, hours) {
    const sign = value < 0 ? "-" : (hours ? "" : "+");
    let v = Math.abs(value) / (hours ? 15 : 1);
    const a = Math.floor(v);
    v = (v - a) * 60;
    const b = Math.floor(v);
    const c = (v - b) * 60;
    const pad = (n, w, f) => n.toFixed(f).padStart(w, "0");
    return hours ? `${pad(a, 2, 0)}h${pad(b, 2, 0)}m${pad(c, 6, 3)}s` : `${sign}${pad(a, 2, 0)}\u00b0${pad(b, 2, 0)}'${pad(c, 5, 2)}"`;
  }

  /** The cursor's pixel and sky coordinates (map coordinates x, y). */
  MV.readout = function (x, y, div) {
    if (!isFinite(x) || !isFinite(y)) {
      return;
    }
    const px = x - 0.5, py = y - 0.5;
    const [ra, dec] = MV.pixelToSky(px, py);
    div.text = `<span class="mv-pix">pixel x = ${px.toFixed(3)}, y = ${py.toFixed(3)}</span><br>` +
      `<span class="mv-sky">RA = ${ra.toFixed(8)}\u00b0, Dec = ${dec.toFixed(8)}\u00b0</span><br>` +
      `<span class="mv-sex">${sexagesimal(ra, true)} ${sexagesimal(dec, false)}</span>`;
  };

  // What MV.fit did to each figure: the frame size and the ranges it left last, whether
  // they showed the whole mosaic, and its first ranges (the reset tool's view).
  const fitted = new WeakMap();

  /** Square mosaic pixels on a frame of width x height screen pixels: the one place that sets the map's aspect.
   *
   * Until the view is panned or zoomed, and after the reset tool, it shows the whole
   * mosaic, centred, whatever the frame's size (layout changes while the page loads,
   * window resizes). Otherwise a new frame size keeps each axis's scale (a larger
   * window shows more around the same centre), and the axis with the finer scale widens
   * to the other's, so the view shows at least what was asked for (a box zoom).
   * Idempotent: each tile layer calls it before it draws (the first to see a new size
   * adjusts the ranges; the other layers, the markers and the axes are drawn with the
   * same ones), and so does a change of the figure's inner size (when no tile layer is
   * shown).
   */
  MV.fit = function (fig, width, height) {
    const w = Math.round(width), h = Math.round(height);
    const xr = fig.x_range, yr = fig.y_range;
    const now = [xr.start, xr.end, yr.start, yr.end];
    if (!(w > 0 && h > 0) || !now.every(isFinite)) {
      return;
    }
    const last = fitted.get(fig);
    const same = (ranges) => ranges.every((v, k) => v === now[k]);
    const whole = last == null || (last.whole && same(last.ranges)) || same(last.home);
    let scale, xc, yc;
    if (whole) {
      const [ny, nx] = MV.config.shape;
      scale = Math.max(nx / w, ny / h);
      [xc, yc] = [nx / 2, ny / 2];
    } else {
      const [lw, lh] = [last.width, last.height];  // the scale the ranges had on the last frame
      scale = Math.max((now[1] - now[0]) / lw, (now[3] - now[2]) / lh);
      [xc, yc] = [(now[0] + now[1]) / 2, (now[2] + now[3]) / 2];
    }
    const want = [xc - scale * w / 2, xc + scale * w / 2, yc - scale * h / 2, yc + scale * h / 2];
    const off = (k) => Math.abs(want[k] - now[k]) > 1e-9 * scale * (w + h);
    if (off(0) || off(1)) {
      xr.setv({start: want[0], end: want[1]});
    }
    if (off(2) || off(3)) {
      yr.setv({start: want[2], end: want[3]});
    }
    const ranges = [xr.start, xr.end, yr.start, yr.end];
    fitted.set(fig, {width: w, height: h, whole, ranges, home: last == null ? ranges : last.home});
  };

  /** Square mosaic pixels after a change of the figure's inner size (layout, window resize). */
  MV.square = function (fig) {
    MV.fit(fig, fig.inner_width, fig.inner_height);
  };

  // -- catalog -------------------------------------------------------------------------
  let thinTimer = null;

  /** Markers in view, brightest first (the rows are sorted by flux), at most maxMarkers. */
  MV.thin = function (source, filter, classes, fig) {
    if (thinTimer != null) {
      clearTimeout(thinTimer);
    }
    thinTimer = setTimeout(() => {
      thinTimer = null;
      const data = source.data, n = data.mx.length;
      const enabled = new Set(classes.active.map((k) => MV.config.classes[k]));
      const x0 = fig.x_range.start, x1 = fig.x_range.end, y0 = fig.y_range.start, y1 = fig.y_range.end;
      const out = [];
      for (let i = 0; i < n && out.length < MV.config.maxMarkers; i++) {
        const mx = data.mx[i], my = data.my[i];
        if (mx >= x0 && mx <= x1 && my >= y0 && my <= y1 && enabled.has(data.dominant_class[i])) {
          out.push(i);
        }
      }
      for (const i of source.selected.indices) {
        if (!out.includes(i)) {
          out.push(i);
        }
      }
      filter.indices = out;
    }, 30);
  };

  function formatValue(name, value) {
    if (typeof value === "string") {
      return value === "" ? "\u2014" : value;
    }
    if (value == null || !isFinite(value)) {
      return "\u2014";
    }
    if (/^(ra|dec)/.test(name)) {
      return value.toFixed(7);
    }
    if (Number.isInteger(value)) {
      return String(value);
    }
    return Math.abs(value) >= 1e4 || Math.abs(value) < 1e-3 ? value.toExponential(4) : value.toPrecision(5);
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  }

  /** The selected object's catalog row. */
  MV.showRow = function (source, div) {
    const i = source.selected.indices[0];
    if (i == null) {
      div.text = "click a marker to see its catalog row";
      return;
    }
    const rows = MV.config.columns.map(([name, label]) =>
      `<tr><th>${escapeHtml(label)}</th><td data-column="${escapeHtml(name)}">${escapeHtml(formatValue(name, source.data[name][i]))}</td></tr>`);
    div.text = `<table class="mv-table">${rows.join("")}</table>`;
  };

  function centre(fig, x, y) {
    let w = fig.x_range.end - fig.x_range.start, h = fig.y_range.end - fig.y_range.start;
    const limit = 400;  // zoom in to about 400 pixels across, if further out
    if (w > limit) {
      h *= limit / w;
      w = limit;
    }
    fig.x_range.setv({start: x - w / 2, end: x + w / 2});
    fig.y_range.setv({start: y - h / 2, end: y + h / 2});
  }

  function select(source, target, fig, i) {
    source.selected.indices = [i];
    target.data = {mx: [source.data.mx[i]], my: [source.data.my[i]]};
    centre(fig, source.data.mx[i], source.data.my[i]);
  }

  /** Centre the map on the object with this id (input id for value-added catalogs). */
  MV.findId = function (value, source, target, fig, div) {
    const key = String(value).trim();
    if (key === "") {
      return;
    }
    const i = source.data.name.indexOf(key);
    if (i < 0) {
      div.text = `no object with id ${escapeHtml(key)}`;
      return;
    }
    select(source, target, fig, i);
  };

  function parseAngle(text, hours) {
    const t = text.trim();
    if (/^[-+]?\d+(\.\d*)?$/.test(t)) {
      return parseFloat(t);
    }
    const parts = t.replace(/[hdms:\u00b0'"]/g, " ").trim().split(/\s+/);
    if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[-+]?\d+(\.\d*)?$/.test(p))) {
      return NaN;
    }
    const sign = parts[0].startsWith("-") ? -1 : 1;
    const [a, b, c] = parts.map((p) => Math.abs(parseFloat(p))).concat([0]);
    return sign * (a + b / 60 + c / 3600) * (hours ? 15 : 1);
  }

  /** Centre the map on an RA/Dec ("53.1 -27.8" or "03:32:30 -27:48:00"); select an object within 1". */
  MV.findSky = function (value, source, target, fig, div) {
    const text = String(value).trim();
    if (text === "") {
      return;
    }
    const split = text.split(/[\s,]+/);
    const half = split.length / 2;
    const raText = split.slice(0, Math.max(1, half)).join(" "), decText = split.slice(Math.max(1, half)).join(" ");
    const sexa = /[:hms]/.test(raText) || split.length > 2;
    const ra = parseAngle(raText, sexa), dec = parseAngle(decText, false);
    if (!isFinite(ra) || !isFinite(dec) || Math.abs(dec) > 90) {
      div.text = `cannot read RA Dec from "${escapeHtml(text)}"`;
      return;
    }
    const [px, py] = MV.skyToPixel(ra, dec);
    const x = px + 0.5, y = py + 0.5;
    const radius = Math.max(1 / MV.config.sky.pixel_scale, 3);
    let best = -1, bestD = radius;
    for (let i = 0; i < source.data.mx.length; i++) {
      const d = Math.hypot(source.data.mx[i] - x, source.data.my[i] - y);
      if (d <= bestD) {
        best = i;
        bestD = d;
      }
    }
    target.data = {mx: [x], my: [y]};
    if (best >= 0) {
      source.selected.indices = [best];
    } else {
      source.selected.indices = [];
      div.text = `no object within ${(radius * MV.config.sky.pixel_scale).toFixed(2)}" of RA ${ra.toFixed(6)}, Dec ${dec.toFixed(6)}`;
    }
    centre(fig, x, y);
  };

  window.MorpheusViewer = MV;
})();

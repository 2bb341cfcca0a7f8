// The app's volume viewer: runs in the browser as gr.HTML's js_on_load (Gradio 6), with
// `element` (the component's root), `trigger(name, data)` (an event to Python), `props` (props.value:
// the payload of transmrsr.mpr.Scene.payload) and `watch(prop, fn)`.
//
// Everything a reader does often is local and instant: window/level, zoom, pan, the crosshair's
// own position, overlays, layout and orientation. Only a crosshair or slice move asks the server
// (trigger "cursor") for the planes it changed. Pixels: one voxel = one solid block of device
// pixels (nearest neighbour, no smoothing); zoom steps are whole device pixels per voxel.
const root = element.querySelector(".vv") || element;
const q = (sel) => root.querySelector(sel);
const ctl = (name) => root.querySelector('[data-ctl="' + name + '"]');
const PLANE_ORDER = ["axial", "coronal", "sagittal"];
const CROSS = [64, 224, 64];  // crosshair colour (also read by the tests)
const st = {
  p: null,            // the latest payload's metadata (planes, layers, overlays, windows)
  caseId: null,
  cursor: null,       // [i, j, k] voxel
  center: null,       // [i, j, k] (float voxel) shown at the middle of every panel
  zoom: null,         // device pixels per voxel of the finest spacing: >= 1 whole, < 1 as 1/n; null = fit
  layout: "compare", volume: "sr", plane: "coronal", orient: "radiological", mode: "crosshair",
  wl: [0, 1], overlay: "", opacity: 0.5,
  cache: {},          // layer key -> plane -> Map(tag -> Float32Array), a few tags each
  luts: {},
  cells: [],
  seq: 0,
};

function b64bytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

async function decodeSlice(enc) {
  // inverse of transmrsr.mpr.encode_slice: deflated little-endian uint16 over [lo, hi]
  const stream = new Blob([b64bytes(enc.q)]).stream().pipeThrough(new DecompressionStream("deflate"));
  const buf = await new Response(stream).arrayBuffer();
  const dv = new DataView(buf);
  const n = buf.byteLength / 2;
  const out = new Float32Array(n);
  const k = (enc.hi - enc.lo) / 65535;
  for (let i = 0; i < n; i++) out[i] = enc.lo + dv.getUint16(2 * i, true) * k;
  return out;
}

function layerOf(key) {
  const p = st.p;
  return p.layers.find((l) => l.key === key) || p.overlays.find((o) => o.key === key);
}

function sliceData(key, plane) {
  const m = (st.cache[key] || {})[plane];
  const entry = st.p.slices[key] && st.p.slices[key][plane];
  return m && entry ? m.get(entry.tag) : undefined;
}

function have() {
  const out = {};
  for (const key in st.cache) {
    out[key] = {};
    for (const plane in st.cache[key]) {
      const tags = [...st.cache[key][plane].keys()];
      if (tags.length) out[key][plane] = tags[tags.length - 1];
    }
  }
  return out;
}

let busy = Promise.resolve();
function receive(v) {
  busy = busy.then(() => ingest(v)).catch((e) => console.error("viewer:", e));
}

async function ingest(v) {
  if (!v || !v.layers) {
    st.p = null; st.caseId = null; st.cache = {};
    root.dataset.cursor = "";
    buildCells();
    return;
  }
  const fresh = v.case !== st.caseId;
  if (fresh) {
    st.cache = {}; st.zoom = null; st.center = null; st.overlay = "";
    st.wl = v.windows.auto.slice();
    st.volume = v.layers.some((l) => l.key === st.volume) ? st.volume : "sr";
  }
  const missing = [];
  for (const key in v.slices) {
    for (const plane in v.slices[key]) {
      const e = v.slices[key][plane];
      st.cache[key] = st.cache[key] || {};
      const m = (st.cache[key][plane] = st.cache[key][plane] || new Map());
      if (e.q !== undefined) {
        m.delete(e.tag);
        m.set(e.tag, await decodeSlice(e));
        while (m.size > 4) m.delete(m.keys().next().value);  // a few recent slices per plane, no more
      } else if (!m.has(e.tag)) {
        missing.push(key + "/" + plane);
      }
    }
  }
  for (const name in v.luts) st.luts[name] = b64bytes(v.luts[name]);
  st.p = v; st.caseId = v.case;
  st.cursor = v.cursor.slice();
  if (v.plane) st.plane = v.plane;
  if (fresh) setupControls();
  buildCells();
  st.seq += 1;
  root.dataset.seq = String(st.seq);
  if (missing.length) send(true);  // the browser dropped a slice it claimed: ask for all of them again
}

// ---------------------------------------------------------------------------------- controls
function option(value, text) {
  const o = document.createElement("option");
  o.value = value; o.textContent = text;
  return o;
}

function setupControls() {
  const p = st.p;
  const vol = ctl("volume");
  vol.replaceChildren(...p.layers.map((l) => option(l.key, l.label)));
  vol.value = st.volume;
  const pre = ctl("preset");
  pre.replaceChildren(...Object.keys(p.windows).map((k) => option(k, k)), option("custom", "custom"));
  pre.value = "auto";
  const ov = ctl("overlay");
  ov.replaceChildren(option("", "none"), ...p.overlays.map((o) => option(o.key, o.label)));
  ov.value = st.overlay;
  if (p.overlays.length) st.opacity = p.overlays[0].opacity;
  ctl("opacity").value = String(st.opacity);
  showWindow();
}

function showWindow() {
  const [lo, hi] = st.wl;
  ctl("level").value = String(+((lo + hi) / 2).toPrecision(6));
  ctl("width").value = String(+(hi - lo).toPrecision(6));
  root.dataset.window = lo + "," + hi;
}

function setWindow(lo, hi, preset) {
  if (!(hi > lo)) hi = lo + 1e-6;
  st.wl = [lo, hi];
  ctl("preset").value = preset || "custom";
  showWindow();
  drawAll();
}

root.addEventListener("change", (ev) => {
  const t = ev.target;
  const name = t.dataset && t.dataset.ctl;
  if (!name || !st.p) return;
  if (name === "layout") { st.layout = t.value; buildCells(); }
  else if (name === "volume") { st.volume = t.value; buildCells(); }
  else if (name === "orient") { st.orient = t.value; buildCells(); }
  else if (name === "mode") { st.mode = t.value; }
  else if (name === "preset") { if (st.p.windows[t.value]) setWindow(...st.p.windows[t.value], t.value); }
  else if (name === "level" || name === "width") {
    const c = parseFloat(ctl("level").value), w = parseFloat(ctl("width").value);
    if (isFinite(c) && isFinite(w) && w > 0) setWindow(c - w / 2, c + w / 2);
  } else if (name === "overlay") { st.overlay = t.value; drawAll(); }
});
root.addEventListener("input", (ev) => {
  if (ev.target.dataset && ev.target.dataset.ctl === "opacity") { st.opacity = parseFloat(ev.target.value); drawAll(); }
});
root.addEventListener("click", (ev) => {
  const act = ev.target.closest && ev.target.closest("[data-act]");
  if (!act || !st.p) return;
  const a = act.dataset.act;
  const f = zoomFactor();
  if (a === "zoom-in") st.zoom = f >= 1 ? Math.floor(f) + 1 : 1 / Math.max(1, Math.ceil(1 / f) - 1);
  else if (a === "zoom-out") st.zoom = f > 1 ? Math.ceil(f) - 1 : 1 / (Math.floor(1 / f) + 1);
  else if (a === "fit") { st.zoom = null; st.center = null; }
  else if (a === "one") st.zoom = 1;
  else if (a === "fullscreen") {
    if (document.fullscreenElement) document.exitFullscreen(); else root.requestFullscreen().catch(() => {});
    return;
  }
  drawAll();
});
document.addEventListener("fullscreenchange", () => { if (st.p) buildCells(); });
window.addEventListener("resize", () => { if (st.p) buildCells(); });

// ---------------------------------------------------------------------------------- geometry
function minSpacing() { return Math.min(...st.p.zooms); }
function dpr() { return window.devicePixelRatio || 1; }

function fitFactor() {
  // the largest whole number of device pixels per voxel at which every shown panel fits its canvas
  let f = Infinity;
  for (const c of st.cells) {
    const P = st.p.planes[c.plane];
    const S = c.canvas.width;
    const vox = Math.max(P.w * P.sx, P.h * P.sy) / minSpacing();
    f = Math.min(f, S / vox);
  }
  if (!isFinite(f)) return 1;
  // whole device pixels per voxel when that still fills the panel well (every voxel an equal
  // block); below 2 the exact fit, so that a whole-head volume is not shown at half the panel
  // (the + and 1:1 buttons then give whole-pixel zooms)
  return f >= 2 ? Math.floor(f) : f;
}
function zoomFactor() { return st.zoom || fitFactor(); }

function centerVoxel() { return st.center || st.p.shape.map((n) => (n - 1) / 2); }

function mirrored(P) { return st.orient === "neurological" && P.mirror; }

function geom(plane, S) {
  // device-pixel geometry of one panel: column / row size and where column 0 / row 0 start
  const P = st.p.planes[plane];
  const f = zoomFactor();
  const cw = f * P.sx / minSpacing(), ch = f * P.sy / minSpacing();
  const [ccol, crow] = toScreen(P, centerVoxel());
  return { P, cw, ch, x0: S / 2 - (ccol + 0.5) * cw, y0: S / 2 - (crow + 0.5) * ch };
}

function toScreen(P, v) {
  // voxel (may be fractional) -> [col, row] of the displayed slice (after the neurological mirror)
  let col = P.xflip ? st.p.shape[P.xaxis] - 1 - v[P.xaxis] : v[P.xaxis];
  const row = P.yflip ? st.p.shape[P.yaxis] - 1 - v[P.yaxis] : v[P.yaxis];
  if (mirrored(P)) col = P.w - 1 - col;
  return [col, row];
}

function toVoxel(P, col, row, base) {
  if (mirrored(P)) col = P.w - 1 - col;
  const v = base.slice();
  v[P.xaxis] = P.xflip ? st.p.shape[P.xaxis] - 1 - col : col;
  v[P.yaxis] = P.yflip ? st.p.shape[P.yaxis] - 1 - row : row;
  return v;
}

// ---------------------------------------------------------------------------------- panels
function panelList() {
  if (st.layout === "planes") return PLANE_ORDER.map((plane) => ({ key: st.volume, plane }));
  return st.p.layers.map((l) => ({ key: l.key, plane: st.plane }));
}

function cellSize(n) {
  // the arrangement of n square panels (columns x rows) that makes them largest: as wide as the
  // component, as tall as the window less the toolbar and the colour bars (scrolled into view, or
  // full screen, the panels fill the window)
  const width = q(".vv-grid").clientWidth || root.clientWidth || 800;
  const chrome = q(".vv-bar").offsetHeight + 48;
  const height = Math.max(240, (document.fullscreenElement === root ? screen.height : window.innerHeight) - chrome);
  let best = [1, 0];
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const s = Math.floor(Math.min((width - 6 * (cols - 1)) / cols, (height - 6 * (rows - 1)) / rows));
    if (s > best[1]) best = [cols, s];
  }
  return best;
}

function buildCells() {
  const grid = q(".vv-grid");
  root.classList.toggle("vv-has", !!st.p);
  root.dataset.layout = st.layout;
  root.dataset.orient = st.orient;
  q('[data-show="planes"]').style.display = st.layout === "planes" ? "" : "none";
  if (!st.p) { grid.replaceChildren(); st.cells = []; q(".vv-legend").replaceChildren(); return; }
  const list = panelList();
  const [cols, S] = cellSize(list.length);
  grid.style.gridTemplateColumns = "repeat(" + cols + ", " + S + "px)";
  st.cells = list.map(({ key, plane }) => {
    const cell = document.createElement("div");
    cell.className = "vv-cell";
    cell.dataset.layer = key; cell.dataset.plane = plane;
    const canvas = document.createElement("canvas");
    canvas.style.width = S + "px"; canvas.style.height = S + "px";
    canvas.width = Math.round(S * dpr()); canvas.height = Math.round(S * dpr());
    const title = document.createElement("span");
    title.className = "vv-title";
    cell.append(canvas, title);
    for (const edge of ["left", "right", "top", "bottom"]) {
      const lab = document.createElement("span");
      lab.className = "vv-lab vv-" + edge; lab.dataset.edge = edge;
      cell.append(lab);
    }
    attach(cell, canvas, key, plane);
    return { el: cell, canvas, key, plane, title, off: document.createElement("canvas") };
  });
  grid.replaceChildren(...st.cells.map((c) => c.el));
  drawAll();
}

function drawAll() {
  if (!st.p) return;
  for (const c of st.cells) drawCell(c);
  legend();
  root.dataset.cursor = st.cursor.join(",");
  root.dataset.zoom = String(zoomFactor());
  root.dataset.overlay = st.overlay;
}

function drawCell(c) {
  const { P } = geom(c.plane, c.canvas.width);
  const layer = layerOf(c.key);
  const data = sliceData(c.key, c.plane);
  const idx = st.cursor[P.axis];
  c.title.textContent = layer.label + " · " + c.plane + " " + idx + "/" + st.p.shape[P.axis];
  const labels = { ...P.labels };
  if (mirrored(P)) [labels.left, labels.right] = [labels.right, labels.left];
  for (const lab of c.el.querySelectorAll(".vv-lab")) lab.textContent = labels[lab.dataset.edge];
  const ctx = c.canvas.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, c.canvas.width, c.canvas.height);
  c.canvas.dataset.tag = "";
  if (!data) return;
  const w = P.w, h = P.h;
  if (c.off.width !== w || c.off.height !== h) { c.off.width = w; c.off.height = h; }
  const octx = c.off.getContext("2d");
  const img = octx.createImageData(w, h);
  const px = img.data;
  const mirror = mirrored(P);
  const grey = layer.kind === "mri";
  const lut = grey ? null : st.luts[layer.cmap];
  const lo = grey ? st.wl[0] : layer.vmin, hi = grey ? st.wl[1] : layer.vmax;
  const k = 1 / (hi - lo);
  let ov = null, ovData = null, ovLut = null;
  if (st.overlay && c.key === st.p.overlay_on && st.opacity > 0) {
    ov = layerOf(st.overlay);
    ovData = sliceData(ov.ref || ov.key, c.plane);
    ovLut = st.luts[ov.cmap];
  }
  for (let r = 0; r < h; r++) {
    for (let col = 0; col < w; col++) {
      const s = r * w + col;
      let t = (data[s] - lo) * k;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const g = (t * 255) | 0;  // floor, as transmrsr.viewer.window
      let R, G, B;
      if (grey) { R = G = B = g; } else { R = lut[3 * g]; G = lut[3 * g + 1]; B = lut[3 * g + 2]; }
      if (ovData) {
        // the overlay's alpha grows with its value: zero error leaves the SR as it is
        let u = (ovData[s] - ov.vmin) / (ov.vmax - ov.vmin);
        u = u < 0 ? 0 : u > 1 ? 1 : u;
        const a = st.opacity * u, j = 3 * ((u * 255) | 0);
        R = R * (1 - a) + ovLut[j] * a; G = G * (1 - a) + ovLut[j + 1] * a; B = B * (1 - a) + ovLut[j + 2] * a;
      }
      const d = 4 * (r * w + (mirror ? w - 1 - col : col));
      px[d] = R; px[d + 1] = G; px[d + 2] = B; px[d + 3] = 255;
    }
  }
  octx.putImageData(img, 0, 0);
  const g = geom(c.plane, c.canvas.width);
  ctx.imageSmoothingEnabled = false;  // voxels stay crisp blocks
  ctx.drawImage(c.off, Math.round(g.x0), Math.round(g.y0), Math.round(w * g.cw), Math.round(h * g.ch));
  // the crosshair: one device pixel through the middle of the cursor voxel
  const [ccol, crow] = toScreen(P, st.cursor);
  const x = Math.round(g.x0) + Math.floor((ccol + 0.5) * g.cw), y = Math.round(g.y0) + Math.floor((crow + 0.5) * g.ch);
  ctx.fillStyle = "rgb(" + CROSS.join(",") + ")";
  ctx.fillRect(x, 0, 1, c.canvas.height);
  ctx.fillRect(0, y, c.canvas.width, 1);
  c.canvas.dataset.tag = st.p.slices[c.key][c.plane].tag;
  c.canvas.dataset.crossX = String(x); c.canvas.dataset.crossY = String(y);
}

function legend() {
  // colour bars: the map panels shown and the active overlay
  const keys = new Set(st.cells.filter((c) => layerOf(c.key).kind === "map").map((c) => c.key));
  if (st.overlay) keys.add(st.overlay);
  const box = q(".vv-legend");
  box.replaceChildren(...[...keys].map((key) => {
    const l = layerOf(key);
    const row = document.createElement("div");
    row.className = "vv-cbar"; row.dataset.layer = key;
    const bar = document.createElement("canvas");
    bar.width = 256; bar.height = 12;
    const bctx = bar.getContext("2d");
    const lut = st.luts[l.cmap];
    for (let i = 0; i < 256; i++) { bctx.fillStyle = "rgb(" + lut[3 * i] + "," + lut[3 * i + 1] + "," + lut[3 * i + 2] + ")"; bctx.fillRect(i, 0, 1, 12); }
    const fmt = (x) => String(+x.toPrecision(3));
    const name = document.createElement("span");
    name.textContent = l.label + (key === st.overlay ? " (overlay, opacity " + st.opacity + ")" : "");
    const lo = document.createElement("span"); lo.textContent = fmt(l.vmin);
    const hi = document.createElement("span"); hi.textContent = fmt(l.vmax) + (l.unit ? " " + l.unit : "");
    row.append(name, lo, bar, hi);
    return row;
  }));
}

// ---------------------------------------------------------------------------------- input
let sendTimer = null, lastSent = 0;
function send(full) {
  // throttled while dragging; Python's listener keeps only the latest (trigger_mode="always_last")
  const go = () => {
    sendTimer = null; lastSent = Date.now();
    trigger("cursor", { cursor: st.cursor.slice(), have: full ? {} : have() });
  };
  if (full) { go(); return; }
  if (sendTimer) return;
  const wait = Math.max(0, 120 - (Date.now() - lastSent));
  sendTimer = setTimeout(go, wait);
}

function attach(cell, canvas, key, plane) {
  const pos = (ev) => {
    const r = canvas.getBoundingClientRect();
    return [(ev.clientX - r.left) * canvas.width / r.width, (ev.clientY - r.top) * canvas.height / r.height];
  };
  const moveCursor = (ev) => {
    const g = geom(plane, canvas.width);
    const [x, y] = pos(ev);
    const col = Math.floor((x - Math.round(g.x0)) / g.cw), row = Math.floor((y - Math.round(g.y0)) / g.ch);
    if (col < 0 || row < 0 || col >= g.P.w || row >= g.P.h) return;
    const v = toVoxel(g.P, col, row, st.cursor);
    if (v.join() === st.cursor.join()) return;
    st.cursor = v;
    drawAll();
    send(false);
  };
  let drag = null;
  canvas.addEventListener("contextmenu", (ev) => ev.preventDefault());
  canvas.addEventListener("pointerdown", (ev) => {
    if (!st.p) return;
    canvas.setPointerCapture(ev.pointerId);
    const mode = ev.button === 2 || ev.shiftKey ? "pan" : ev.button === 1 ? "window" : st.mode;
    drag = { mode, x: ev.clientX, y: ev.clientY, wl: st.wl.slice(), center: centerVoxel().slice() };
    if (mode === "crosshair") moveCursor(ev);
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (drag.mode === "crosshair") moveCursor(ev);
    else if (drag.mode === "pan") {
      // the shared centre moves with the picture: every panel showing these axes pans in step
      const g = geom(plane, canvas.width);
      const P = g.P;
      const c = drag.center.slice();
      let dc = -dx * dpr() / g.cw;
      if (mirrored(P)) dc = -dc;
      c[P.xaxis] += P.xflip ? -dc : dc;
      const dr = -dy * dpr() / g.ch;
      c[P.yaxis] += P.yflip ? -dr : dr;
      st.center = c;
      drawAll();
    } else if (drag.mode === "window") {
      // right: wider window; down: lower level (the usual radiology drag)
      const w0 = drag.wl[1] - drag.wl[0], c0 = (drag.wl[0] + drag.wl[1]) / 2;
      const w = Math.max(w0 * Math.exp(dx / 200), 1e-6), c = c0 - dy * w0 / 200;
      setWindow(c - w / 2, c + w / 2);
    }
  });
  const end = () => { if (drag && drag.mode === "crosshair") send(false); drag = null; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("wheel", (ev) => {
    if (!st.p) return;
    ev.preventDefault();
    if (ev.ctrlKey || ev.metaKey) {
      q(ev.deltaY < 0 ? '[data-act="zoom-in"]' : '[data-act="zoom-out"]').click();
      return;
    }
    // the wheel pages through slices of this plane, as in any radiology viewer
    const P = st.p.planes[plane];
    const v = st.cursor.slice();
    v[P.axis] = Math.min(st.p.shape[P.axis] - 1, Math.max(0, v[P.axis] + (ev.deltaY > 0 ? -1 : 1)));
    if (v[P.axis] === st.cursor[P.axis]) return;
    st.cursor = v;
    drawAll();
    send(false);
  }, { passive: false });
}

watch("value", () => receive(props.value));
receive(props.value);

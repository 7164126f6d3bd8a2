"""The labeler's page (one self-contained HTML/JS file, kept as a string so it ships with the Python package).

The part between ``// BEGIN CORE`` and ``// END CORE`` is plain JavaScript without the DOM (the labelling rules and
the points.json layout); tests run it under Node as well as in the browser.
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>splat4d label</title>
<style>
  body { font: 14px sans-serif; margin: 0; display: flex; height: 100vh; }
  #side { width: 220px; padding: 8px; overflow-y: auto; border-right: 1px solid #ccc; }
  #main { flex: 1; padding: 8px; }
  #strip img { width: 96px; margin: 2px; border: 3px solid transparent; cursor: pointer; }
  #strip img.current { border-color: #e33; }
  #strip img.unusable { opacity: 0.3; }
  canvas { border: 1px solid #888; cursor: crosshair; }
  #status { margin-top: 6px; color: #333; }
  button { margin: 2px 0; }
</style>
</head>
<body>
<div id="side">
  <div id="strip"></div>
  <p><label><input type="checkbox" id="usable" checked> image usable</label></p>
  <p>active point: <b id="active">-</b></p>
  <button id="new-point">new point</button><br>
  <button id="delete-point">delete active point everywhere</button><br>
  <button id="polygon">draw exclusion polygon</button><br>
  <button id="save">save points.json</button>
  <div id="status"></div>
  <p style="color:#666">Click: place the active point (or a new one). Drag: move. Right-click: remove from this
  image. Keys: Delete removes the active point here, n new point, s save.</p>
</div>
<div id="main"><canvas id="canvas" width="640" height="480"></canvas></div>
<script>
// BEGIN CORE
function makeLabelState(images, data) {
  // images: [{name, width, height}]; data: an existing points.json (or null).
  const V = images.length;
  const s = {images: images, points: [], valid: [], validImages: [], polygons: [], current: 0, active: null,
             drawing: null};
  for (let i = 0; i < V; i++) { s.points.push([]); s.valid.push([]); s.validImages.push(true); s.polygons.push([]); }
  if (data && Array.isArray(data.points) && data.points.length === V) {
    const P = data.points[0].length;
    for (let i = 0; i < V; i++) {
      for (let j = 0; j < P; j++) {
        const p = data.points[i][j] || {x: 0, y: 0};
        s.points[i].push({x: +p.x, y: +p.y});
        s.valid[i].push(data.validPoints ? !!data.validPoints[i][j] : true);
      }
      if (data.validImages) s.validImages[i] = !!data.validImages[i];
      if (data.polygons && data.polygons[i]) s.polygons[i] = data.polygons[i];
    }
  }
  s.numPoints = function () { return s.points.length ? s.points[0].length : 0; };
  s.firstUnmarked = function (i, from) {
    const P = s.numPoints();
    for (let k = 0; k < P; k++) { const j = (from + k) % P; if (!s.valid[i][j]) return j; }
    return null;
  };
  s.select = function (i) { s.current = i; s.active = s.firstUnmarked(i, 0); s.drawing = null; };
  s.newPoint = function () {
    for (let i = 0; i < V; i++) { s.points[i].push({x: 0, y: 0}); s.valid[i].push(false); }
    s.active = s.numPoints() - 1;
    return s.active;
  };
  s.nearest = function (x, y, radius) {
    // The marked point of the current image within ``radius`` image pixels of (x, y), or null.
    let best = null, bestD = radius;
    const i = s.current;
    for (let j = 0; j < s.numPoints(); j++) {
      if (!s.valid[i][j]) continue;
      const d = Math.hypot(s.points[i][j].x - x, s.points[i][j].y - y);
      if (d <= bestD) { best = j; bestD = d; }
    }
    return best;
  };
  s.place = function (x, y) {
    // A click on empty image space: the active point if it is unmarked here, else a new point.
    const i = s.current;
    let j = s.active;
    if (j === null || s.valid[i][j]) j = s.newPoint();
    s.points[i][j] = {x: x, y: y};
    s.valid[i][j] = true;
    s.active = s.firstUnmarked(i, j + 1);
    return j;
  };
  s.move = function (j, x, y) { s.points[s.current][j] = {x: x, y: y}; };
  s.unmark = function (j) {
    s.valid[s.current][j] = false; s.points[s.current][j] = {x: 0, y: 0}; s.active = j;
  };
  s.deletePoint = function (j) {
    for (let i = 0; i < V; i++) { s.points[i].splice(j, 1); s.valid[i].splice(j, 1); }
    s.active = s.firstUnmarked(s.current, 0);
  };
  s.setUsable = function (i, flag) { s.validImages[i] = !!flag; };
  s.polygonClick = function (x, y) {
    if (s.drawing === null) s.drawing = [];
    s.drawing.push({x: x, y: y});
  };
  s.closePolygon = function () {
    if (s.drawing && s.drawing.length >= 3) s.polygons[s.current].push(s.drawing);
    s.drawing = null;
  };
  s.toJSON = function () {
    return {points: s.points.map(r => r.map(p => ({x: p.x, y: p.y}))),
            validPoints: s.valid.map(r => r.slice()), validImages: s.validImages.slice(),
            polygons: s.polygons};
  };
  return s;
}
if (typeof module !== "undefined") module.exports = {makeLabelState};
// END CORE

(function () {
  if (typeof document === "undefined") return;
  const canvas = document.getElementById("canvas"), ctx = canvas.getContext("2d");
  const status = document.getElementById("status");
  let state = null, pictures = [], scale = 1, dragging = null, polygonMode = false;
  const hook = {ready: false, saved: 0, state: () => state};
  window.toonLabel = hook;

  function toImage(ev) {
    const r = canvas.getBoundingClientRect();
    return [(ev.clientX - r.left - canvas.clientLeft) / scale, (ev.clientY - r.top - canvas.clientTop) / scale];
  }
  // Where image pixel coordinates (x, y) of the current image are on the page (for scripted clicks).
  hook.pagePoint = function (x, y) {
    const r = canvas.getBoundingClientRect();
    return [r.left + canvas.clientLeft + x * scale, r.top + canvas.clientTop + y * scale];
  };
  function draw() {
    const i = state.current, im = state.images[i];
    scale = Math.min(900 / im.width, 700 / im.height);
    canvas.width = Math.round(im.width * scale); canvas.height = Math.round(im.height * scale);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(pictures[i], 0, 0, canvas.width, canvas.height);
    ctx.font = "12px sans-serif";
    for (const poly of state.polygons[i].concat(state.drawing ? [state.drawing] : [])) {
      ctx.beginPath();
      poly.forEach((p, k) => k ? ctx.lineTo(p.x * scale, p.y * scale) : ctx.moveTo(p.x * scale, p.y * scale));
      ctx.closePath(); ctx.fillStyle = "rgba(0,0,0,0.35)"; ctx.fill();
    }
    for (let j = 0; j < state.numPoints(); j++) {
      if (!state.valid[i][j]) continue;
      const p = state.points[i][j];
      ctx.beginPath(); ctx.arc(p.x * scale, p.y * scale, 5, 0, 2 * Math.PI);
      ctx.fillStyle = `hsl(${(j * 67) % 360},90%,50%)`; ctx.fill();
      ctx.strokeStyle = "#000"; ctx.stroke();
      ctx.fillStyle = "#000"; ctx.fillText(String(j), p.x * scale + 7, p.y * scale - 7);
    }
    document.getElementById("active").textContent = state.active === null ? "new" : String(state.active);
    document.getElementById("usable").checked = state.validImages[i];
    document.querySelectorAll("#strip img").forEach((el, k) => {
      el.classList.toggle("current", k === i); el.classList.toggle("unusable", !state.validImages[k]);
    });
  }
  hook.select = function (i) { state.select(i); draw(); };
  canvas.addEventListener("contextmenu", ev => ev.preventDefault());
  canvas.addEventListener("mousedown", ev => {
    const [x, y] = toImage(ev);
    if (polygonMode) { state.polygonClick(x, y); draw(); return; }
    const j = state.nearest(x, y, 8 / scale);
    if (ev.button === 2) { if (j !== null) state.unmark(j); draw(); return; }
    if (j !== null) { dragging = j; state.active = j; } else { state.place(x, y); }
    draw();
  });
  canvas.addEventListener("mousemove", ev => {
    if (dragging === null) return;
    const [x, y] = toImage(ev); state.move(dragging, x, y); draw();
  });
  window.addEventListener("mouseup", () => { dragging = null; });
  window.addEventListener("keydown", ev => {
    if (!state) return;
    if (ev.key === "Delete" || ev.key === "Backspace") {
      if (state.active !== null && state.valid[state.current][state.active]) state.unmark(state.active);
    } else if (ev.key === "n") { state.newPoint(); } else if (ev.key === "s") { save(); }
    draw();
  });
  document.getElementById("usable").addEventListener("change", ev => {
    state.setUsable(state.current, ev.target.checked); draw();
  });
  document.getElementById("new-point").addEventListener("click", () => { state.newPoint(); draw(); });
  document.getElementById("delete-point").addEventListener("click", () => {
    if (state.active !== null) state.deletePoint(state.active); draw();
  });
  const polygonButton = document.getElementById("polygon");
  polygonButton.addEventListener("click", () => {
    if (polygonMode) state.closePolygon();
    polygonMode = !polygonMode;
    polygonButton.textContent = polygonMode ? "close polygon" : "draw exclusion polygon";
    draw();
  });
  async function save() {
    const res = await fetch("/api/save", {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify(state.toJSON())});
    const reply = await res.json();
    status.textContent = res.ok ? `saved ${state.numPoints()} points to ${reply.path}` : `not saved: ${reply.error}`;
    if (res.ok) hook.saved += 1;
    return res.ok;
  }
  hook.save = save;
  document.getElementById("save").addEventListener("click", save);
  fetch("/api/state").then(r => r.json()).then(async info => {
    state = makeLabelState(info.images, info.points);
    const strip = document.getElementById("strip");
    pictures = await Promise.all(info.images.map((im, k) => new Promise(resolve => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.src = "/images/" + encodeURIComponent(im.name);
      const thumb = document.createElement("img");
      thumb.src = img.src; thumb.title = im.name;
      thumb.addEventListener("click", () => { state.select(k); draw(); });
      strip.appendChild(thumb);
    })));
    state.select(0); draw();
    hook.ready = true;
  });
})();
</script>
</body>
</html>
"""

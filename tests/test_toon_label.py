"""`splat4d label`: the labelling rules (the page's core under Node), the server's save endpoint, and a scripted
session of real clicks in headless Chromium (DevTools protocol) that must leave the expected points.json on disk."""

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from splat4d.toon.label import start_labeler
from splat4d.toon.label_page import PAGE
from splat4d.toon.points import read_points

NODE = shutil.which("node") or shutil.which("nodejs")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                  "--disable-background-networking", "--no-first-run", "--disable-component-update", "--disable-sync"]
SIZES = [(90, 70), (90, 70), (60, 40)]

# One labelling session, and the points.json it must produce.
EXPECTED = {
    "points": [[{"x": 10.0, "y": 10.0}, {"x": 55.0, "y": 25.0}, {"x": 0.0, "y": 0.0}],
               [{"x": 12.0, "y": 14.0}, {"x": 40.0, "y": 30.0}, {"x": 70.0, "y": 50.0}],
               [{"x": 0.0, "y": 0.0}, {"x": 0.0, "y": 0.0}, {"x": 0.0, "y": 0.0}]],
    "validPoints": [[True, True, False], [True, True, True], [False, False, False]],
    "validImages": [True, True, False],
    "polygons": [[], [], []],
}


def scene_folder(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"{i:03d}.png")
    return root


def core_js() -> str:
    start, end = PAGE.index("// BEGIN CORE"), PAGE.index("// END CORE")
    return PAGE[start:end]


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed")
def test_labelling_rules_in_node(tmp_path):
    """The page's rules: a click places the active point (or a new one), the active point moves on to the next one
    this image lacks, drag moves, right-click unmarks, an image can be marked unusable."""
    script = core_js() + """
const s = makeLabelState([{name: "a", width: 90, height: 70}, {name: "b", width: 90, height: 70},
                          {name: "c", width: 60, height: 40}], null);
s.select(0);
s.place(10, 10); s.place(50, 20); s.place(30, 60);
s.move(s.nearest(50, 20, 1), 55, 25);
s.unmark(s.nearest(30, 60, 1));
s.select(1);
const first = s.active;
s.place(12, 14); s.place(40, 30); s.place(70, 50);
s.select(2); s.setUsable(2, false);
console.log(JSON.stringify({first: first, json: s.toJSON()}));
"""
    (tmp_path / "run.js").write_text(script)
    out = json.loads(subprocess.run([NODE, str(tmp_path / "run.js")], capture_output=True, text=True,
                                    check=True, timeout=60).stdout)
    assert out["first"] == 0  # the second image starts with the first point it lacks
    assert out["json"] == EXPECTED


STUB_DOM = """
const vm = require("vm");
const fs = require("fs");
const elements = {};
function element(id) {
  return {id, listeners: {}, children: [], textContent: "", checked: true, width: 0, height: 0, clientLeft: 1,
          clientTop: 1, classList: {toggle() {}},
          addEventListener(type, f) { (this.listeners[type] = this.listeners[type] || []).push(f); },
          dispatch(type, ev) { for (const f of this.listeners[type] || []) f(ev); },
          appendChild(child) { this.children.push(child); },
          getBoundingClientRect() { return {left: 246, top: 9, width: this.width, height: this.height}; },
          getContext() { return new Proxy({}, {get: (t, k) => (k in t ? t[k] : () => {}),
                                               set: (t, k, v) => { t[k] = v; return true; }}); }};
}
const byId = id => elements[id] || (elements[id] = element(id));
global.document = {getElementById: byId, createElement: () => element("img"),
                   querySelectorAll: sel => (sel === "#strip img" ? byId("strip").children : [])};
const win = element("window");
global.window = win;
win.addEventListener = win.addEventListener.bind(win);
global.Image = class {
  set src(v) { this._src = v; setTimeout(() => this.onload(), 0); }
  get src() { return this._src; }
};
const STATE = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const saved = [];
global.fetch = async (url, options) => {
  if (url === "/api/state") return {ok: true, json: async () => STATE};
  saved.push(JSON.parse(options.body));
  return {ok: true, json: async () => ({path: "points.json"})};
};
vm.runInThisContext(fs.readFileSync(process.argv[2], "utf8"));
const hook = window.toonLabel, canvas = byId("canvas");
function at(x, y, button) { const [cx, cy] = hook.pagePoint(x, y); return {clientX: cx, clientY: cy, button: button}; }
function click(x, y, button = 0) { canvas.dispatch("mousedown", at(x, y, button)); win.dispatch("mouseup", {}); }
(async () => {
  while (!hook.ready) await new Promise(r => setTimeout(r, 5));
  click(10, 10); click(50, 20); click(30, 60);
  canvas.dispatch("mousedown", at(50, 20, 0)); canvas.dispatch("mousemove", at(55, 25, 0)); win.dispatch("mouseup", {});
  click(30, 60, 2);
  byId("strip").children[1].dispatch("click", {});
  click(12, 14); click(40, 30); click(70, 50);
  byId("strip").children[2].dispatch("click", {});
  byId("usable").checked = false; byId("usable").dispatch("change", {target: byId("usable")});
  byId("save").dispatch("click", {});
  while (hook.saved < 1) await new Promise(r => setTimeout(r, 5));
  console.log(JSON.stringify({saved: saved[0], status: byId("status").textContent}));
})();
"""


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed")
def test_page_handlers_under_a_stub_dom(tmp_path):
    """The page's event handlers (mouse to image coordinates, drag, right-click, thumbnails, the usable box, save)
    driven under Node with a stub DOM: the same session as the browser test, exact coordinates."""
    page = PAGE[PAGE.index("<script>") + len("<script>"):PAGE.index("</script>")]
    (tmp_path / "page.js").write_text(page)
    (tmp_path / "harness.js").write_text(STUB_DOM)
    images = [{"name": f"{i:03d}.png", "width": w, "height": h} for i, (w, h) in enumerate(SIZES)]
    (tmp_path / "state.json").write_text(json.dumps({"images": images, "points": None}))
    run = subprocess.run([NODE, str(tmp_path / "harness.js"), str(tmp_path / "page.js"), str(tmp_path / "state.json")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["saved"] == EXPECTED and out["status"] == "saved 3 points to points.json"


def test_server_saves_checked_points(tmp_path):
    folder = scene_folder(tmp_path / "scene")
    server = start_labeler(folder, port=0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        state = json.loads(urllib.request.urlopen(base + "/api/state", timeout=10).read())
        assert [(im["width"], im["height"]) for im in state["images"]] == SIZES and state["points"] is None
        assert b"makeLabelState" in urllib.request.urlopen(base + "/", timeout=10).read()
        png = urllib.request.urlopen(base + "/images/001.png", timeout=10).read()
        assert png == (folder / "images" / "001.png").read_bytes()
        with pytest.raises(urllib.error.HTTPError) as err:  # only files of images/
            urllib.request.urlopen(base + "/images/..%2Fimages%2F001.png", timeout=10)
        assert err.value.code == 404

        def post(data) -> tuple[int, dict]:
            req = urllib.request.Request(base + "/api/save", data=json.dumps(data).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as res:
                    return res.status, json.loads(res.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        code, reply = post(EXPECTED)
        assert code == 200 and reply["points"] == 3
        assert json.loads((folder / "points.json").read_text()) == EXPECTED
        bad = json.loads(json.dumps(EXPECTED))
        bad["points"][1][2] = {"x": 95.0, "y": 5.0}  # outside the 90 x 70 image
        code, reply = post(bad)
        assert code == 400 and "outside the 90x70 image" in reply["error"]
        assert json.loads((folder / "points.json").read_text()) == EXPECTED  # unchanged
        state = json.loads(urllib.request.urlopen(base + "/api/state", timeout=10).read())
        assert state["points"] == EXPECTED  # reopened sessions continue from the file
    finally:
        server.shutdown()
        server.server_close()
    points = read_points(folder / "points.json", SIZES)
    assert points.valid.tolist() == EXPECTED["validPoints"] and points.valid_images.tolist() == [True, True, False]


class DevTools:
    """A minimal Chrome DevTools protocol client over one page's websocket."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None, open_timeout=30)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def mouse(self, kind: str, x: float, y: float, button: str = "left", buttons: int = 1) -> None:
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button, buttons=buttons, clickCount=1)

    def click(self, x: float, y: float, button: str = "left") -> None:
        self.mouse("mousePressed", x, y, button, 1 if button == "left" else 2)
        self.mouse("mouseReleased", x, y, button, 0)

    def click_image(self, x: float, y: float, button: str = "left") -> None:
        px, py = self.eval(f"window.toonLabel.pagePoint({x}, {y})")
        self.click(px, py, button)

    def click_element(self, selector: str) -> None:
        r = self.eval(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                      " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        self.click(*r)

    def wait(self, expression: str, seconds: float = 60) -> None:
        deadline = time.time() + seconds
        while not self.eval(expression):
            if time.time() > deadline:
                raise TimeoutError(f"waited {seconds} s for {expression}")
            time.sleep(0.1)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install -y chromium)")
def test_clicks_in_headless_chromium_write_points_json(tmp_path):
    folder = scene_folder(tmp_path / "scene")
    server = start_labeler(folder, port=0)
    profile = tempfile.mkdtemp()
    browser = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                "--window-size=1300,900", f"http://127.0.0.1:{server.server_address[1]}/"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.time() + 60
        while not (port_file.is_file() and port_file.read_text().strip()) and time.time() < deadline:
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        pages = []
        while not pages and time.time() < deadline:
            pages = [t for t in json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list").read())
                     if t.get("type") == "page"]
            time.sleep(0.2)
        tools = DevTools(pages[0]["webSocketDebuggerUrl"])
        tools.wait("window.toonLabel && window.toonLabel.ready")
        for x, y in ((10, 10), (50, 20), (30, 60)):
            tools.click_image(x, y)
        start, end = tools.eval("window.toonLabel.pagePoint(50, 20)"), tools.eval("window.toonLabel.pagePoint(55, 25)")
        tools.mouse("mousePressed", *start)
        tools.mouse("mouseMoved", *end)
        tools.mouse("mouseReleased", *end, buttons=0)
        tools.click_image(30, 60, button="right")
        tools.click_element("#strip img:nth-child(2)")
        for x, y in ((12, 14), (40, 30), (70, 50)):
            tools.click_image(x, y)
        tools.click_element("#strip img:nth-child(3)")
        tools.click_element("#usable")
        tools.click_element("#save")
        tools.wait("window.toonLabel.saved >= 1")
        tools.ws.close()
    finally:
        browser.kill()
        browser.wait()
        server.shutdown()
        server.server_close()
        shutil.rmtree(profile, ignore_errors=True)
    saved = json.loads((folder / "points.json").read_text())
    assert saved["validPoints"] == EXPECTED["validPoints"] and saved["validImages"] == EXPECTED["validImages"]
    got = np.array([[[p["x"], p["y"]] for p in image] for image in saved["points"]])
    want = np.array([[[p["x"], p["y"]] for p in image] for image in EXPECTED["points"]])
    np.testing.assert_allclose(got, want, atol=0.15)  # one CSS pixel is 0.1 image pixel at the page's zoom

"""`splat4d label DIR`: a local page (stdlib http.server on 127.0.0.1) where a person marks the same points in
every view; it saves DIR/points.json in the Toon3D labeler's layout (``splat4d.toon.points``).

Routes: ``/`` the page (``splat4d.toon.label_page``), ``/api/state`` the images and any existing points.json,
``/images/NAME`` an image of DIR/images, ``POST /api/save`` checks the points against the images and writes them.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from splat4d.toon.points import PointsError, parse_points, write_points

POINTS_FILE = "points.json"


def image_table(folder: Path) -> list[dict]:
    """[{name, width, height}] of DIR/images, sorted (the order points.json lists them in)."""
    from PIL import Image

    from splat4d.io.frames import IMAGE_SUFFIXES
    from splat4d.load import InputError

    images = folder / "images"
    if not images.is_dir():
        raise InputError(f"{folder} has no images/ folder: put the views of the scene in {images}")
    table = []
    for path in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        with Image.open(path) as im:
            table.append({"name": path.name, "width": im.width, "height": im.height})
    if len(table) < 2:
        raise InputError(f"{images} holds {len(table)} image(s); labelling correspondences needs at least 2")
    return table


def make_handler(folder: Path, images: list[dict]):
    from splat4d.toon.label_page import PAGE

    sizes = [(im["width"], im["height"]) for im in images]
    names = {im["name"] for im in images}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # quiet: the terminal shows the address and saves only
            pass

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, data) -> None:
            self._send(code, json.dumps(data).encode(), "application/json")

        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?")[0]
            if path in ("/", "/index.html"):
                self._send(200, PAGE.encode(), "text/html; charset=utf-8")
            elif path == "/api/state":
                existing = folder / POINTS_FILE
                points = json.loads(existing.read_text()) if existing.is_file() else None
                self._json(200, {"images": images, "points": points})
            elif path.startswith("/images/") and unquote(path[len("/images/"):]) in names:
                file = folder / "images" / unquote(path[len("/images/"):])
                kind = {".png": "image/png", ".webp": "image/webp"}.get(file.suffix.lower(), "image/jpeg")
                self._send(200, file.read_bytes(), kind)
            else:
                self._json(404, {"error": f"no such page: {path}"})

        def do_POST(self):  # noqa: N802
            if self.path != "/api/save":
                self._json(404, {"error": f"no such endpoint: {self.path}"})
                return
            try:
                data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                points = parse_points(data, sizes, name="the labeler's points")
            except (json.JSONDecodeError, PointsError) as err:
                self._json(400, {"error": str(err)})
                return
            write_points(folder / POINTS_FILE, points)
            print(f"saved {points.num_points} points ({int(points.valid.sum())} marks) to {folder / POINTS_FILE}",
                  flush=True)
            self._json(200, {"path": str(folder / POINTS_FILE), "points": points.num_points})

    return Handler


def start_labeler(folder: Path, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Serve the labeler for ``folder`` in a background thread; ``server.server_address`` has the port,
    ``server.shutdown()`` stops it."""
    folder = Path(folder)
    server = ThreadingHTTPServer((host, port), make_handler(folder, image_table(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def serve_labeler(folder: Path, host: str, port: int, open_browser: bool = False, block: bool = True):
    """`splat4d label`: serve until Ctrl-C (or return the server when ``block`` is False)."""
    server = start_labeler(folder, host, port)
    url = f"http://{host}:{server.server_address[1]}/"
    print(f"labelling {folder} at {url}  (Ctrl-C to stop)", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    if not block:
        return server
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return None

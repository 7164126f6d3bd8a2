"""A Toon3D-style test set with a known answer: a small scene (a textured box and a dotted sphere side by side)
rendered by Mitsuba 3 (``scalar_rgb``, an independent renderer) from a few viewpoints, some views then redrawn "as
a cartoonist would": a smooth non-rigid 2D warp of the picture and a smooth rescaling of its depth. Correspondences
are known surface points projected into every view that sees them (ray-cast visibility), moved by the same warp.

    python tools/make_toon_data.py --out bench_results/toon_data [--res 96] [--spp 16]

Writes (the layout `splat4d toon` reads, plus the truth)::

    OUT/images/00000.png ...        input views (RGB over white); views in --distorted are warped
    OUT/depths/00000.npy ...        camera z per pixel (float32, 0 = background), warped and rescaled likewise
    OUT/points.json                 correspondences in the Toon3D labeler's layout
    OUT/heldout/00000.png ...       undistorted views from cameras between the inputs (not given to splat4d)
    OUT/truth.json                  every camera (OpenCV c2w, K), which views are distorted, the warp parameters

Deterministic: fixed meshes, textures, sampler seeds and point choice.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

AZIMUTHS = (-40.0, -15.0, 15.0, 40.0)
"""Input cameras (degrees about the scene's vertical axis)."""
ELEVATIONS = (12.0, 4.0, 18.0, 8.0)
HELDOUT = ((0.0, 10.0), (-28.0, 8.0))
"""Held-out cameras (azimuth, elevation): between the inputs."""
DISTANCE = 2.1
FOV_DEG = 45.0


def scene_parts():
    """A box with printed faces left of a dotted sphere, normalised like tools/make_gt_objects.py's objects."""
    from make_gt_objects import box, normalise, sphere, texture

    kinds = ["print", "checker", "dots", "stripes", "print", "checker"]
    cols = [((0.95, 0.9, 0.8), (0.1, 0.1, 0.1)), ((0.8, 0.2, 0.2), (0.95, 0.95, 0.95)),
            ((0.2, 0.6, 0.3), (0.95, 0.9, 0.2)), ((0.3, 0.3, 0.8), (0.9, 0.9, 0.9)),
            ((0.95, 0.9, 0.8), (0.6, 0.1, 0.5)), ((0.9, 0.6, 0.1), (0.2, 0.2, 0.2))]
    parts = [(*p, texture(k, seed=i, colors=c))
             for i, (p, k, c) in enumerate(zip(box((-0.45, 0.1, 0.0), (0.7, 0.6, 0.6)), kinds, cols))]
    parts.append((*sphere((0.5, 0.0, 0.1), 0.4), texture("dots", colors=((0.2, 0.5, 0.85), (0.95, 0.9, 0.3)))))
    return normalise(parts)


@dataclass
class Distortion:
    """p -> p + amplitude * res * (sin(2 pi (k y / H) + phase_x), sin(2 pi (k x / W) + phase_y)) in pixels, and depth
    times depth_scale * (1 + depth_tilt * (x / W - 0.5)): what a drawing gets wrong, smoothly."""

    amplitude: float
    k: float
    phase_x: float
    phase_y: float
    depth_scale: float
    depth_tilt: float

    def displacement(self, p: np.ndarray, res: int) -> np.ndarray:
        x, y = p[..., 0] / res, p[..., 1] / res
        a = self.amplitude * res
        return np.stack([a * np.sin(2 * np.pi * self.k * y + self.phase_x),
                         a * np.sin(2 * np.pi * self.k * x + self.phase_y)], -1)

    def forward(self, p: np.ndarray, res: int) -> np.ndarray:
        return p + self.displacement(p, res)

    def inverse(self, q: np.ndarray, res: int, iterations: int = 30) -> np.ndarray:
        p = q.copy()
        for _ in range(iterations):  # a contraction for amplitude * 2 pi k < 1
            p = q - self.displacement(p, res)
        return p

    def depth_factor(self, p: np.ndarray, res: int) -> np.ndarray:
        return self.depth_scale * (1 + self.depth_tilt * (p[..., 0] / res - 0.5))


DISTORTIONS = {1: Distortion(0.035, 0.8, 0.3, 1.1, 1.25, 0.2), 3: Distortion(0.03, 1.0, 2.0, -0.7, 0.8, -0.15)}
"""View index -> its distortion (the others stay as rendered)."""


def cameras(res: int):
    import torch

    from splat4d import paths
    from splat4d.types import Cameras

    def make(az, el):
        c2w = paths.looking_at_origin(DISTANCE, list(az), list(el))
        return Cameras.from_fov(c2w, res, res, FOV_DEG)

    inputs = make(AZIMUTHS, ELEVATIONS)
    held = make([a for a, _ in HELDOUT], [e for _, e in HELDOUT])
    return inputs.to("cpu", torch.float64), held.to("cpu", torch.float64)


def ray_depth(scene, c2w: np.ndarray, K: np.ndarray, res: int) -> np.ndarray:
    """Camera z of the first surface through every pixel centre (0 where the ray misses), by Mitsuba's ray caster."""
    import mitsuba as mi

    z = np.zeros((res, res), np.float32)
    origin = mi.Point3f(*c2w[:3, 3].tolist())
    for r in range(res):
        for c in range(res):
            d_cam = np.array([(c + 0.5 - K[0, 2]) / K[0, 0], (r + 0.5 - K[1, 2]) / K[1, 1], 1.0])
            norm = np.linalg.norm(d_cam)
            d = c2w[:3, :3] @ (d_cam / norm)
            si = scene.ray_intersect(mi.Ray3f(o=origin, d=mi.Vector3f(*d.tolist())))
            if si.is_valid():
                z[r, c] = float(si.t) / norm
    return z


def visible(scene, c2w: np.ndarray, X: np.ndarray) -> np.ndarray:
    """(N,) whether the camera at c2w sees each surface point (nothing in between)."""
    import mitsuba as mi

    centre = c2w[:3, 3]
    out = np.zeros(len(X), bool)
    for n, x in enumerate(X):
        d = x - centre
        dist = float(np.linalg.norm(d))
        si = scene.ray_intersect(mi.Ray3f(o=mi.Point3f(*centre.tolist()), d=mi.Vector3f(*(d / dist).tolist())))
        out[n] = si.is_valid() and abs(float(si.t) - dist) < 2e-3 * dist
    return out


def surface_points(parts, count: int, seed: int = 0) -> np.ndarray:
    """``count`` points spread over the scene's surfaces: random points inside the triangles (uniform by area), then
    farthest-point sampling from a random start."""
    rng = np.random.default_rng(seed)
    tris = np.concatenate([pos[faces] for pos, faces, _, _ in parts])  # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]), axis=1)
    pick = rng.choice(len(tris), 3000, p=area / area.sum())
    a, b = rng.uniform(size=(2, 3000, 1))
    flip = (a + b) > 1
    a, b = np.where(flip, 1 - a, a), np.where(flip, 1 - b, b)
    t = tris[pick]
    pool = t[:, 0] + a * (t[:, 1] - t[:, 0]) + b * (t[:, 2] - t[:, 0])
    chosen = [int(rng.integers(len(pool)))]
    dist = np.linalg.norm(pool - pool[chosen[0]], axis=1)
    while len(chosen) < min(count, len(pool)):
        chosen.append(int(dist.argmax()))
        dist = np.minimum(dist, np.linalg.norm(pool - pool[chosen[-1]], axis=1))
    return pool[chosen]


def on_smooth_surface(depth: np.ndarray, uv: np.ndarray, z: np.ndarray, tolerance: float = 0.01) -> np.ndarray:
    """(N,) whether the depth map, read bilinearly at each projected point, agrees with the point's camera z within
    ``tolerance`` (relative): points next to a depth jump (outlines, one object in front of another) would get a
    depth from the wrong surface, and a person labelling a drawing would not pick them either."""
    from splat4d.toon.warp import bilinear

    read = bilinear(depth.astype(np.float64), uv)
    return np.abs(read - z) < tolerance * np.maximum(z, 1e-9)


def warp_picture(values: np.ndarray, distortion: Distortion, res: int, nearest: bool = False) -> np.ndarray:
    """``values`` (res, res, ...) as the distorted picture shows them: out(q) = values(forward^-1(q))."""
    import cv2

    rows, cols = np.mgrid[0:res, 0:res].astype(np.float64)
    q = np.stack([cols + 0.5, rows + 0.5], -1)
    p = distortion.inverse(q, res) - 0.5
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.remap(values.astype(np.float32), p[..., 0].astype(np.float32), p[..., 1].astype(np.float32), interp,
                     borderMode=cv2.BORDER_REPLICATE)


def make_toon_data(out: Path, res: int = 96, spp: int = 16, num_points: int = 40, distorted: tuple[int, ...] = (1, 3),
                   seed: int = 0) -> Path:
    import mitsuba as mi
    from PIL import Image

    from make_gt_objects import mitsuba_scene, render_view
    from splat4d.toon.points import ToonPoints, write_points

    mi.set_variant("scalar_rgb")
    out = Path(out)
    for sub in ("images", "depths", "heldout"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    parts = scene_parts()
    inputs, held = cameras(res)
    X = surface_points(parts, 6 * num_points, seed)
    V = len(inputs)
    xy = np.zeros((V, len(X), 2))
    seen = np.zeros((V, len(X)), bool)
    with tempfile.TemporaryDirectory() as tmp:
        scene = mitsuba_scene(parts, Path(tmp))
        for i in range(V):
            c2w, K = inputs.c2w[i].numpy(), inputs.K[i].numpy()
            rgba = render_view(scene, c2w, res, FOV_DEG, spp, seed=seed + i)
            depth = ray_depth(scene, c2w, K, res)
            uv, z = inputs[i].project(__import__("torch").from_numpy(X))
            uv = uv[0].numpy()
            margin = 2.0
            inside = (z[0].numpy() > 0) & (uv > margin).all(1) & (uv < res - margin).all(1)
            seen[i] = inside & visible(scene, c2w, X)
            seen[i] &= on_smooth_surface(depth, np.clip(uv, 0, res), z[0].numpy())
            xy[i] = uv
            if i in distorted:
                dist = DISTORTIONS[i]
                rgba = warp_picture(rgba, dist, res)
                rows, cols = np.mgrid[0:res, 0:res]
                q = np.stack([cols + 0.5, rows + 0.5], -1)
                depth = warp_picture(depth, dist, res, nearest=True) * dist.depth_factor(dist.inverse(q, res), res)
                xy[i] = dist.forward(xy[i], res)
                seen[i] &= (xy[i] > margin).all(1) & (xy[i] < res - margin).all(1)
            Image.fromarray(np.clip(rgba[..., :3] * 255 + 0.5, 0, 255).astype(np.uint8)).save(
                out / "images" / f"{i:05d}.png")
            np.save(out / "depths" / f"{i:05d}.npy", depth.astype(np.float32))
        for h in range(len(held)):
            rgba = render_view(scene, held.c2w[h].numpy(), res, FOV_DEG, spp, seed=seed + 100 + h)
            Image.fromarray(np.clip(rgba * 255 + 0.5, 0, 255).astype(np.uint8), "RGBA").save(
                out / "heldout" / f"{h:05d}.png")
    # Keep points seen by at least two views, up to num_points, in a fixed order.
    keep = np.nonzero(seen.sum(0) >= 2)[0][:num_points]
    points = ToonPoints(np.where(seen[:, keep, None], xy[:, keep], 0.0), seen[:, keep], np.ones(V, bool))
    write_points(out / "points.json", points)
    truth = {
        "renderer": f"mitsuba {mi.__version__} scalar_rgb", "width": res, "height": res, "fov_deg": FOV_DEG,
        "convention": "OpenCV c2w (x right, y down, z forward); world y down",
        "inputs": [{"file": f"images/{i:05d}.png", "c2w": inputs.c2w[i].tolist(), "K": inputs.K[i].tolist(),
                    "distorted": i in distorted} for i in range(V)],
        "heldout": [{"file": f"heldout/{h:05d}.png", "c2w": held.c2w[h].tolist(), "K": held.K[h].tolist()}
                    for h in range(len(held))],
        "distortions": {str(i): vars(DISTORTIONS[i]) for i in distorted},
        "points_3d": X[keep].tolist(),
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench_results/toon_data"))
    ap.add_argument("--res", type=int, default=96)
    ap.add_argument("--spp", type=int, default=16)
    ap.add_argument("--points", type=int, default=40, help="correspondences to keep")
    args = ap.parse_args()
    print(f"wrote {make_toon_data(args.out, args.res, args.spp, args.points)}")


if __name__ == "__main__":
    main()

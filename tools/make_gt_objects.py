"""Ground-truth objects rendered by an independent renderer (Mitsuba 3, CPU variant ``scalar_rgb``).

Six procedural textured meshes (a mug-like lathe shape with a handle, a box with a printed texture, a torus, a
snowman made of primitives, an asymmetric object with different front and back, a thin plate), each normalised to
a bounding radius of 0.75 about the origin, under a uniform white environment on a white background. Per object:
one input view from splat4d's input camera (``splat4d.init.input_camera``: 40 degree FoV, distance 2.5, looking
along +z) and 24 held-out views on a 360-degree orbit at 2 elevations (12 azimuths x {10, 35} degrees), saved as
RGBA PNGs (sRGB colour, alpha from the renderer) with their cameras (OpenCV c2w and K) in ``cameras.json``.
Besides the six (``EXTRA_OBJECTS``, by name with ``--objects``): an open cup with a handle seen from 30 degrees
above, the object tipped towards the input camera and the orbit turning about its own up axis.

    python tools/make_gt_objects.py --out bench_results/gt_objects [--res 128] [--spp 64] [--objects mug torus]

Deterministic: fixed meshes, textures and sampler seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np

OBJECTS = ("mug", "box", "torus", "snowman", "asymmetric", "plate")  # the benchmark's six, all seen level
# more objects, selectable with --objects (not in the six's mean, which earlier results quote): an open cup seen
# from 30 degrees above, the view of most photos of cups and bowls (the input camera's elevation is then part of
# what a method must get right: the held-out orbit turns about the cup's own up axis); a cup of coffee on a saucer
# seen from 60 degrees above, as the bundled coffee photo is shot
EXTRA_OBJECTS = ("cup_from_above", "cup_on_saucer")
ALL_OBJECTS = OBJECTS + EXTRA_OBJECTS
# degrees the input camera looks down on the object (others: 0)
INPUT_ELEVATION = {"cup_from_above": 30.0, "cup_on_saucer": 60.0}
BOUND = 0.75
ELEVATIONS = (10.0, 35.0)
AZIMUTHS = tuple(float(a) for a in range(0, 360, 30))


# Meshes: (positions (V,3), faces (F,3), uv (V,2), texture (h,w,3) linear RGB) per part ---------------------------
def grid_surface(fn, nu: int, nv: int, wrap_u: bool = True):
    """Parametric surface fn(u, v) -> (..., 3) for u, v in [0, 1] as a triangle grid with uvs."""
    u = np.linspace(0, 1, nu + 1)
    v = np.linspace(0, 1, nv + 1)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    pos = fn(uu, vv).reshape(-1, 3)
    uv = np.stack([uu, vv], -1).reshape(-1, 2)
    faces = []
    for i in range(nu):
        for j in range(nv):
            a, b = i * (nv + 1) + j, (i + 1) * (nv + 1) + j
            faces += [[a, b, a + 1], [a + 1, b, b + 1]]
    return pos, np.array(faces, np.int64), uv


def texture(kind: str, size: int = 256, seed: int = 0, colors=((0.8, 0.1, 0.1), (0.9, 0.85, 0.2))) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    c0, c1 = np.array(colors[0]), np.array(colors[1])
    if kind == "checker":
        t = ((np.floor(x * 8) + np.floor(y * 8)) % 2)[..., None]
    elif kind == "stripes":
        t = (np.floor(x * 12) % 2)[..., None]
    elif kind == "dots":
        t = (((x * 10) % 1 - 0.5) ** 2 + ((y * 6) % 1 - 0.5) ** 2 < 0.08)[..., None].astype(float)
    elif kind == "print":  # blocks of 'text' lines on a label
        t = np.zeros((size, size, 1))
        for row in range(3, 14, 2):
            for _ in range(6):
                x0 = rng.integers(10, size - 60)
                t[row * size // 16:(row + 1) * size // 16 - 4, x0:x0 + rng.integers(15, 50)] = 1
    else:
        t = np.zeros((size, size, 1))
    return (c0 * (1 - t) + c1 * t).astype(np.float32)


def lathe(profile_r, profile_y, n: int = 64):
    """Revolve the (r, y) polyline about the y axis (y down in splat4d's world; Mitsuba's up is -y here too)."""
    r = np.asarray(profile_r, float)
    yv = np.asarray(profile_y, float)
    m = len(r)

    def fn(u, v):
        idx = v * (m - 1)
        i0 = np.clip(np.floor(idx).astype(int), 0, m - 2)
        w = idx - i0
        rr = r[i0] * (1 - w) + r[i0 + 1] * w
        yy = yv[i0] * (1 - w) + yv[i0 + 1] * w
        a = 2 * math.pi * u
        return np.stack([rr * np.cos(a), yy, rr * np.sin(a)], -1)

    return grid_surface(fn, n, 4 * (m - 1))


def sphere(center, radius, n=48):
    def fn(u, v):
        th, ph = math.pi * v, 2 * math.pi * u
        return np.stack([np.sin(th) * np.cos(ph), -np.cos(th), np.sin(th) * np.sin(ph)], -1) * radius + center

    return grid_surface(fn, n, n // 2)


def torus(center, big, small, n=64, m=24, axis="y"):
    def fn(u, v):
        a, b = 2 * math.pi * u, 2 * math.pi * v
        p = np.stack([(big + small * np.cos(b)) * np.cos(a), small * np.sin(b), (big + small * np.cos(b)) * np.sin(a)], -1)
        if axis == "z":
            p = p[..., [0, 2, 1]]
        return p + center

    return grid_surface(fn, n, m)


def box(center, size):
    """Six faces, each a 4x4 grid with its own uv square."""
    parts = []
    c, s = np.asarray(center, float), np.asarray(size, float) / 2
    for axis in range(3):
        for sign in (-1, 1):
            def fn(u, v, axis=axis, sign=sign):
                p = np.zeros(u.shape + (3,))
                a1, a2 = [k for k in range(3) if k != axis]
                p[..., axis] = sign * s[axis]
                p[..., a1] = (2 * u - 1) * s[a1] * (sign if axis != 1 else 1)
                p[..., a2] = (2 * v - 1) * s[a2]
                return p + c

            parts.append(grid_surface(fn, 4, 4))
    return parts


def cone(base_center, radius, height, n=48):
    def fn(u, v):
        a = 2 * math.pi * u
        r = radius * (1 - v)
        return np.stack([r * np.cos(a), -height * v, r * np.sin(a)], -1) + base_center

    return grid_surface(fn, n, 8)


def open_cup():
    """The open cup's meshes, body and handle: outer wall up to the rim, inner wall down to a floor."""
    body = lathe([0.0, 0.40, 0.45, 0.47, 0.42, 0.38, 0.0], [0.45, 0.45, 0.40, -0.45, -0.45, 0.33, 0.33])
    return body, torus((0.56, 0.0, 0.0), 0.2, 0.05, axis="z")


def object_parts(name: str):
    """[(positions, faces, uvs, texture)] for each part of the named object."""
    if name == "mug":
        body = lathe([0.0, 0.42, 0.45, 0.45, 0.40, 0.36, 0.0], [0.55, 0.55, 0.5, -0.45, -0.5, -0.45, -0.45])
        handle = torus((0.52, 0.0, 0.0), 0.22, 0.05, axis="z")
        return [(*body, texture("stripes", colors=((0.9, 0.9, 0.85), (0.15, 0.35, 0.8)))),
                (*handle, texture("plain", colors=((0.15, 0.35, 0.8), (0, 0, 0))))]
    if name == "box":
        kinds = ["print", "checker", "dots", "stripes", "print", "checker"]
        cols = [((0.95, 0.9, 0.8), (0.1, 0.1, 0.1)), ((0.8, 0.2, 0.2), (0.95, 0.95, 0.95)),
                ((0.2, 0.6, 0.3), (0.95, 0.9, 0.2)), ((0.3, 0.3, 0.8), (0.9, 0.9, 0.9)),
                ((0.95, 0.9, 0.8), (0.6, 0.1, 0.5)), ((0.9, 0.6, 0.1), (0.2, 0.2, 0.2))]
        return [(*p, texture(k, seed=i, colors=c)) for i, (p, k, c) in enumerate(zip(box((0, 0, 0), (1.0, 0.7, 0.6)),
                                                                                       kinds, cols))]
    if name == "torus":
        return [(*torus((0, 0, 0), 0.5, 0.2, axis="z"), texture("checker", colors=((0.9, 0.5, 0.1), (0.2, 0.2, 0.6))))]
    if name == "snowman":
        return [(*sphere((0, 0.35, 0), 0.38), texture("dots", colors=((0.92, 0.92, 0.95), (0.2, 0.2, 0.25)))),
                (*sphere((0, -0.2, 0), 0.26), texture("plain", colors=((0.92, 0.92, 0.95), (0, 0, 0)))),
                (*cone((0, -0.4, 0), 0.2, 0.35), texture("stripes", colors=((0.8, 0.1, 0.1), (0.1, 0.1, 0.1))))]
    if name == "asymmetric":
        # Red block in front of a taller green block: the back differs from a mirror of the front.
        front = box((0.1, 0.15, -0.15), (0.7, 0.5, 0.3))
        back = box((-0.15, -0.1, 0.2), (0.5, 1.0, 0.4))
        return [(*p, texture("checker", seed=i, colors=((0.85, 0.15, 0.1), (0.95, 0.8, 0.7)))) for i, p in enumerate(front)] + \
               [(*p, texture("stripes", seed=i, colors=((0.1, 0.6, 0.2), (0.9, 0.95, 0.8)))) for i, p in enumerate(back)]
    if name == "cup_from_above":  # open: outer wall up to the rim, inner wall down to a floor; a handle
        body, handle = open_cup()
        return [(*body, texture("stripes", colors=((0.85, 0.2, 0.15), (0.95, 0.9, 0.85)))),
                (*handle, texture("plain", colors=((0.85, 0.2, 0.15), (0, 0, 0))))]
    if name == "cup_on_saucer":  # the open cup, coffee in it, on a saucer 2.2x as wide
        body, handle = open_cup()
        coffee = lathe([0.0, 0.405, 0.405, 0.0], [-0.28, -0.28, -0.30, -0.30])
        saucer = lathe([0.0, 0.60, 1.00, 1.03, 0.96, 0.55, 0.0], [0.55, 0.55, 0.45, 0.41, 0.43, 0.45, 0.45], n=96)
        red = texture("plain", colors=((0.55, 0.08, 0.05), (0, 0, 0)))
        return [(*body, texture("stripes", colors=((0.55, 0.08, 0.05), (0.95, 0.92, 0.88)))), (*handle, red),
                (*coffee, texture("plain", colors=((0.45, 0.25, 0.1), (0, 0, 0)))), (*saucer, red)]
    if name == "plate":
        disc = lathe([0.0, 0.7, 0.7, 0.0], [-0.02, -0.02, 0.02, 0.02], n=96)
        pos, faces, uv = disc
        pos = pos[:, [0, 2, 1]] * np.array([1, 1, 1])  # face the input camera (thin along z)
        return [(pos, faces, (pos[:, :2] / 1.4 + 0.5), texture("checker", colors=((0.2, 0.5, 0.8), (0.95, 0.95, 0.9))))]
    raise ValueError(f"unknown object {name!r}; choose from {ALL_OBJECTS}")


def posed_parts(name: str):
    """The object's parts normalised and posed for the input camera: tipped about x so that the camera looks down
    on it from ``INPUT_ELEVATION`` (its up axis is then ``splat4d.paths.object_up`` of that elevation)."""
    e = math.radians(INPUT_ELEVATION.get(name, 0.0))
    rot = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(e), -math.sin(e)], [0.0, math.sin(e), math.cos(e)]])
    return [(p @ rot.T, f, uv, tex) for p, f, uv, tex in normalise(object_parts(name))]


def normalise(parts):
    allpos = np.concatenate([p[0] for p in parts])
    center = (allpos.min(0) + allpos.max(0)) / 2
    radius = np.linalg.norm(allpos - center, axis=1).max()
    return [((p - center) * BOUND / radius, f, uv, tex) for p, f, uv, tex in parts]


# Rendering --------------------------------------------------------------------------------------------------------
def write_part_ply(path: Path, pos, faces, uv) -> None:
    from plyfile import PlyData, PlyElement

    v = np.empty(len(pos), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("u", "f4"), ("v", "f4")])
    v["x"], v["y"], v["z"] = pos[:, 0], pos[:, 1], pos[:, 2]
    v["u"], v["v"] = uv[:, 0], uv[:, 1]
    f = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,))])
    f["vertex_indices"] = faces
    PlyData([PlyElement.describe(v, "vertex"), PlyElement.describe(f, "face")]).write(str(path))


def mitsuba_scene(parts, workdir: Path):
    import mitsuba as mi

    scene = {"type": "scene", "integrator": {"type": "path", "max_depth": 4, "hide_emitters": True},
             "light": {"type": "constant", "radiance": {"type": "rgb", "value": 1.0}}}
    for i, (pos, faces, uv, tex) in enumerate(parts):
        path = workdir / f"part{i}.ply"
        write_part_ply(path, pos, faces, uv)
        scene[f"part{i}"] = {
            "type": "ply", "filename": str(path), "face_normals": True,
            "bsdf": {"type": "twosided", "bsdf": {"type": "diffuse", "reflectance": {
                "type": "bitmap", "bitmap": mi.Bitmap(tex), "raw": True, "filter_type": "bilinear"}}},
        }
    return mi.load_dict(scene)


def opencv_to_mitsuba(c2w: np.ndarray) -> np.ndarray:
    """Mitsuba cameras look along +z with +y up and +x left: OpenCV (x right, y down) rotated 180 degrees about z."""
    return c2w @ np.diag([-1.0, -1.0, 1.0, 1.0])


def render_view(scene, c2w: np.ndarray, res: int, fov_deg: float, spp: int, seed: int,
                rfilter: str = "gaussian") -> np.ndarray:
    """(res, res, 4) float: sRGB colour composited over white, alpha. ``rfilter`` 'box': each sample lands in its
    own pixel only, so the render is the same bits every time (with 'gaussian' a sample reaches a neighbouring pixel
    that another thread may be rendering, and the sums' order, so their last bit, varies run to run)."""
    import mitsuba as mi

    sensor = mi.load_dict({
        "type": "perspective", "fov": fov_deg, "fov_axis": "y",
        "to_world": mi.ScalarTransform4f(opencv_to_mitsuba(c2w).tolist()),
        "sampler": {"type": "independent", "sample_count": spp, "seed": seed},
        "film": {"type": "hdrfilm", "width": res, "height": res, "pixel_format": "rgba",
                 "rfilter": {"type": rfilter}},
    })
    img = np.array(mi.render(scene, sensor=sensor, spp=spp, seed=seed), dtype=np.float32)
    rgb, alpha = np.clip(img[..., :3], 0, None), np.clip(img[..., 3:4], 0, 1)
    linear_over_white = rgb + (1 - alpha)  # hide_emitters: background contributes nothing; white backdrop
    srgb = np.where(linear_over_white <= 0.0031308, 12.92 * linear_over_white,
                    1.055 * np.power(np.clip(linear_over_white, 0, None), 1 / 2.4) - 0.055)
    return np.concatenate([np.clip(srgb, 0, 1), alpha], -1)


def cameras(res: int, fov_deg: float = 40.0, distance: float = 2.5, input_elevation: float = 0.0):
    """The input camera and the held-out orbit cameras (OpenCV c2w as numpy, one shared K), the orbit about the
    object's up axis when the input camera looks down on it from ``input_elevation``."""
    from splat4d import paths
    from splat4d.init import input_camera

    cam = input_camera(res, fov_deg, distance)
    held = []
    for el in ELEVATIONS:
        path = paths.orbit(radius=distance, elevation_deg=el, frames=len(AZIMUTHS), width=res, height=res,
                           fov_y_deg=fov_deg, up=paths.object_up(input_elevation))
        for az, c2w in zip(AZIMUTHS, path.cameras.c2w):
            held.append({"azimuth": az, "elevation": el, "c2w": c2w.numpy()})
    return cam.c2w[0].double().numpy(), cam.K[0].double().numpy(), held


def save_rgba(path: Path, rgba: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.clip(rgba * 255 + 0.5, 0, 255).astype(np.uint8), "RGBA").save(path)


def make_object(name: str, out: Path, res: int, spp: int, held_out: bool = True) -> Path:
    import mitsuba as mi

    mi.set_variant("scalar_rgb")
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    parts = posed_parts(name)
    input_c2w, K, held = cameras(res, input_elevation=INPUT_ELEVATION.get(name, 0.0))
    with tempfile.TemporaryDirectory() as tmp:
        scene = mitsuba_scene(parts, Path(tmp))
        save_rgba(folder / "input.png", render_view(scene, input_c2w, res, 40.0, spp, seed=0))
        records = []
        for i, view in enumerate(held if held_out else []):
            save_rgba(folder / f"view_{i:03d}.png", render_view(scene, view["c2w"], res, 40.0, spp, seed=i + 1))
            records.append({"file": f"view_{i:03d}.png", "azimuth": view["azimuth"], "elevation": view["elevation"],
                            "c2w": view["c2w"].tolist()})
    meta = {"object": name, "renderer": f"mitsuba {mi.__version__} scalar_rgb path tracer", "spp": spp,
            "width": res, "height": res, "K": K.tolist(), "input": {"file": "input.png", "c2w": input_c2w.tolist(),
                                                                    "elevation": INPUT_ELEVATION.get(name, 0.0)},
            "views": records, "convention": "OpenCV c2w (x right, y down, z forward); world y down"}
    (folder / "cameras.json").write_text(json.dumps(meta, indent=1))
    return folder


def make_arc(name: str, out: Path, res: int, spp: int, frames: int = 8, degrees: float = 90.0) -> Path:
    """A short "video" of the object: ``frames`` views from the input camera (level, azimuth 0) turning to
    ``degrees`` around it, saved as RGBA cut-outs ``OUT/NAME/arc/frame_XXX.png`` (what a person filming while
    walking around it, then matting the frames, would give ``splat4d run FOLDER --multiview``)."""
    import mitsuba as mi

    from splat4d import paths

    mi.set_variant("scalar_rgb")
    folder = out / name / "arc"
    folder.mkdir(parents=True, exist_ok=True)
    e = INPUT_ELEVATION.get(name, 0.0)
    path = paths.orbit(radius=2.5, elevation_deg=e, frames=frames, width=res, height=res, fov_y_deg=40.0,
                       degrees=degrees * frames / max(1, frames - 1), up=paths.object_up(e))
    with tempfile.TemporaryDirectory() as tmp:
        scene = mitsuba_scene(posed_parts(name), Path(tmp))
        for i, c2w in enumerate(path.cameras.c2w.double().numpy()):
            save_rgba(folder / f"frame_{i:03d}.png", render_view(scene, c2w, res, 40.0, spp, seed=100 + i))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench_results/gt_objects"))
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--spp", type=int, default=64)
    ap.add_argument("--objects", nargs="+", default=list(OBJECTS), choices=ALL_OBJECTS)
    args = ap.parse_args()
    for name in args.objects:
        folder = make_object(name, args.out, args.res, args.spp)
        print(f"wrote {folder}")


if __name__ == "__main__":
    main()

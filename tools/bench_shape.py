"""Shape error on the quality benchmark's objects: each depth backend's front and back surface for the input view
against the truth, ray-cast from the same meshes that Mitsuba renders (``tools/make_gt_objects.py``).

    python tools/bench_shape.py                                # geometric + the packaged shape prior
    python tools/bench_shape.py --weights a.pt b.pt --json out.json

``tools/bench_quality.py`` scores the fitted scene's renders; this scores the depth that seeds it, so a backend
whose shape is better but whose scene is worse (or the reverse) shows as such. Per object, inside the true
silhouette of the input view (where the backend's mask agrees): thickness MAE (z_back - z_front, the ray's last exit
minus its first entry) and shift-invariant front MAE, both in units of the crop's width at the object (as the
network's outputs), and the mean thickness over the true mean (1 = right on average; inflation's mirrored back
over-/under-shoots it). The input views are the benchmark's (``bench_results/gt_objects``; made when missing).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import splat4d  # noqa: F401  first: its thread policy must be set before torch loads OpenMP
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_gt_objects import ALL_OBJECTS, OBJECTS, make_object, posed_parts  # noqa: E402


def ray_cast(tris: np.ndarray, origin: np.ndarray, dirs: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """First-entry and last-exit ray parameters (N,) of rays ``origin + t dirs`` against triangles (T, 3, 3)
    (Moller-Trumbore, both sides); inf / -inf where a ray misses."""
    v0, e1, e2 = tris[:, 0], tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    near = np.full(len(dirs), np.inf)
    far = np.full(len(dirs), -np.inf)
    s = origin[None] - v0  # (T, 3)
    q = np.cross(s, e1)  # (T, 3)
    for a in range(0, len(dirs), chunk):
        d = dirs[a:a + chunk]
        p = np.cross(d[:, None], e2[None])  # (R, T, 3)
        det = (p * e1[None]).sum(-1)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        u = (p * s[None]).sum(-1) * inv
        v = (d[:, None] * q[None]).sum(-1) * inv
        t = (e2[None] * q[None]).sum(-1) * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)
        near[a:a + chunk] = np.where(hit, t, np.inf).min(1)
        far[a:a + chunk] = np.where(hit, t, -np.inf).max(1)
    return near, far


def true_depths(name: str, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """(z_front, z_back) (H, W) camera z of the input view's first entry and last exit (nan where no hit)."""
    parts = posed_parts(name)
    tris = np.concatenate([pos[faces] for pos, faces, _, _ in parts]).astype(np.float64)
    c2w, K = np.asarray(meta["input"]["c2w"]), np.asarray(meta["K"])
    h, w = meta["height"], meta["width"]
    ys, xs = np.mgrid[:h, :w]
    pix = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, dtype=float)], -1).reshape(-1, 3)
    cam_dirs = pix @ np.linalg.inv(K).T  # camera z = 1
    near, far = ray_cast(tris, c2w[:3, 3], cam_dirs @ c2w[:3, :3].T)
    zf = np.where(np.isfinite(near), near, np.nan).reshape(h, w)  # camera z, since the camera-frame dir has z = 1
    zb = np.where(np.isfinite(far), far, np.nan).reshape(h, w)
    return zf, zb


def score(name: str, gt: Path, backends: dict, res: int) -> dict:
    folder = gt / name
    if not (folder / "cameras.json").is_file():
        make_object(name, gt, res, 64)
    meta = json.loads((folder / "cameras.json").read_text())
    rgba = np.asarray(Image.open(folder / "input.png")).astype(np.float32) / 255
    alpha = rgba[..., 3]
    rgb = rgba[..., :3]  # already composited over white
    zf_true, zb_true = true_depths(name, meta)
    fov = math.degrees(2 * math.atan(0.5 * meta["height"] / meta["K"][1][1]))
    distance = float(np.linalg.norm(np.asarray(meta["input"]["c2w"])[:3, 3]))
    width = 2 * distance * math.tan(math.radians(fov) / 2)  # the image's width at the object, in world units
    hit = np.isfinite(zf_true)
    row = {"object": name}
    for label, make in backends.items():
        depth = make(fov, distance)(rgb, alpha)
        zf = depth.depth.numpy()
        zb = depth.back.numpy() if depth.back is not None else np.where(zf > 0, 2 * distance - zf, 0)
        m = hit & (zf > 0) & (alpha > 0.5)
        t_true, t = (zb_true - zf_true)[m], (zb - zf)[m]
        f_true, f = zf_true[m] - zf_true[m].mean(), zf[m] - zf[m].mean()
        row[label] = {"thickness_mae": float(np.abs(t - t_true).mean() / width),
                      "front_mae": float(np.abs(f - f_true).mean() / width),
                      "thickness_ratio": float(t.mean() / t_true.mean())}
    row["true_mean_thickness"] = float((zb_true - zf_true)[hit].mean() / width)
    return row


def main() -> None:
    from splat4d.config import DepthConfig
    from splat4d.depth import make_depth_estimator
    from splat4d.shape.network import WEIGHTS_PATH

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, nargs="*", default=[WEIGHTS_PATH], help="shape-prior weights to score")
    ap.add_argument("--objects", nargs="+", default=list(OBJECTS), choices=ALL_OBJECTS)
    ap.add_argument("--gt", type=Path, default=Path("bench_results/gt_objects"))
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    backends = {"geometric": lambda fov, d: make_depth_estimator(DepthConfig(backend="geometric"), fov, d)}
    stems = [p.stem for p in args.weights]
    for p in args.weights:
        backends[p.stem if stems.count(p.stem) == 1 else f"{p.parent.name}/{p.stem}"] = (
            lambda fov, d, p=p: make_depth_estimator(DepthConfig(backend="shape-prior", model=str(p)), fov, d))
    rows = [score(name, args.gt, backends, args.res) for name in args.objects]
    labels = list(backends)
    print("| object | true thickness | " + " | ".join(f"{b}: thickness MAE / front MAE / mean ratio" for b in labels)
          + " |\n|---|---|" + "---|" * len(labels))
    for r in rows + [{"object": "**mean**", "true_mean_thickness": np.mean([r["true_mean_thickness"] for r in rows]),
                      **{b: {k: float(np.mean([r[b][k] for r in rows])) for k in rows[0][b]} for b in labels}}]:
        print(f"| {r['object']} | {r['true_mean_thickness']:.3f} | " + " | ".join(
            f"{r[b]['thickness_mae']:.3f} / {r[b]['front_mae']:.3f} / {r[b]['thickness_ratio']:.2f}" for b in labels)
            + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

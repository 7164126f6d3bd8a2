"""Mesh export quality on the Mitsuba ground-truth objects (tools/make_gt_objects.py), as tools/bench_quality.py runs
them: the pipeline (``splat4d.pipeline.reconstruct``, --preset, default fast) on each object's input view, then
``splat4d.mesh.scene_to_mesh`` on the fitted scene (plus the input camera and the prior's, as `splat4d export mesh
RUN` adds a run's views/cameras.json), scored against the object's ground-truth mesh.

Metrics, all in units of the object's size (its bounding-sphere diameter, 1.5 world units for every object):

* accuracy: mean distance from points on our mesh to the ground-truth surface;
* completeness: mean distance from points on the visible ground-truth surface to our mesh;
* Chamfer distance: the mean of the two; F-score at tau (default 2% of the size; also 5%): harmonic mean of
  precision (share of our points within tau of the ground truth) and recall (share of ground-truth points within tau
  of ours). 20,000 area-uniform samples per surface.

"Visible ground-truth surface": parts of the ground-truth meshes inside other parts (the snowman's overlapping
spheres, the cone's base) cannot be seen or reconstructed; ground-truth samples hidden from all mesher views (farther
than two voxels behind the rendered depth of the oracle scene in every view) are left out of completeness/recall.

Oracle (a reference, not a method): Gaussians constructed directly on the ground-truth surface (40,000 flat
splats at area-uniform samples, oriented by the face normals, coloured from the texture) meshed by the same
pipeline: the error of the mesher itself, with perfect Gaussians.

    python tools/bench_mesh.py [--preset fast] [--res 128] [--objects mug torus] [--out bench_results/mesh]

Writes mesh.json, <object>.glb and <object>_oracle.glb under --out and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_gt_objects import ALL_OBJECTS, BOUND, OBJECTS, make_object, posed_parts  # noqa: E402

from splat4d.config import RunConfig, load_preset  # noqa: E402
from splat4d.mesh import Mesh, MeshConfig, scene_to_mesh, write_mesh  # noqa: E402
from splat4d.types import Cameras, GaussianScene, rgb_to_sh0  # noqa: E402

SIZE = 2 * BOUND
"""Every object is normalised to a bounding radius of BOUND: its size (diameter) is 2 * BOUND."""


def gt_mesh(name: str):
    """(vertices, faces, face uv triangles (F, 3, 2), face part index, textures) of the normalised GT object."""
    parts = posed_parts(name)
    verts, faces, uvs, part_of_face, textures = [], [], [], [], []
    offset = 0
    for i, (pos, f, uv, tex) in enumerate(parts):
        verts.append(pos)
        faces.append(f + offset)
        uvs.append(uv[f])
        part_of_face.append(np.full(len(f), i))
        textures.append(tex)
        offset += len(pos)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(uvs), np.concatenate(part_of_face), textures


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0):
    """``n`` area-uniform points on a triangle mesh: points (n, 3), face index (n,), barycentric (n, 3)."""
    rng = np.random.default_rng(seed)
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(faces), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], 1)
    return (tri[face] * bary[..., None]).sum(1), face, bary


def oracle_scene(name: str, n: int = 40_000) -> tuple[GaussianScene, np.ndarray]:
    """Flat Gaussians on the GT surface (and their centres, the GT sample points)."""
    verts, faces, uvs, part, textures = gt_mesh(name)
    points, face, bary = sample_surface(verts, faces, n, seed=1)
    tri = verts[faces[face]]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    uv = (uvs[face] * bary[..., None]).sum(1)
    colors = np.empty((n, 3))
    for i, tex in enumerate(textures):
        sel = part[face] == i
        h, w = tex.shape[:2]
        px = np.clip((uv[sel, 0] % 1.0) * w, 0, w - 1).astype(int)
        py = np.clip((uv[sel, 1] % 1.0) * h, 0, h - 1).astype(int)
        colors[sel] = tex[py, px]
    srgb = np.where(colors <= 0.0031308, 12.92 * colors, 1.055 * np.power(np.clip(colors, 0, None), 1 / 2.4) - 0.055)
    # Rotation taking local z to the normal (axis z x n, angle between them).
    nz = torch.from_numpy(normals).float()
    z = torch.tensor([0.0, 0.0, 1.0])
    axis = torch.linalg.cross(z.expand_as(nz), nz, dim=1)
    s = axis.norm(dim=1, keepdim=True)
    angle = torch.atan2(s[:, 0], nz[:, 2])
    axis = torch.where(s > 1e-8, axis / s.clamp_min(1e-8), torch.tensor([1.0, 0.0, 0.0]))
    quats = torch.cat([torch.cos(angle / 2)[:, None], torch.sin(angle / 2)[:, None] * axis], 1)
    area = 0.5 * np.linalg.norm(np.cross(verts[faces][:, 1] - verts[faces][:, 0],
                                         verts[faces][:, 2] - verts[faces][:, 0]), axis=1).sum()
    spacing = float(np.sqrt(area / n))
    scene = GaussianScene(
        means=torch.from_numpy(points).float(),
        scales=torch.log(torch.tensor([spacing, spacing, 0.05 * spacing])).expand(n, 3).clone(),
        quats=quats, opacities=torch.full((n,), 4.0),
        sh0=rgb_to_sh0(torch.from_numpy(np.clip(srgb, 0, 1)).float())[:, None, :], shN=torch.zeros(n, 0, 3))
    return scene, points


def visible_points(points: np.ndarray, scene: GaussianScene, config: MeshConfig, slack: float) -> np.ndarray:
    """Mask of ``points`` no farther than ``slack`` behind ``scene``'s rendered depth in at least one mesher view."""
    from splat4d.mesh import mesh_bounds, render_views, sphere_cameras

    lo, hi = mesh_bounds(scene, config.bounds_quantile)
    pad = 0.1 * float((hi - lo).max())
    cams = sphere_cameras((lo + hi) / 2, 0.5 * float(np.linalg.norm(hi - lo + 2 * pad)), config.views,
                          config.resolution, config.fov)
    seen = np.zeros(len(points), bool)
    pts = torch.from_numpy(points).float()
    for cam, depth, _, alpha in render_views(scene, cams, config.batch):
        uv, z = cam.project(pts)
        uv, z = uv[0], z[0]
        inside = cam.in_image(uv, z)
        col = uv[:, 0].clamp(0, cam.width - 1).long()
        row = uv[:, 1].clamp(0, cam.height - 1).long()
        ok = inside & (alpha[row, col] > 0.5) & (z <= depth[row, col] + slack)
        seen |= ok.numpy()
    return seen


def surface_metrics(pred: Mesh, gt_vertices: np.ndarray, gt_faces: np.ndarray, gt_points: np.ndarray,
                    taus=(0.02, 0.05), n: int = 20_000) -> dict:
    """Accuracy, completeness, Chamfer and F-scores (distances over SIZE) of ``pred`` against the GT."""
    from scipy.spatial import cKDTree

    pred_pts, _, _ = sample_surface(pred.vertices, pred.faces, n, seed=2)
    gt_dense, _, _ = sample_surface(gt_vertices, gt_faces, 200_000, seed=3)
    to_gt, _ = cKDTree(gt_dense).query(pred_pts)  # accuracy against the whole GT surface
    to_pred, _ = cKDTree(pred_pts).query(gt_points)  # completeness of the visible GT surface
    to_gt, to_pred = to_gt / SIZE, to_pred / SIZE
    out = {"accuracy": float(to_gt.mean()), "completeness": float(to_pred.mean()),
           "chamfer": float(0.5 * (to_gt.mean() + to_pred.mean()))}
    for tau in taus:
        p, r = float((to_gt < tau).mean()), float((to_pred < tau).mean())
        out[f"f@{tau:g}"] = 2 * p * r / max(p + r, 1e-12)
        out[f"precision@{tau:g}"], out[f"recall@{tau:g}"] = p, r
    return out


def evaluate(name: str, folder: Path, cfg: RunConfig, mesh_cfg: MeshConfig, out: Path) -> dict:
    from bench_quality import load_rgba

    from splat4d.pipeline import reconstruct

    verts, faces, *_ = gt_mesh(name)
    oracle, oracle_points = oracle_scene(name)
    t0 = time.perf_counter()
    voxel = float((oracle.means.max(0).values - oracle.means.min(0).values).max()) / mesh_cfg.grid_resolution
    visible = visible_points(oracle_points, oracle, mesh_cfg, slack=2 * voxel)
    gt_points = oracle_points[visible][:20_000]
    oracle_mesh = scene_to_mesh(oracle, mesh_cfg)
    oracle_seconds = time.perf_counter() - t0
    write_mesh(oracle_mesh, out / f"{name}_oracle.glb")

    meta = json.loads((folder / "cameras.json").read_text())
    image, alpha = load_rgba(folder / meta["input"]["file"])
    t0 = time.perf_counter()
    rec = reconstruct(image, alpha.astype(np.float32), replace(cfg, progress=False))
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_cams = [rec.init.camera] + ([rec.views.cameras] if rec.views is not None else [])
    run_cams = [c for c in run_cams if (c.width, c.height) == (run_cams[0].width, run_cams[0].height)]
    ours = scene_to_mesh(rec.fitted.scene, mesh_cfg, extra_cameras=Cameras.concat([c.to("cpu") for c in run_cams]))
    mesh_seconds = time.perf_counter() - t0
    write_mesh(ours, out / f"{name}.glb")
    return {"object": name, "gaussians": len(rec.fitted.scene), "visible_gt_fraction": float(visible.mean()),
            "ours": {**surface_metrics(ours, verts, faces, gt_points), "faces": len(ours.faces),
                     "fit_seconds": fit_seconds, "mesh_seconds": mesh_seconds, "info": ours.info},
            "oracle": {**surface_metrics(oracle_mesh, verts, faces, gt_points), "faces": len(oracle_mesh.faces),
                       "mesh_seconds": oracle_seconds}}


def print_table(rows: list[dict]) -> None:
    print("\nChamfer distance (CD), accuracy and completeness in % of the object's size (bounding diameter, lower is "
          "better); F-score at 2% and 5% of the size (higher is better). Oracle: Gaussians built on the ground-truth "
          "surface, meshed the same way.\n")
    print("| object | CD ours | acc | comp | F@2% | F@5% | CD oracle | F@2% oracle | F@5% oracle | faces |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        o, q = r["ours"], r["oracle"]
        print(f"| {r['object']} | {100 * o['chamfer']:.2f} | {100 * o['accuracy']:.2f} | {100 * o['completeness']:.2f}"
              f" | {o['f@0.02']:.3f} | {o['f@0.05']:.3f} | {100 * q['chamfer']:.2f} | {q['f@0.02']:.3f} | "
              f"{q['f@0.05']:.3f} | {o['faces']} |")
    if rows:
        mean = lambda who, k: float(np.mean([r[who][k] for r in rows]))  # noqa: E731
        print(f"| **mean** | {100 * mean('ours', 'chamfer'):.2f} | {100 * mean('ours', 'accuracy'):.2f} | "
              f"{100 * mean('ours', 'completeness'):.2f} | {mean('ours', 'f@0.02'):.3f} | {mean('ours', 'f@0.05'):.3f}"
              f" | {100 * mean('oracle', 'chamfer'):.2f} | {mean('oracle', 'f@0.02'):.3f} | "
              f"{mean('oracle', 'f@0.05'):.3f} | |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--spp", type=int, default=64)
    ap.add_argument("--objects", nargs="+", default=list(OBJECTS), choices=ALL_OBJECTS)
    ap.add_argument("--gt", type=Path, default=Path("bench_results/gt_objects"))
    ap.add_argument("--out", type=Path, default=Path("bench_results/mesh"))
    ap.add_argument("--views", type=int, default=48, help="mesher views (MeshConfig.views)")
    ap.add_argument("--view-res", type=int, default=160, help="mesher view size (MeshConfig.resolution)")
    ap.add_argument("--grid", type=int, default=128, help="voxels along the longest side (MeshConfig.grid_resolution)")
    args = ap.parse_args()

    cfg = load_preset(args.preset, RunConfig())
    cfg = replace(cfg, load=replace(cfg.load, resolution=args.res))
    mesh_cfg = MeshConfig(views=args.views, resolution=args.view_res, grid_resolution=args.grid, progress=False)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.objects:
        folder = args.gt / name
        meta_file = folder / "cameras.json"
        if not meta_file.is_file() or json.loads(meta_file.read_text())["width"] != args.res:
            make_object(name, args.gt, args.res, args.spp)  # Mitsuba; the same cache bench_quality uses
        t0 = time.perf_counter()
        rows.append(evaluate(name, folder, cfg, mesh_cfg, args.out))
        print(f"{name}: CD {100 * rows[-1]['ours']['chamfer']:.2f}% (oracle {100 * rows[-1]['oracle']['chamfer']:.2f}%)"
              f", {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        report = {"preset": args.preset, "resolution": args.res, "size": SIZE, "taus": [0.02, 0.05],
                  "mesh_config": {k: v for k, v in vars(mesh_cfg).items()}, "objects": rows}
        (args.out / "mesh.json").write_text(json.dumps(report, indent=1))
    print_table(rows)
    print(f"\nwrote {args.out / 'mesh.json'} and the meshes (.glb, y-up) under {args.out}")


if __name__ == "__main__":
    main()

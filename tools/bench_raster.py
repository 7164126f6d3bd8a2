"""Rasterizer speed: forward and forward+backward at 256x256 for the numba CPU backend vs a pure-torch tiled path.

The pure-torch path shares projection and binning with the numba one; they differ in the 2D compositing: numba tile
kernels vs the reference renderer's maths on per-tile padded Gaussian lists with autograd (the fastest torch-only
layout we measured, see shared/notes/cpu-rasterizer.md). "cpu before" is the numba path as it was before issue 13's
kernel work (gsplat's torch projection, 16-pixel tiles), measured in the same run. gsplat's CUDA rasterizer is added
when a GPU is present. The last column is an orbit video of the same scene (60 frames rendered and encoded to
H.264), the forward-only path of `splat4d render` and of a run's orbit.mp4 (issue 13's goal: 60 frames/s at 50k).

    python tools/bench_raster.py [--sizes 10000 50000] [--repeats 3] [--json bench_results/raster.json]

Ratios are measured side by side in one run; absolute times on a shared 2-core machine vary.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import splat4d  # noqa: F401  first: its thread policy must be set before torch loads OpenMP
import torch

from splat4d.synthetic import random_scene
from splat4d.render import CPU_TILE, rasterize
from splat4d.render.binning import bin_gaussians
from splat4d.render.projection import project
from splat4d.render.reference import rasterize_reference_tiled
from splat4d.types import Cameras, GaussianScene


def bench_camera(size: int = 256) -> Cameras:
    c2w = torch.eye(4)
    c2w[2, 3] = -2.5
    f = 0.9 * size
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    return Cameras(c2w, K, size, size)


def bench_scene(n: int) -> GaussianScene:
    return random_scene(n, seed=0, extent=(1.0, 1.0, 0.5), scale_range=(0.005, 0.025))


def leaf(scene: GaussianScene) -> GaussianScene:
    return GaussianScene(**{k: v.detach().clone().requires_grad_(True) for k, v in scene.items()})


def run_cpu(scene, cams, backward):
    p = leaf(scene)
    out = rasterize(p, cams, backend="cpu", check_finite=False)
    if backward:
        (out.rgb.sum() + out.alpha.sum()).backward()


def run_cpu_before(scene, cams, backward):
    """The CPU path as it was before issue 13's kernel work: gsplat's torch projection and 16-pixel tiles."""
    from splat4d.render import _finish
    from splat4d.render.cpu import rasterize_projected
    from splat4d.render.projection import radii_from_extents

    p = leaf(scene)
    proj = project(p, cams, fused=False)
    feats, alpha = rasterize_projected(proj, cams.width, cams.height, 16)
    out = _finish(feats, alpha, None, proj.means2d, radii_from_extents(proj.extents))
    if backward:
        (out.rgb.sum() + out.alpha.sum()).backward()


def run_torch_tiled(scene, cams, backward):
    p = leaf(scene)
    proj = project(p, cams)
    bins = bin_gaussians(proj.means2d.detach(), proj.extents, proj.depths.detach(), proj.valid, cams.width,
                         cams.height, 16)
    feats = torch.cat([proj.colors, proj.depths[..., None]], -1).reshape(-1, 4)
    out, alpha = rasterize_reference_tiled(proj.means2d.reshape(-1, 2), proj.conics.reshape(-1, 3), feats,
                                           proj.opacities.reshape(-1), bins, len(cams), cams.width, cams.height)
    if backward:
        (out[..., :3].sum() + alpha.sum()).backward()


def run_gsplat(scene, cams, backward):
    p = leaf(scene.to("cuda"))
    out = rasterize(p, cams.to("cuda"), backend="gsplat", check_finite=False)
    if backward:
        (out.rgb.sum() + out.alpha.sum()).backward()
    torch.cuda.synchronize()


def orbit_fps(scene: GaussianScene, size: int, frames: int = 60) -> float:
    """Frames per second of an orbit video of ``scene`` (the forward-only path of `splat4d render` and the run's
    orbit.mp4: render_frames, then H.264 through VideoWriter), a warm-up frame first."""
    import tempfile

    from splat4d import paths
    from splat4d.io.video import VideoWriter
    from splat4d.render.frames import render_frames

    path = paths.orbit(center=(0.0, 0.0, 0.0), radius=2.5, frames=frames, width=size, height=size, fov_y_deg=40.0,
                       elevation_deg=15.0)
    next(render_frames(scene, paths.orbit(radius=2.5, frames=1, width=size, height=size), progress=False))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with VideoWriter(Path(tmp) / "orbit.mp4", fps=30) as writer:
            for frame in render_frames(scene, path, progress=False):
                writer.write(frame)
        return frames / (time.perf_counter() - t0)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (numba compile / cache load, allocator)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--torch-repeats", type=int, default=1, help="repeats for the slow pure-torch path")
    ap.add_argument("--image", type=int, default=256)
    ap.add_argument("--json", type=Path, default=Path("bench_results/raster.json"))
    args = ap.parse_args()

    cams = bench_camera(args.image)
    impls = {"cpu (numba)": (run_cpu, args.repeats),
             "cpu before (torch projection, 16 px tiles)": (run_cpu_before, args.repeats),
             "pure torch (tiled)": (run_torch_tiled, args.torch_repeats)}
    if torch.cuda.is_available():
        impls["gsplat (cuda)"] = (run_gsplat, args.repeats)
    results = []
    for n in args.sizes:
        scene = bench_scene(n)
        proj = project(scene, cams)
        pairs = bin_gaussians(proj.means2d, proj.extents, proj.depths, proj.valid, cams.width, cams.height, CPU_TILE)
        row = {"gaussians": n, "pairs": int(pairs.flat_ids.numel()), "image": args.image}
        for name, (fn, repeats) in impls.items():
            row[f"{name} fwd ms"] = timed(lambda: fn(scene, cams, False), repeats)
            row[f"{name} fwd+bwd ms"] = timed(lambda: fn(scene, cams, True), repeats)
        row["speed-up fwd+bwd (torch / cpu)"] = row["pure torch (tiled) fwd+bwd ms"] / row["cpu (numba) fwd+bwd ms"]
        row["speed-up fwd (torch / cpu)"] = row["pure torch (tiled) fwd ms"] / row["cpu (numba) fwd ms"]
        before = "cpu before (torch projection, 16 px tiles)"
        row["speed-up fwd+bwd (before / cpu)"] = row[f"{before} fwd+bwd ms"] / row["cpu (numba) fwd+bwd ms"]
        row["speed-up fwd (before / cpu)"] = row[f"{before} fwd ms"] / row["cpu (numba) fwd ms"]
        row["orbit mp4 frames/s"] = orbit_fps(scene, args.image)
        results.append(row)
        print(json.dumps(row))

    keys = [k for k in results[0] if k not in ("image",)]
    widths = [max(len(k), 10) for k in keys]
    print("\n| " + " | ".join(k.ljust(w) for k, w in zip(keys, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in results:
        cells = [f"{row[k]:.1f}" if isinstance(row[k], float) else str(row[k]) for k in keys]
        print("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__}
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

"""Rasterizer speed: forward and forward+backward at 256x256 for the numba CPU backend vs a pure-torch tiled path.

The pure-torch path shares projection and binning with the numba one; they differ in the 2D compositing: numba tile
kernels vs the reference renderer's maths on per-tile padded Gaussian lists with autograd (the fastest torch-only
layout we measured, see shared/notes/cpu-rasterizer.md). "cpu before" is the numba path as it was before issue 13's
kernel work (gsplat's torch projection, 16-pixel tiles), measured in the same run. gsplat's CUDA rasterizer is added
when a GPU is present. The last column is an orbit video of the same scene (60 frames rendered and encoded to
H.264), the forward-only path of `splat4d render` and of a run's orbit.mp4 (issue 13's goal: 60 frames/s at 50k).

    python tools/bench_raster.py [--sizes 10000 50000] [--repeats 3] [--json bench_results/raster.json]
    python tools/bench_raster.py --against ../old-checkout [--rounds 6]   # this checkout vs another, A/B

Ratios are measured side by side in one run; absolute times on a shared 2-core machine vary. ``--against`` runs
the cpu backend's forward, forward+backward and orbit video of this checkout and of another (a ``git worktree``
of an older commit) in two worker processes, interleaved round by round (A B, B A, ...), and prints medians and
ratios: the way to compare commits on a machine whose load changes.
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


AB_WORKER = r"""
import sys, json, time
import splat4d  # noqa: F401  thread policy first
import torch
from splat4d import paths
from splat4d.io.video import VideoWriter
from splat4d.render import rasterize
from splat4d.render.frames import render_frames
from splat4d.synthetic import random_scene
from splat4d.types import Cameras, GaussianScene
size = int(sys.argv[1])
c2w = torch.eye(4); c2w[2, 3] = -2.5
cams = Cameras(c2w, torch.tensor([[0.9 * size, 0, size / 2], [0, 0.9 * size, size / 2], [0, 0, 1.0]]), size, size)
scenes = {}
def scene(n):
    if n not in scenes:
        scenes[n] = random_scene(n, seed=0, extent=(1.0, 1.0, 0.5), scale_range=(0.005, 0.025))
    return scenes[n]
def step(n, backward):
    p = GaussianScene(**{k: v.detach().clone().requires_grad_(True) for k, v in scene(n).items()})
    out = rasterize(p, cams, backend="cpu", check_finite=False)
    if backward:
        (out.rgb.sum() + out.alpha.sum()).backward()
def orbit(n, frames):
    import tempfile
    from pathlib import Path
    path = paths.orbit(radius=2.5, frames=frames, width=size, height=size, fov_y_deg=40.0, elevation_deg=15.0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with VideoWriter(Path(tmp) / "orbit.mp4", fps=30) as writer:
            for frame in render_frames(scene(n), path, progress=False):
                writer.write(frame)
        return frames / (time.perf_counter() - t0)
print("ready", flush=True)
for line in sys.stdin:
    kind, n, reps = line.split()
    n, reps = int(n), int(reps)
    if kind == "orbit":
        orbit(n, 2)
        vals = [orbit(n, 30) for _ in range(reps)]
    else:
        step(n, kind == "fwd+bwd")
        vals = []
        for _ in range(reps):
            t0 = time.perf_counter()
            step(n, kind == "fwd+bwd")
            vals.append((time.perf_counter() - t0) * 1000.0)
    print(json.dumps(vals), flush=True)
"""


def against(other: Path, sizes: list[int], rounds: int, repeats: int, image: int) -> list[dict]:
    """Medians of this checkout ("new") and ``other`` ("old") measured in alternating worker processes."""
    import os
    import subprocess
    import sys

    here = Path(__file__).resolve().parents[1]
    procs = {}
    for name, root in (("new", here), ("old", other.resolve())):
        env = dict(os.environ, PYTHONPATH=str(root))
        procs[name] = subprocess.Popen([sys.executable, "-c", AB_WORKER, str(image)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, env=env, cwd=str(root))
        assert procs[name].stdout.readline().strip() == "ready"
    rows = []
    for n in sizes:
        for kind in ("fwd", "fwd+bwd", "orbit"):
            vals = {"new": [], "old": []}
            for r in range(rounds):
                for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    procs[name].stdin.write(f"{kind} {n} {1 if kind == 'orbit' else repeats}\n")
                    procs[name].stdin.flush()
                    vals[name] += json.loads(procs[name].stdout.readline())
            old, new = statistics.median(vals["old"]), statistics.median(vals["new"])
            unit = "frames/s" if kind == "orbit" else "ms"
            speedup = new / old if kind == "orbit" else old / new
            row = {"gaussians": n, "what": kind, "unit": unit, "old": old, "new": new, "speed-up": speedup,
                   "samples": len(vals["new"])}
            print(json.dumps(row), flush=True)
            rows.append(row)
    for p in procs.values():
        p.stdin.close()
        p.wait()
    print("\n| Gaussians | measure | old | new | speed-up |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['gaussians']:,} | {r['what']} ({r['unit']}) | {r['old']:.1f} | {r['new']:.1f} | "
              f"{r['speed-up']:.2f}x |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--torch-repeats", type=int, default=1, help="repeats for the slow pure-torch path")
    ap.add_argument("--image", type=int, default=256)
    ap.add_argument("--json", type=Path, default=Path("bench_results/raster.json"))
    ap.add_argument("--against", type=Path, default=None,
                    help="another checkout (e.g. a git worktree of an older commit) to measure side by side")
    ap.add_argument("--rounds", type=int, default=6, help="--against: alternating rounds per measurement")
    args = ap.parse_args()
    if args.against is not None:
        rows = against(args.against, args.sizes, args.rounds, args.repeats, args.image)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"against": str(args.against), "results": rows}, indent=2))
        print(f"\nwrote {args.json}")
        return

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

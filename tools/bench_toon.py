"""Toon3D benchmark: splat4d toon on a Mitsuba-rendered scene with two views distorted like drawings
(tools/make_toon_data.py), with the ARAP warp and without it (coarse alignment only).

Measures, per run:
* the alignment residual (pixels; mean reprojection distance between views' corresponding points) before and after
  the warp;
* camera rotation errors (degrees) against the renderer's cameras, relative to the first view (the reconstruction's
  world is the first camera's frame); the distorted views have no true camera, the undistorted ones do;
* PSNR of held-out views (undistorted renders from cameras between the inputs, never given to splat4d) against
  renders of the fitted scene. The held-out camera is placed in the reconstruction's world by its pose relative to
  the first camera, with the world's scale from the input camera centres (least squares) and the mean fitted focal
  length (a drawing fixes no focal length); PSNR over the whole frame and over the object (renderer's alpha).

    python tools/bench_toon.py [--data bench_results/toon_data] [--res 96] [--iterations 300]

Writes bench_results/toon_bench.json and bench_results/toon_bench.md (the table printed at the end).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def held_out_cameras(truth: dict, estimated) -> "object":
    """The held-out cameras in the reconstruction's world (see the module docstring)."""
    from splat4d.types import Cameras

    c2w_true = torch.tensor([v["c2w"] for v in truth["inputs"]], dtype=torch.float64)
    w2c0 = torch.linalg.inv(c2w_true[0])
    rel = w2c0 @ c2w_true  # inputs relative to the first camera, truth units
    c_true, c_est = rel[1:, :3, 3], estimated.c2w[1:, :3, 3].double()
    scale = float((c_true * c_est).sum() / (c_true * c_true).sum())
    held = w2c0 @ torch.tensor([h["c2w"] for h in truth["heldout"]], dtype=torch.float64)
    held[:, :3, 3] *= scale
    K = torch.tensor([h["K"] for h in truth["heldout"]], dtype=torch.float64)
    focal = float(estimated.K[:, :2, :2].diagonal(dim1=-2, dim2=-1).mean())
    K[:, 0, 0] = K[:, 1, 1] = focal
    return Cameras(held, K, estimated.width, estimated.height), scale


def evaluate(run_dir: Path, data: Path) -> dict:
    from PIL import Image

    from splat4d.io.ply import read_ply
    from splat4d.losses import psnr
    from splat4d.nerfstudio.export import read_view_cameras
    from splat4d.render import rasterize
    from splat4d.toon.align import rotation_error_deg

    truth = json.loads((data / "truth.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cameras, _ = read_view_cameras(run_dir / "views" / "cameras.json")
    R = torch.tensor([v["c2w"] for v in truth["inputs"]], dtype=torch.float64)[:, :3, :3]
    errors = rotation_error_deg(cameras.c2w[:, :3, :3], R[0].T @ R).tolist()
    distorted = [v["distorted"] for v in truth["inputs"]]
    held, scale = held_out_cameras(truth, cameras)
    scene = read_ply(run_dir / "scene.ply")
    full, obj = [], []
    for h, record in enumerate(truth["heldout"]):
        rgba = np.asarray(Image.open(data / record["file"]).convert("RGBA"), np.float32) / 255
        target = torch.from_numpy(rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:]))
        with torch.no_grad():
            render = rasterize(scene, held[h].to("cpu", torch.float32), background=torch.ones(3)).rgb[0].clamp(0, 1)
        full.append(psnr(render, target))
        obj.append(psnr(render, target, torch.from_numpy(rgba[..., 3] > 0.5)))
    return {
        "residual_before_px": metrics["residual_before_px"], "residual_after_px": metrics["residual_after_px"],
        "flipped_triangles": sum(metrics["flipped_triangles"]),
        "rotation_error_deg": [round(e, 3) for e in errors],
        "rotation_error_undistorted_deg": round(float(np.mean([e for e, d in zip(errors[1:], distorted[1:])
                                                               if not d])), 3),
        "rotation_error_distorted_deg": round(float(np.mean([e for e, d in zip(errors, distorted) if d])), 3),
        "heldout_psnr": [round(p, 3) for p in full], "heldout_psnr_object": [round(p, 3) for p in obj],
        "heldout_psnr_mean": round(float(np.mean(full)), 3), "heldout_psnr_object_mean": round(float(np.mean(obj)), 3),
        "world_scale": round(scale, 5), "input_view_psnr": metrics["view_psnr"], "gaussians": metrics["gaussians"],
        "seconds": metrics["seconds"]["total"],
    }


def table(results: dict) -> str:
    rows = [("alignment residual before warp (px)", "residual_before_px"),
            ("alignment residual after warp (px)", "residual_after_px"),
            ("flipped triangles", "flipped_triangles"),
            ("rotation error, undistorted views (deg)", "rotation_error_undistorted_deg"),
            ("rotation error, distorted views (deg)", "rotation_error_distorted_deg"),
            ("rotation error per view (deg)", "rotation_error_deg"),
            ("held-out PSNR, whole frame (dB)", "heldout_psnr_mean"),
            ("held-out PSNR, object pixels (dB)", "heldout_psnr_object_mean"),
            ("held-out PSNR per view (dB)", "heldout_psnr"),
            ("Gaussians", "gaussians"), ("seconds", "seconds")]
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(str(results[n][key]) for n in names) + " |")
    return "\n".join(lines)


def main() -> None:
    from make_toon_data import make_toon_data

    from splat4d.toon.cli import ToonArgs
    from splat4d.toon.fit import ToonFitConfig
    from splat4d.toon.pipeline import run_toon
    from splat4d.toon.warp import WarpConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("bench_results/toon_data"))
    ap.add_argument("--out", type=Path, default=Path("bench_results"))
    ap.add_argument("--res", type=int, default=96)
    ap.add_argument("--spp", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=300, help="Gaussian fit steps")
    args = ap.parse_args()
    if not (args.data / "truth.json").is_file():
        make_toon_data(args.data, res=args.res, spp=args.spp)
    results = {}
    for name, warp_steps in (("with warp", WarpConfig().steps), ("without warp", 0)):
        run_dir = args.out / "toon_runs" / name.replace(" ", "_")
        run_toon(ToonArgs(input=args.data, out=run_dir, fit=ToonFitConfig(iterations=args.iterations),
                          warp=WarpConfig(steps=warp_steps), video_frames=12, progress=False, device="cpu"))
        results[name] = evaluate(run_dir, args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "toon_bench.json").write_text(json.dumps({"data": str(args.data), "fit_iterations": args.iterations,
                                                           "results": results}, indent=1))
    text = table(results)
    (args.out / "toon_bench.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""Single-image pipeline speed, per stage, on a first run from a fresh install ("cold") and on a later one ("warm").

Each run is a fresh process running `splat4d run` on the bundled example (default preset: 256 px, 150 steps,
120-frame orbit mp4) into a new folder, so nothing is resumed. Cold: numba's kernel cache starts empty (a fresh
NUMBA_CACHE_DIR), as on a machine where `make install` has not warmed it; warm: the same cache, now filled. The
process's wall time (imports included) and the pipeline's own per-stage times are reported for both.

    python tools/bench_pipeline.py [--preset default] [--image splat4d/assets/coffee.jpg] [--warm-runs 1]
                                   [--json bench_results/pipeline.json]

Goals (issue 13): <= 20 s warm and <= 30 s cold for the default preset on a 2-core CPU machine, orbit included.
Absolute times on a shared machine vary: read the load average printed with each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(preset: str, image: Path, out: Path, cache_dir: Path) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "splat4d", "run", str(image), "--preset", preset, "--out", str(out),
                           "--no-progress"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"splat4d run failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"process_seconds": round(wall, 2), "stages": metrics["seconds"], "load": os.getloadavg()[0],
            "gaussians": metrics.get("gaussians_final"), "input_psnr": metrics.get("input_psnr")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--image", type=Path, default=ROOT / "splat4d" / "assets" / "coffee.jpg")
    ap.add_argument("--warm-runs", type=int, default=1)
    ap.add_argument("--json", type=Path, default=Path("bench_results/pipeline.json"))
    args = ap.parse_args()

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "numba_cache"
        runs["cold"] = one_run(args.preset, args.image, Path(tmp) / "cold", cache)
        print(f"cold: {runs['cold']['process_seconds']:.1f} s (load {runs['cold']['load']:.1f})", flush=True)
        for i in range(args.warm_runs):
            name = "warm" if i == 0 else f"warm{i + 1}"
            runs[name] = one_run(args.preset, args.image, Path(tmp) / name, cache)
            print(f"{name}: {runs[name]['process_seconds']:.1f} s (load {runs[name]['load']:.1f})", flush=True)

    names = list(runs)
    stages = [s for s in runs["cold"]["stages"] if s != "total"]
    print(f"\npreset {args.preset}, {args.image.name}: {runs['cold']['gaussians']} Gaussians, "
          f"input-view PSNR {runs['cold']['input_psnr']:.2f} dB\n")
    print("| stage | " + " | ".join(f"{n} (s)" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for stage in stages:
        print(f"| {stage} | " + " | ".join(f"{runs[n]['stages'].get(stage, 0):.2f}" for n in names) + " |")
    print("| pipeline total | " + " | ".join(f"{runs[n]['stages']['total']:.2f}" for n in names) + " |")
    print("| **process (imports included)** | " + " | ".join(f"**{runs[n]['process_seconds']:.2f}**" for n in names)
          + " |")
    goals = {"cold": 30.0, "warm": 20.0}
    for n in ("cold", "warm"):
        if n in runs:
            verdict = "met" if runs[n]["process_seconds"] <= goals[n] else "NOT met"
            print(f"goal {n} <= {goals[n]:.0f} s: {verdict}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.machine(), "cores": os.cpu_count(), "preset": args.preset, "image": str(args.image)}
    args.json.write_text(json.dumps({"meta": meta, "runs": runs}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

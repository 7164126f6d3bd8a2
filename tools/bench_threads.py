"""Thread policy under a parallel load: a fit step's time alone and beside a second splat4d process, with OpenMP's
default spin-waiting and with splat4d's passive waiting (issue 13; `splat4d/__init__.py` sets it).

A fit step alternates torch's OpenMP pool (projection, SH, loss, Adam) and numba's (the tile kernels): two OpenMP
runtimes in one process, each sized to the machine's cores. With libgomp's default, a pool's threads spin for a
while after each parallel region; alone that costs little, but with a second process on the same cores the spinning
threads take the time the working ones need. This measures a rasterizer forward+backward (the bulk of a fit step) at
256 px in a worker process:

* ``alone``: nothing else running (beyond what the machine already runs: read the load average printed),
* ``beside a twin``: a second worker doing the same steps, with the same policy, for the whole measurement (the case
  of the test suite beside a run, or two runs),

for each policy, rounds interleaved so drifting background load hits both alike.

    python tools/bench_threads.py [--gaussians 50000] [--repeats 8] [--rounds 2] [--json bench_results/threads.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# libgomp's GOMP_SPINCOUNT overrides OMP_WAIT_POLICY; 300000 is its documented default when neither is set.
POLICIES = {"spin (OpenMP default)": {"GOMP_SPINCOUNT": "300000"}, "passive (splat4d)": {}}

WORKER = r"""
import sys, time, statistics
sys.path.insert(0, {tools!r})
import splat4d  # the thread policy, before torch
import torch
from bench_raster import bench_camera, bench_scene, run_cpu
n, reps, forever = {n}, {reps}, {forever}
scene, cams = bench_scene(n), bench_camera(256)
run_cpu(scene, cams, True)
times = []
while forever or len(times) < reps:
    t0 = time.perf_counter(); run_cpu(scene, cams, True); times.append(time.perf_counter() - t0)
print(statistics.median(times) * 1000)
"""


def worker(n: int, reps: int, env: dict, forever: bool = False):
    code = WORKER.format(tools=str(ROOT / "tools"), n=n, reps=reps, forever=forever)
    return subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def measure(n: int, reps: int, env: dict, beside: bool) -> float:
    twin = worker(n, reps, env, forever=True) if beside else None
    try:
        if twin:
            time.sleep(8)  # let the twin import and start stepping
        proc = worker(n, reps, env)
        out, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(err.strip().splitlines()[-1])
        return float(out)
    finally:
        if twin:
            twin.kill()
            twin.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gaussians", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, default=Path("bench_results/threads.json"))
    args = ap.parse_args()

    results: dict[str, dict[str, list[float]]] = {p: {"alone": [], "beside a twin": []} for p in POLICIES}
    for rnd in range(args.rounds):
        for case in ("alone", "beside a twin"):
            for policy, env in POLICIES.items():
                ms = measure(args.gaussians, args.repeats, env, case != "alone")
                results[policy][case].append(ms)
                print(f"round {rnd}: {case:<14} {policy:<22} {ms:8.1f} ms  (load {os.getloadavg()[0]:.1f})",
                      flush=True)
    med = {p: {c: statistics.median(v) for c, v in cases.items()} for p, cases in results.items()}
    spin, passive = med["spin (OpenMP default)"], med["passive (splat4d)"]
    print(f"\nrasterizer forward+backward, {args.gaussians} Gaussians at 256 px, median ms "
          f"({os.cpu_count()} cores)\n")
    print("| case | spin (OpenMP default) | passive (splat4d) | spin / passive |")
    print("|---|---|---|---|")
    for case in ("alone", "beside a twin"):
        print(f"| {case} | {spin[case]:.1f} | {passive[case]:.1f} | {spin[case] / passive[case]:.2f}x |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": {"machine": platform.machine(), "cores": os.cpu_count(),
                                              "gaussians": args.gaussians, "repeats": args.repeats},
                                     "runs_ms": results, "median_ms": med}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

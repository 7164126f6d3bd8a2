"""Single-image pipeline speed: time per stage and in total for a preset (default: `default`, 256 px, 120-frame
orbit mp4), from a cold run folder, on the bundled example image.

    python tools/bench_pipeline.py [--preset default] [--image splat4d/assets/coffee.jpg] [--json bench_results/pipeline.json]

Goal (issue 3): total <= 60 s for the default preset on a 2-core CPU machine, orbit video included.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from dataclasses import replace
from pathlib import Path

import splat4d  # noqa: F401  first: its thread policy must be set before torch loads OpenMP
import torch

from splat4d.config import RunConfig, load_preset
from splat4d.pipeline import run

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--image", type=Path, default=ROOT / "splat4d" / "assets" / "coffee.jpg")
    ap.add_argument("--json", type=Path, default=Path("bench_results/pipeline.json"))
    args = ap.parse_args()

    cfg = load_preset(args.preset, RunConfig())
    with tempfile.TemporaryDirectory() as tmp:
        result = run(replace(cfg, input=args.image, out=Path(tmp) / "run", resume=False, progress=False))
    m = result.metrics
    secs = m["seconds"]
    print(f"\npreset {args.preset}: {cfg.load.resolution} px, {cfg.fit.iterations} steps, "
          f"{cfg.video.frames}-frame {cfg.video.size} px orbit; {m['gaussians_final']} Gaussians, "
          f"input-view PSNR {m['input_psnr']:.2f} dB\n")
    print("| stage | seconds | share |")
    print("|---|---|---|")
    for stage, value in secs.items():
        if stage != "total":
            print(f"| {stage} | {value:.2f} | {100 * value / secs['total']:.0f}% |")
    print(f"| **total** | **{secs['total']:.2f}** | goal <= 60 s: {'met' if secs['total'] <= 60 else 'NOT met'} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "preset": args.preset, "image": str(args.image)}
    args.json.write_text(json.dumps({"meta": meta, "seconds": secs, "gaussians": m["gaussians_final"],
                                     "input_psnr": m["input_psnr"]}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

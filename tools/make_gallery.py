"""The README's gallery: `splat4d run` on a few photos, then one contact sheet per photo -- the input crop and the
fitted scene from six azimuths around the object (0, 60, ..., 300 degrees), one row per depth backend (default:
geometric inflation above the learned shape prior) -- as docs/gallery/NAME.jpg.

    python tools/make_gallery.py                    # coffee (bundled), rocket, chelsea, astronaut, logo (skimage)
    python tools/make_gallery.py --inputs coffee --preset fast --set fit.iterations=20 --out-dir /tmp/gallery

Inputs are names of the built-in photos (coffee: splat4d/assets/coffee.jpg; rocket, chelsea, astronaut, logo:
skimage.data, saved to PNG in the work folder first) or paths to images. Each run's folder (scene.ply, orbit.mp4, ...) stays in
--work-dir, and a re-run resumes from its cache.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import splat4d  # noqa: F401  first: its thread policy must be set before torch loads OpenMP
import torch
import yaml
from PIL import Image, ImageDraw, ImageFont

from splat4d import paths
from splat4d.config import RunConfig, apply_overrides, load_preset
from splat4d.io.ply import read_ply
from splat4d.pipeline import resolve_device, run
from splat4d.render import backend_for
from splat4d.render.frames import render_frames

ROOT = Path(__file__).resolve().parents[1]
AZIMUTHS = (0, 60, 120, 180, 240, 300)
BUILT_IN = ("coffee", "rocket", "chelsea", "astronaut", "logo")
SKIMAGE = ("rocket", "chelsea", "astronaut", "logo")  # logo is an RGBA cut-out: its alpha is the mask
LABEL_HEIGHT = 28


def input_image(name: str, work_dir: Path) -> Path:
    """The image file for a built-in name (skimage photos are written to PNG once) or a path given as is."""
    if name == "coffee":
        return ROOT / "splat4d" / "assets" / "coffee.jpg"
    if name in SKIMAGE:
        import skimage.data

        path = work_dir / "inputs" / f"{name}.png"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(getattr(skimage.data, name)()).save(path)
        return path
    path = Path(name)
    if not path.is_file():
        raise SystemExit(f"error: {name!r} is neither a built-in input ({', '.join(BUILT_IN)}) nor an image file")
    return path


def parse_overrides(pairs: list[str]) -> dict:
    """``["fit.iterations=20", "load.resolution=64"]`` -> the nested mapping ``apply_overrides`` takes."""
    nested: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: --set wants KEY=VALUE, got {pair!r}")
        *parents, leaf = key.strip().split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return nested


def render_azimuths(scene_path: Path, cfg: RunConfig, metrics: dict, size: int) -> list[np.ndarray]:
    """The scene from AZIMUTHS on the orbit the run's video uses (about the object's up axis; radius, elevation,
    field of view as in splat4d.pipeline.orbit_path)."""
    device = resolve_device(cfg.device)
    scene = read_ply(scene_path).to(device)
    input_elevation = metrics.get("elevation_deg")
    elevation = cfg.video.elevation_deg
    if elevation is None:
        elevation = input_elevation if input_elevation is not None else 10.0
    path = paths.orbit(radius=cfg.init.distance, elevation_deg=elevation, frames=len(AZIMUTHS), width=size,
                       height=size, fov_y_deg=float(metrics["fov_deg"]), start_azimuth_deg=AZIMUTHS[0],
                       degrees=360.0, up=paths.object_up(input_elevation))
    return [(frame.numpy() * 255).round().astype(np.uint8)
            for frame in render_frames(scene, path, backend=backend_for(device), background=torch.ones(3),
                                       progress=False)]


def contact_sheet(tiles: list[np.ndarray], labels: list[str], size: int) -> Image.Image:
    """One row of ``size`` x ``size`` tiles, each with its label underneath."""
    sheet = Image.new("RGB", (size * len(tiles), size + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=18)
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        sheet.paste(Image.fromarray(tile).convert("RGB").resize((size, size), Image.LANCZOS), (i * size, 0))
        width = draw.textlength(label, font=font)
        draw.text((i * size + (size - width) / 2, size + 4), label, fill="black", font=font)
    return sheet


def sheet_row(image: Path, stem: str, backend: str, args: argparse.Namespace, overrides: dict) -> Image.Image:
    """One row: the input crop and the scene from the six azimuths, for one depth backend."""
    cfg = load_preset(args.preset, RunConfig())
    cfg = apply_overrides(cfg, overrides, where="--set")
    cfg = dataclasses.replace(cfg, input=image, out=args.work_dir / f"{stem}-{backend}", progress=False,
                              depth=dataclasses.replace(cfg.depth, backend=backend))
    # 1. Reconstruct (cached in the work folder: a re-run resumes).
    result = run(cfg)
    # 2. Render the six azimuths on the video's orbit.
    views = render_azimuths(result.files["scene.ply"], cfg, result.metrics, args.size)
    # 3. Input crop (the working image the run saw) + the views, labelled.
    with Image.open(result.out / "views" / "view_000_input.png") as im:
        crop = np.asarray(im.convert("RGB"))
    return contact_sheet([crop] + views, [backend] + [f"{a}\N{DEGREE SIGN}" for a in AZIMUTHS], args.size)


def make_one(name: str, args: argparse.Namespace, overrides: dict) -> Path:
    image = input_image(name, args.work_dir)
    stem = name if name in BUILT_IN else image.stem
    rows = [sheet_row(image, stem, backend, args, overrides) for backend in args.backends]
    sheet = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)), "white")
    for i, row in enumerate(rows):
        sheet.paste(row, (0, i * rows[0].height))
    out = args.out_dir / f"{stem}.jpg"
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=90)
    print(f"wrote {out}")
    return out


def main(argv: list[str] | None = None) -> list[Path]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", nargs="+", default=list(BUILT_IN),
                    help=f"built-in names ({', '.join(BUILT_IN)}) or image paths (default: all built-in)")
    ap.add_argument("--preset", default="default", help="splat4d run preset: fast, default, quality or a YAML file")
    ap.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                    help="settings on top of the preset, e.g. fit.iterations=20 load.resolution=64")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "gallery", help="where the NAME.jpg sheets go")
    ap.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "gallery",
                    help="run folders and the skimage photos as PNG")
    ap.add_argument("--size", type=int, default=256, help="tile width and height in pixels")
    ap.add_argument("--backends", nargs="+", default=["geometric", "shape-prior"],
                    help="depth backends, one row each (the first tile of a row names it)")
    args = ap.parse_args(argv)
    overrides = parse_overrides(args.overrides)
    return [make_one(name, args, overrides) for name in args.inputs]


if __name__ == "__main__":
    main()

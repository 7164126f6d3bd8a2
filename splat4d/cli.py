"""``splat4d`` command line (tyro): every option's help text is the docstring under its config field."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro


@dataclass
class RenderArgs:
    """Render a Gaussian-splat scene (.ply, .splat, .spz) along a camera path to a video (.mp4 or .gif).

    Example: splat4d render scene.ply --path orbit --frames 120 --out orbit.mp4
    """

    scene: tyro.conf.Positional[Path]
    """Gaussian-splat scene: .ply (INRIA 3DGS layout, files from gsplat, nerfstudio, SuperSplat...; or SuperSplat's
    compressed .ply), .splat or .spz."""
    out: Path = Path("orbit.mp4")
    """Output video (.mp4 = H.264, .gif)."""
    path: str = "orbit"
    """Camera path: 'orbit' (full 360 turn), 'spiral' (orbit with rising/falling elevation), 'swing' (left-right
    about the front view), or a nerfstudio camera_path.json file."""
    frames: int = 120
    """Number of frames (ignored for camera_path.json, which lists its own)."""
    fps: float = 30.0
    """Frames per second."""
    width: int = 512
    """Frame width in pixels."""
    height: int = 512
    """Frame height in pixels."""
    fov: float = 40.0
    """Vertical field of view in degrees."""
    elevation: float = 15.0
    """Camera elevation above the orbit plane in degrees."""
    radius: float | None = None
    """Camera distance from the centre; default: fit the scene in the field of view."""
    center: tuple[float, float, float] | None = None
    """Orbit centre in world coordinates; default: the middle of the scene's Gaussians."""
    up: tuple[float, float, float] = (0.0, -1.0, 0.0)
    """World up vector (splat4d and COLMAP worlds are y-down, hence (0, -1, 0))."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Background colour (RGB in [0, 1])."""
    sh_degree: int | None = None
    """Highest spherical-harmonics degree to use (default: all the file has)."""
    backend: Literal["auto", "cpu", "gsplat", "reference"] = "auto"
    """Rasterizer: gsplat on CUDA, the numba tile rasterizer on CPU ('auto' picks by device)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to render."""
    crf: int = 16
    """H.264 constant-quality factor (lower = better quality, bigger file; x264 preset veryfast)."""


def render_command(args: RenderArgs) -> Path:
    import torch

    from splat4d import paths
    from splat4d.export import read_scene
    from splat4d.io.video import VideoWriter
    from splat4d.pipeline import resolve_device
    from splat4d.render.frames import render_frames

    if args.frames < 1:
        raise SystemExit("error: --frames must be at least 1")
    if args.width < 2 or args.height < 2:
        raise SystemExit("error: --width and --height must be at least 2")
    device = resolve_device(args.device)
    scene = read_scene(args.scene).to(device)
    if len(scene) == 0:
        raise SystemExit(f"error: {args.scene} holds no Gaussians")
    if args.path in ("orbit", "spiral", "swing"):
        center, distance = paths.frame_scene(scene.means, scene.opacities_act(), args.fov)
        center = torch.tensor(args.center, dtype=torch.float64) if args.center else center
        common = dict(center=center, radius=args.radius or distance, frames=args.frames, width=args.width,
                      height=args.height, fov_y_deg=args.fov, up=args.up, fps=args.fps)
        make = {"orbit": paths.orbit, "spiral": paths.spiral, "swing": paths.swing}[args.path]
        path = make(elevation_deg=args.elevation, **common)
    elif Path(args.path).suffix == ".json":
        path = paths.read_nerfstudio_camera_path(args.path)
    else:
        raise SystemExit(f"error: --path must be orbit, spiral, swing or a camera_path.json file, got {args.path!r}")
    background = torch.tensor(args.background)
    with VideoWriter(args.out, fps=path.fps, crf=args.crf) as writer:
        for frame in render_frames(scene, path, backend=args.backend, background=background,
                                   sh_degree=args.sh_degree, desc=f"render {args.out.name}"):
            writer.write(frame)
    print(f"wrote {args.out} ({writer.frames_written} frames, {path.cameras.width}x{path.cameras.height}, "
          f"{len(scene)} Gaussians)")
    return args.out


@dataclass
class InfoArgs:
    """Print a summary of a Gaussian-splat scene (.ply, .splat, .spz): count, SH degree, bounds, opacity, scales."""

    scene: tyro.conf.Positional[Path]
    """Gaussian-splat scene file (.ply, compressed .ply, .splat or .spz)."""


def info_command(args: InfoArgs) -> dict:
    import torch

    from splat4d.export import read_scene

    scene = read_scene(args.scene)
    n = len(scene)
    summary = {"file": str(args.scene), "gaussians": n, "sh_degree": scene.sh_degree}
    if n:
        opac = scene.opacities_act()
        scale = scene.scales_act().max(dim=1).values
        summary.update(
            bounds_min=[round(v, 4) for v in scene.means.min(0).values.tolist()],
            bounds_max=[round(v, 4) for v in scene.means.max(0).values.tolist()],
            opacity_median=round(float(opac.median()), 4),
            opacity_below_0_05=int((opac < 0.05).sum()),
            max_scale_median=round(float(scale.median()), 6),
            max_scale_p99=round(float(torch.quantile(scale, 0.99)), 6),
        )
    for key, value in summary.items():
        print(f"{key:>20}: {value}")
    return summary


def run_command(args) -> object:
    from splat4d.pipeline import run

    result = run(args)
    if args.view:
        serve(result.files["scene.ply"], "127.0.0.1", args.port, 40.0)
    return result


@dataclass
class ViewArgs:
    """Show a Gaussian-splat scene (.ply, .splat, .spz) in the browser (viser); prints the address, Ctrl-C stops.

    Example: splat4d view runs/photo/scene.ply --port 8080
    """

    scene: tyro.conf.Positional[Path]
    """Gaussian-splat scene (.ply, compressed .ply, .splat, .spz)."""
    port: int = 8080
    """Port to serve on."""
    host: str = "127.0.0.1"
    """Address to bind (127.0.0.1 = this machine only; 0.0.0.0 exposes it to the network)."""
    fov: float = 40.0
    """Initial vertical field of view in degrees."""


def serve(scene_path: Path, host: str, port: int, fov: float, block: bool = True):
    import time

    from splat4d.export import read_scene
    from splat4d.viewer import initial_camera, start_viewer

    scene = read_scene(scene_path)
    server = start_viewer(scene, host, port, initial_c2w=initial_camera(scene, fov), fov_deg=fov)
    print(f"viewing {scene_path} ({len(scene)} Gaussians) at http://{host}:{port}  (Ctrl-C to stop)")
    if not block:
        return server
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return None


def view_command(args: ViewArgs):
    return serve(args.scene, args.host, args.port, args.fov)


@dataclass
class AnimateArgs:
    """Animate a `splat4d run` result Make-It-4D style: a region of the input view moves along a direction, or every
    pixel by a flow image (looping), while the camera swings; writes an mp4.

    Example: splat4d animate runs/photo --region water.png --direction 6 0 --out runs/photo/animated.mp4
             splat4d animate runs/photo --flow motion.flo
    """

    run_dir: tyro.conf.Positional[Path]
    """Output folder of `splat4d run` (needs scene.ply and views/cameras.json)."""
    region: Path | None = None
    """Mask image (white = moves) over the input view (views/ image 0); resized to the working resolution."""
    direction: tuple[float, float] = (6.0, 0.0)
    """Peak motion of the region in input-view pixels (right, down)."""
    flow: Path | None = None
    """Instead of --region/--direction: a flow image over the input view, .flo (Middlebury) or .npy (H, W, 2), the
    peak motion in pixels of what each pixel shows; resized (vectors scaled) to the working resolution."""
    frames: int = 60
    """Frames of the loop."""
    fps: float = 30.0
    """Frames per second."""
    swing: float = 15.0
    """The camera swings +-this many degrees about the front view while the region moves."""
    size: int = 256
    """Video width and height."""
    out: Path | None = None
    """Output video (default RUN_DIR/animated.mp4)."""


def animate_command(args: AnimateArgs) -> Path:
    import numpy as np
    import torch
    from PIL import Image

    from splat4d import paths
    from splat4d.io.flow import read_flow, resize_flow
    from splat4d.io.ply import read_ply
    from splat4d.io.video import VideoWriter
    from splat4d.motion.animate import animate_flow
    from splat4d.motion.render import bullet_time_frames
    from splat4d.nerfstudio.export import CAMERAS_FILE, read_view_cameras

    if (args.region is None) == (args.flow is None):
        raise ValueError("give either --region (with --direction) or --flow")
    scene = read_ply(args.run_dir / "scene.ply")
    cameras, _ = read_view_cameras(args.run_dir / "views" / CAMERAS_FILE)
    camera = cameras[0]
    if args.flow is not None:
        flow = resize_flow(read_flow(args.flow), camera.width, camera.height)
        if not np.abs(flow).max() > 0:
            raise ValueError(f"{args.flow} is zero everywhere: nothing would move")
    else:
        if not args.region.is_file():
            raise FileNotFoundError(f"region mask not found: {args.region}")
        with Image.open(args.region) as im:
            region = np.asarray(im.convert("L").resize((camera.width, camera.height), Image.NEAREST)) > 127
        if not region.any():
            raise ValueError(f"{args.region} marks no pixel (white = moves)")
        flow = region[..., None] * np.asarray(args.direction, np.float64)
    motion = animate_flow(scene, camera, flow, args.frames)
    distance = float(camera.c2w[0, :3, 3].norm())
    path = paths.swing(radius=distance, amplitude_deg=args.swing, frames=args.frames, width=args.size,
                       height=args.size, fov_y_deg=float(camera.fov_y_deg()[0]), fps=args.fps, elevation_deg=0.0)
    path.times = torch.arange(args.frames) / max(1, args.frames - 1)  # frame i shows time i: a seamless loop
    out = args.out or args.run_dir / "animated.mp4"
    with VideoWriter(out, fps=args.fps) as writer:
        for frame in bullet_time_frames(motion, path):
            writer.write(frame)
    moving = int((motion.weights.abs().sum(1) > 0).sum())
    print(f"wrote {out} ({args.frames} frames; {moving} of {len(scene)} Gaussians move)")
    return out


@dataclass
class ModelsArgs:
    """List each backend, the model id or folder it loads, whether its weights are here, and how to get them."""

    depth_model: str | None = None
    """Also check this depth model (Hugging Face id or local folder)."""


def models_command(args: ModelsArgs) -> list[dict]:
    from splat4d.hub import model_table

    extra = [("depth", "transformers", args.depth_model, "--depth.model")] if args.depth_model else []
    rows = model_table(extra)
    print(f"{'stage':<6} {'backend':<13} {'model':<46} {'here':<5} {'what for':<42} how to get / where")
    for row in rows:
        status = "yes" if row["present"] else "no"
        detail = row["where"] if row["present"] else row["get"]
        print(f"{row['stage']:<6} {row['backend']:<13} {row['model']:<46} {status:<5} {row['note']:<42} {detail}")
    print("\nUse a learned depth model with: splat4d run photo.png --depth.backend transformers [--depth.model ID]")
    return rows


COMMANDS = {
    "run": ("splat4d.config:RunConfig", run_command),
    "render": (RenderArgs, render_command),
    "view": (ViewArgs, view_command),
    "export": (None, None),  # a group: `splat4d export FORMAT ...` (splat4d.export.FORMATS)
    "info": (InfoArgs, info_command),
    "models": (ModelsArgs, models_command),
    "animate": (AnimateArgs, animate_command),
    "toon": ("splat4d.toon.cli:ToonArgs", "splat4d.toon.cli:toon_command"),
    "label": ("splat4d.toon.cli:LabelArgs", "splat4d.toon.cli:label_command"),
}
# A command is (arguments class, handler); either may be a "module:name" string, imported only when that command is
# used, so a command's heavy imports never slow `splat4d --help` or the other commands.
EXPORT_DOC = "Write a scene or a run folder in another format: splat4d export FORMAT --help lists a format's options."


def _resolve(spec):
    if isinstance(spec, str):
        import importlib

        module, name = spec.split(":")
        return getattr(importlib.import_module(module), name)
    return spec


def _first_line(cls) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0]


def _usage() -> str:
    lines = ["usage: splat4d {" + ",".join(COMMANDS) + "} [OPTIONS]", "",
             "splat4d: 3D Gaussian splatting from one image or a video.", "", "commands:"]
    for name, (spec, _) in COMMANDS.items():
        lines.append(f"  {name:<18} {EXPORT_DOC if spec is None else _first_line(_resolve(spec))}")
    lines += ["", "Run 'splat4d COMMAND --help' for the options of a command."]
    return "\n".join(lines)


def _export_usage() -> str:
    from splat4d.export import FORMATS

    lines = ["usage: splat4d export {" + ",".join(FORMATS) + "} [OPTIONS]", "", EXPORT_DOC, "", "formats:"]
    width = max(map(len, FORMATS)) + 2
    lines += [f"  {name:<{width}} {_first_line(cls)}" for name, (cls, _) in FORMATS.items()]
    return "\n".join(lines)


def _run_config(argv: list[str]):
    """`splat4d run`: a preset (--preset NAME or a YAML file) gives the defaults, the other flags override them."""
    import argparse

    from splat4d.config import RunConfig, load_preset

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--preset", default=None)
    preset = pre.parse_known_args(argv)[0].preset
    default = load_preset(preset) if preset else RunConfig()
    return tyro.cli(RunConfig, args=argv, default=default, prog="splat4d run")


def _parse(name: str, rest: list[str]):
    """(handler, parsed arguments) of command ``name``; None where only a usage was asked for."""
    if name == "run":
        return run_command, _run_config(rest)
    if name in ("export", "export-nerfstudio"):  # export-nerfstudio: the older spelling of export nerfstudio
        from splat4d.export import FORMATS

        fmt, rest = ("nerfstudio", rest) if name == "export-nerfstudio" else (rest[0] if rest else None, rest[1:])
        if fmt in (None, "-h", "--help"):
            print(_export_usage())
            return None
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; one of: {', '.join(FORMATS)}")
        cls, handler = FORMATS[fmt]
        return handler, tyro.cli(cls, args=rest, prog=f"splat4d export {fmt}")
    spec, handler = COMMANDS[name]
    return _resolve(handler), tyro.cli(_resolve(spec), args=rest, prog=f"splat4d {name}")


def main(argv: list[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return None
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS and name != "export-nerfstudio":
        print(_usage(), file=sys.stderr)
        raise SystemExit(f"error: unknown command {name!r}")
    try:
        parsed = _parse(name, rest)
        if parsed is None:
            return None
        handler, args = parsed
        return handler(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:  # bad input: one clear line, no traceback
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # Ctrl-C: a run's finished stages are cached (entries are atomic), the next resumes
        print("interrupted; re-run the same command to resume" if name == "run" else "interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def entrypoint() -> None:
    try:
        main()
        sys.stdout.flush()  # inside the try: a pipe closed early fails here, not in the interpreter's exit
    except BrokenPipeError:  # `splat4d info scene.ply | head -3`: the reader left early; not worth a traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own recipe (docs: signal, SIGPIPE)
        raise SystemExit(1) from None


if __name__ == "__main__":
    entrypoint()

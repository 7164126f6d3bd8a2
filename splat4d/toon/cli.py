"""`splat4d toon` and `splat4d label`: their arguments (tyro shows each field's docstring in --help) and handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tyro

from splat4d.config import DepthConfig
from splat4d.toon.align import AlignConfig
from splat4d.toon.fit import ToonFitConfig
from splat4d.toon.warp import WarpConfig


@dataclass
class ToonArgs:
    """A few inconsistent views of one scene (cartoons, sketches, casual photos) to 3D Gaussians (Toon3D).

    DIR holds images/ (2-10 views) and optionally points.json (from `splat4d label DIR`; without it correspondences
    come from feature matching) and depths/NAME.npy (per-image depth; else --depth.backend estimates it).

    Example: splat4d label scenes/shrek   then   splat4d toon scenes/shrek --out runs/shrek
    """

    input: tyro.conf.Positional[Path]
    """Folder with images/ (and optionally points.json, depths/)."""
    out: Path = Path("toon_out")
    """Output folder: scene.ply/.splat, interp.mp4, views/ (warped views, cameras.json), metrics.json."""
    points: Path | None = None
    """Correspondences file in the Toon3D labeler's layout (default: DIR/points.json when it exists)."""
    resolution: int = 256
    """Longest side of the working images in pixels (every view is resized to the first view's aspect)."""
    depth: DepthConfig = field(default_factory=lambda: DepthConfig(relief=0.0))
    """Per-image depth when DIR/depths/ has none (offline: 'geometric'; learned backends when weights exist)."""
    learned_depth: bool = True
    """With --depth.backend left at 'auto' (for drawings 'geometric') and no DIR/depths/: use a learned depth model
    whose weights are already here (Depth Anything V2 via transformers, else Marigold; nothing is downloaded)."""
    edge_threshold: float = 0.05
    """Pixels where the depth jumps by more than this (per pixel, relative to the largest depth) are left out."""
    align: AlignConfig = field(default_factory=AlignConfig)
    """Coarse alignment: cameras, focal lengths, depth scales and offsets."""
    warp: WarpConfig = field(default_factory=WarpConfig)
    """As-rigid-as-possible mesh warps."""
    fit: ToonFitConfig = field(default_factory=ToonFitConfig)
    """Gaussian splatting on the warped views."""
    video_frames: int = 24
    """Frames of interp.mp4 between consecutive input views."""
    fps: float = 24.0
    """Frames per second of interp.mp4."""
    seed: int = 0
    """Random seed (the fit's view order and interpolated views)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to fit and render."""
    progress: bool = True
    """Show progress bars."""


def toon_command(args: ToonArgs):
    from splat4d.toon.pipeline import run_toon

    return run_toon(args)


@dataclass
class LabelArgs:
    """Mark the same points in every view of a scene in the browser; saves DIR/points.json for `splat4d toon`.

    Click to add a point to the current image; drag to move it; right-click (or select + Delete) removes it;
    'unusable' drops a whole image. Point numbers are shared by all images: point 3 is the same spot everywhere.

    Example: splat4d label scenes/shrek --port 8765
    """

    input: tyro.conf.Positional[Path]
    """Folder with images/ (an existing points.json there is loaded)."""
    port: int = 8765
    """Port to serve on (0: any free port)."""
    host: str = "127.0.0.1"
    """Address to bind (127.0.0.1: this machine only)."""
    open_browser: bool = False
    """Open the page in the default browser."""


def label_command(args: LabelArgs):
    from splat4d.toon.label import serve_labeler

    return serve_labeler(args.input, args.host, args.port, open_browser=args.open_browser)

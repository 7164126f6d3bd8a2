"""Configuration of `splat4d run`: one dataclass per stage, every field documented in a line or two (tyro shows the
docstrings in ``--help``). Presets in ``configs/*.yaml`` override the defaults; command-line flags override both."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import tyro
import yaml

T = TypeVar("T")
Expert = Annotated[T, tyro.conf.Suppress]
"""An expert tunable: settable in a preset YAML (``--preset my.yaml``), left off the command line and its --help."""


def preset_dir() -> Path:
    """The preset YAML files: inside the installed package (a wheel ships the top-level configs/ there, see
    setup.py), else configs/ of the source checkout (editable installs)."""
    packaged = Path(__file__).resolve().parent / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "configs"


@dataclass
class LoadConfig:
    resolution: int = 256
    """Side of the square working image, in pixels."""
    max_input_pixels: Expert[int] = 80_000_000
    """Refuse bigger images (decompression bombs)."""


@dataclass
class SegmentConfig:
    method: Literal["auto", "alpha", "grabcut", "none"] = "auto"
    """'auto': the alpha channel if there is one, else 'grabcut' (border colours + GrabCut); 'none': whole frame."""
    padding: float = 0.12
    """Margin around the object (fraction of the side)."""
    border_width: Expert[int] = 6
    """Border pixels that model the background colour (grabcut)."""
    grabcut_iterations: Expert[int] = 4
    """GrabCut iterations after the border-colour seed."""
    grabcut_side: Expert[int] = 640
    """GrabCut runs on a copy at most this many px a side (or twice the working resolution, if more) and refines the
    object's outline on a crop at up to that size: its time grows with the pixels (24 s at 2048 px)."""
    min_fraction: Expert[float] = 0.002
    """A mask covering less of the image is empty (error)."""
    max_fraction: Expert[float] = 0.98
    """Bigger masks mean no object (error unless 'none')."""


@dataclass
class DepthConfig:
    backend: Literal["auto", "geometric", "shape-prior", "transformers", "marigold", "depthcrafter",
                     "stereo"] = "auto"
    """Depth estimator. 'auto': 'shape-prior' for a photo of an object, else 'geometric' (offline silhouette
    inflation). 'shape-prior': a small network trained in this repo on procedural objects (front, back, elevation).
    'transformers' (Depth Anything V2, Depth Pro), 'marigold', 'depthcrafter' (video): need weights.
    'stereo': SGBM on a rectified pair (--right)."""
    shape_front: Literal["network", "inflation"] = "network"
    """'shape-prior': where the front comes from: the network, or silhouette inflation (rim on the centre plane) with
    the network's thickness behind it."""
    shape_frame_model: Expert[bool] = True
    """'shape-prior' with the packaged weights: where the object runs into the photo's frame (its mask within 3% of
    the image of where the photo ends), read it with shape_prior_v13, trained on objects cut by the frame, instead of
    the default network (v24, trained on whole objects as v10 was; v10 takes such a cut for an object seen level)."""
    shape_steep_model: Expert[bool] = True
    """'shape-prior' with the packaged weights and no --init.elevation-deg: let shape_prior_v17, trained on cameras up
    to 80 degrees above, read the elevation first; where it reads 40 or more (a cup on its saucer from above) and so
    does shape_prior_v18 (a second opinion that knows flat cut-outs, which v17 takes for views from above), v17
    shapes the object for that elevation too, and the orbit turns about the object's up (v10, v13 and v24, whose
    data stop at 45, read a steeper view ever lower: v10 a cup from 65 degrees as 17-19)."""
    shape_two_pass: Expert[bool] = True
    """'shape-prior' without --init.elevation-deg: shape the object for the elevation the network estimates (a
    second pass) rather than hedged over every elevation it might be seen from (one pass)."""
    model: str | None = None
    """Hub id or folder; see `splat4d models`."""
    base_model: str | None = None
    """'depthcrafter': its Stable Video Diffusion pipeline."""
    steps: int = 4
    """Denoising steps ('marigold', 'depthcrafter')."""
    window: Expert[int] = 110
    """'depthcrafter': frames denoised together."""
    overlap: Expert[int] = 25
    """'depthcrafter': frames shared by consecutive windows."""
    max_disparity: int = 64
    """'stereo': largest disparity searched, in working pixels."""
    download: bool = False
    """Allow downloading missing weights (Hugging Face)."""
    thickness: float = 0.7
    """Height of the inflated shape (1: hemisphere)."""
    profile: float = 0.5
    """Cross-section exponent (0.5 round, less: boxier)."""
    scene_coverage: Expert[float] = 0.95
    """Masks this full get a ground-plane depth."""
    relief: float = 0.6
    """Relief height per unit of high-passed luminance."""
    relief_sigma: Expert[float] = 3.0
    """Low-pass sigma (pixels) of the relief."""


@dataclass
class InitConfig:
    fov_deg: float = 40.0
    """Vertical FoV of the input (or --multiview video)."""
    elevation_deg: float | None = None
    """Input camera's elevation above the object's horizon; default: the depth backend's estimate, else 0."""
    use_depth_fov: bool = True
    """Use a depth model's field of view (Depth Pro)."""
    distance: float = 2.5
    """Distance from the input camera to the object's centre."""
    closed: bool = True
    """Close the object: mirrored back, rim walls."""
    back_thickness: float = 1.0
    """Depth of the back surface relative to the front's."""
    back_placement: Expert[Literal["ray", "mirror"]] = "ray"
    """A predicted back surface (shape-prior): 'ray' on each pixel's ray, 'mirror' behind the front point."""
    back_color_source: Expert[Literal["mirror", "pixel"]] = "mirror"
    """Where a back point on a pixel's ray (back_placement 'ray') takes its colour: 'mirror' from the front point
    mirroring it across the object's upright plane facing the camera (a texture symmetric about it, as a mirrored
    back has it; the plane tipped by the input camera's elevation), 'pixel' from its own pixel."""
    scale_factor: float = 0.4
    """Gaussian size as a fraction of its pixel footprint."""
    back_scale_factor: float = 0.75
    """Like scale_factor, for the sparser back surface."""
    opacity: float = 0.98
    """Initial opacity of every Gaussian."""
    back_blur: float = 0.025
    """Vertical blur of the back colours (sigma/height)."""
    back_blur_horizontal: float = 0.3
    """Horizontal blur of the back colours (sigma / height)."""
    back_stride: int = 2
    """Sample the back surface every this many pixels."""
    surface_inset: Expert[float | None] = None
    """Move the front and back surfaces into the object by this many pixel footprints (along their normals, moving
    each point along its own ray), as much as a layer of Gaussians renders outside its centres seen edge-on. None:
    1.5 for a predicted back (shape-prior), 0 for the mirrored back."""
    solve_colors: int = 12
    """Iterations of the front colour solve (0: pixel colours)."""
    solve_rim: int = 2
    """Front pixels this near the silhouette keep their colour."""
    sh_degree: int = 0
    """Spherical-harmonics degree (0: view-independent colour)."""


@dataclass
class PriorConfig:
    backend: Literal["warp", "sd-inpaint", "zero123pp", "none"] = "warp"
    """Views of the unseen sides. 'warp' (offline): the init rendered around the object, holes inpainted.
    'sd-inpaint': Stable Diffusion fills those holes. 'zero123pp': six Zero123++ views. 'none': input only."""
    model: str = "stabilityai/stable-diffusion-2-inpainting"
    """'sd-inpaint': hub id or local folder of the pipeline."""
    prompt: str = "a photo of the same object seen from another side, plain white background"
    """'sd-inpaint': text prompt."""
    negative_prompt: Expert[str] = "blurry, text, watermark, extra objects"
    """'sd-inpaint': negative prompt."""
    steps: int = 25
    """'sd-inpaint': denoising steps."""
    guidance: float = 7.5
    """'sd-inpaint': classifier-free guidance scale."""
    sd_resolution: int = 512
    """'sd-inpaint': resolution it runs at (multiple of 8)."""
    zero123_model: str = "sudo-ai/zero123plus-v1.2"
    """'zero123pp': hub id or local folder of the weights."""
    zero123_pipeline: Expert[str] = "sudo-ai/zero123plus-pipeline"
    """'zero123pp': its pipeline code (hub id, folder or .py)."""
    download: bool = False
    """Allow downloading missing weights and pipeline code."""
    ring_views: int = 8
    """Target cameras on a ring around the object."""
    ring_elevation_deg: float = 10.0
    """Elevation of the ring above the object's horizon."""
    top_view: bool = True
    """Add a view from above."""
    top_elevation_deg: float = 60.0
    """Elevation of the top view."""
    min_weight: Expert[float] = 0.15
    """Loss weight of the view opposite the input."""
    max_weight: Expert[float] = 0.5
    """Loss weight of a view next to the input."""
    inpaint_radius: Expert[int] = 5
    """'warp': inpainting radius in pixels."""


@dataclass
class FitConfig:
    iterations: int = 150
    """Optimisation steps (one view per step)."""
    input_view_probability: float | None = None
    """Chance a step uses the input view; default 0.5, --multiview 1/(1+frames)."""
    ssim_weight: float = 0.2
    """Weight of D-SSIM against L1."""
    mask_weight: float = 0.5
    """Weight of the silhouette loss."""
    depth_weight: float = 0.2
    """Weight of the input view's depth loss."""
    opacity_reg: float = 0.0005
    """Weight of the mean-opacity regulariser."""
    scale_reg: float = 0.01
    """Weight of the penalty on too-large Gaussians."""
    max_scale_pixels: float = 6.0
    """Size (input pixels) above which scale_reg applies."""
    lr_means: float = 1.6e-4
    """Learning rate of the means (times scene extent)."""
    lr_scales: float = 5e-3
    """Learning rate of the log-scales."""
    lr_quats: float = 1e-3
    """Learning rate of the quaternions."""
    lr_opacities: float = 5e-2
    """Learning rate of the opacity logits."""
    lr_sh0: float = 2.5e-3
    """Learning rate of the DC colour."""
    densify: bool = True
    """Grow and prune Gaussians (gsplat's DefaultStrategy)."""
    refine_start: int = 50
    """First densification step."""
    refine_stop: int = 125
    """Last densification step."""
    refine_every: int = 25
    """Densify every this many steps."""
    grow_grad2d: Expert[float] = 0.0004
    """Screen-space gradient threshold for growing."""
    split_pixels: Expert[float] = 3.0
    """Growing Gaussians wider than this split."""
    prune_opacity: float = 0.02
    """Prune Gaussians below this opacity."""
    max_gaussians: int = 150_000
    """Stop growing beyond this many Gaussians."""
    log_every: Expert[int] = 25
    """Record the loss every this many steps."""
    plateau: Expert[float] = 0.05
    """Stop before ``iterations`` once the input view's mean loss over the last ``log_every`` steps is not this
    fraction below the window before's (from ``plateau_after`` steps on); 0 runs every step."""
    plateau_after: Expert[int] = 75
    """The earliest step ``plateau`` may stop at."""


@dataclass
class VideoConfig:
    frames: int = 120
    """Frames of the orbit video."""
    fps: float = 30.0
    """Frames per second."""
    size: int = 256
    """Width and height in pixels."""
    elevation_deg: float | None = None
    """Orbit elevation above the object's horizon; default: the input camera's when the depth backend estimates
    it (the object turns as photographed), else 10."""
    write_splat: bool = True
    """Also write scene.splat."""


@dataclass
class MotionConfig:
    """Motion-aware mode and its fit (``splat4d.motion.fit``)."""

    max_frames: int = 16
    """Frames taken from the video, evenly spaced."""
    num_bases: int = 8
    """Shared motion bases."""
    se3: bool = False
    """Bases also rotate (turning, spinning things)."""
    lr_rotations: Expert[float] = 2e-2
    """Learning rate of the bases' rotations."""
    iterations: int = 300
    """Steps of the motion fit."""
    lr_bases: float = 2e-2
    """Learning rate of the bases."""
    lr_weights: float = 5e-2
    """Learning rate of the per-Gaussian weights."""
    lr_colors: float = 2.5e-3
    """Learning rate of the colours."""
    mask_weight: float = 0.5
    """Weight of the silhouette loss."""
    depth_weight: float = 1.0
    """Weight of the per-frame depth loss."""
    smooth_weight: float = 1.0
    """Weight of the bases' acceleration."""
    static_weight: Expert[float] = 1e-3
    """L1 weight pulling Gaussians to stand still."""
    coherence_weight: float = 10.0
    """Weight tying neighbours' motion together."""
    neighbours: Expert[int] = 8
    """Neighbours per Gaussian (coherence)."""
    swing_deg: float = 30.0
    """Bullet-time camera swing, +- degrees."""


@dataclass
class SfmConfig:
    """Multi-view mode (``--multiview``): camera poses of a video around a still object (``splat4d.sfm``)."""

    max_frames: int = 24
    """Frames taken from the video, evenly spaced."""
    features: Expert[int] = 4000
    """SIFT features per frame."""
    ratio: float = 0.9
    """Lowe's ratio test for matches."""
    match_window: Expert[int] = 3
    """Registered frames each new frame is matched with."""
    min_parallax_deg: Expert[float] = 2.0
    """Median parallax wanted for the first pair."""
    pnp_error_px: Expert[float] = 2.0
    """RANSAC reprojection threshold in pixels."""
    min_inliers: Expert[int] = 12
    """Fewer PnP inliers: the frame stays unused."""
    bundle_iterations: Expert[int] = 30
    """Bundle-adjustment steps (0: none)."""
    silhouette_agreement: Expert[float] = 0.8
    """Share of points a frame's mask must hold."""
    min_registered: float = 0.5
    """Error when a smaller share of frames gets a pose."""
    prior_min_angle_deg: float = 40.0
    """Drop prior views nearer a video frame."""


@dataclass
class RunConfig:
    """One image or a short clip -> a 360-degree Gaussian-splat scene (.ply, .splat, orbit video).

    Writes scene.ply, scene.splat, orbit.mp4, views/, depth.png, mask.png, config.yaml and metrics.json into
    --out. Stages are cached there: a re-run resumes, a changed setting re-runs only what reads it. Examples:
      splat4d run photo.png --out runs/photo     # one image, default preset
      splat4d run photo.png --preset fast        # presets: fast, default, quality
      splat4d run clip.mp4 --motion              # a moving object filmed by a still camera (4D)
      splat4d run clip.mp4 --multiview           # a camera moving around a still object
      splat4d run left.png --right right.png     # a rectified stereo pair

    Expert tunables (GrabCut, SfM internals, densification details) are set in a preset file: --preset my.yaml
    """

    input: tyro.conf.Positional[Path] = Path("photo.png")
    """Image, or clip (--motion, --multiview)."""
    right: Path | None = None
    """Right image/clip of a rectified stereo pair."""
    side_by_side: bool = False
    """Input is a stereo pair side by side."""
    out: Path = Path("runs/out")
    """Output folder."""
    preset: str | None = None
    """fast, default, quality or a YAML file."""
    seed: int = 0
    """Random seed; a run is deterministic for a seed."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to fit and render."""
    resume: bool = True
    """Reuse cached stages whose inputs and settings match."""
    progress: bool = True
    """Show progress bars."""
    view: bool = False
    """Open the browser viewer (viser) when done."""
    port: int = 8080
    """Port of the --view viewer (127.0.0.1)."""
    load: LoadConfig = field(default_factory=LoadConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    init: InitConfig = field(default_factory=InitConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    """Motion-aware mode (--motion)."""
    motion_mode: Annotated[bool, tyro.conf.arg(aliases=("--motion",))] = False
    """Motion (4D): the input is a clip from a still camera."""
    multiview: bool = False
    """Multi-view: a clip around a still object."""
    sfm: SfmConfig = field(default_factory=SfmConfig)
    """Multi-view mode's camera poses (--multiview)."""


def to_dict(value: Any) -> Any:
    """Plain data for YAML/JSON and cache keys: dataclasses as dicts, tuples as lists, paths as strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_dict(v) for v in value]
    if isinstance(value, dict):
        return {k: to_dict(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def apply_overrides(cfg: Any, overrides: dict, where: str = "config") -> Any:
    """A copy of dataclass ``cfg`` with nested ``overrides`` applied; unknown keys raise ``ValueError``."""
    changes = {}
    names = {f.name: f for f in dataclasses.fields(cfg)}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(names))})")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {key!r} must be a mapping")
            changes[key] = apply_overrides(current, value, f"{where}.{key}")
        elif isinstance(current, Path) or (key in ("input", "out") and value is not None):
            changes[key] = Path(value)
        else:
            changes[key] = value
    return dataclasses.replace(cfg, **changes)


def preset_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    folder = preset_dir()
    candidate = folder / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    raise ValueError(f"unknown preset {name!r}: use one of {known} or a path to a .yaml file")


def load_preset(name: str, base: RunConfig | None = None) -> RunConfig:
    path = preset_path(name)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a preset must be a YAML mapping")
    cfg = apply_overrides(base or RunConfig(), data, where=str(path))
    return dataclasses.replace(cfg, preset=name)


"""Configuration of the single-image pipeline: one dataclass per stage, every field documented (tyro shows the
docstrings in ``--help``). Presets in ``configs/*.yaml`` override the defaults; command-line flags override both."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class LoadConfig:
    resolution: int = 256
    """Working resolution: the object is centred, padded to a square and resized to this many pixels a side."""
    max_input_pixels: int = 80_000_000
    """Refuse images with more pixels than this (decompression-bomb guard); big images are downscaled on load."""


@dataclass
class SegmentConfig:
    method: Literal["auto", "alpha", "grabcut", "none"] = "auto"
    """'alpha': use the alpha channel; 'grabcut': border-colour model + OpenCV GrabCut; 'auto': alpha when the image
    has a non-trivial one, else grabcut; 'none': the whole frame is the object (scene mode)."""
    padding: float = 0.12
    """Margin around the object's bounding box, as a fraction of the square side."""
    border_width: int = 6
    """Pixels along the image border used to model the background colour (grabcut)."""
    grabcut_iterations: int = 4
    """GrabCut iterations (after the border-colour seed)."""
    min_fraction: float = 0.002
    """A mask covering less of the image than this is treated as empty (error)."""
    max_fraction: float = 0.98
    """A mask covering more than this is treated as 'no object found' (error unless method='none')."""


@dataclass
class DepthConfig:
    backend: Literal["geometric", "transformers", "marigold", "depthcrafter", "stereo"] = "geometric"
    """Depth estimator. 'geometric' (offline, no weights): silhouette inflation, a Poisson height field inside the
    mask giving rounded shapes (a disc becomes a hemisphere), plus a small image-detail relief. 'transformers': a
    learned model through transformers' AutoModelForDepthEstimation (--depth.model), needs its weights. 'marigold':
    diffusers' MarigoldDepthPipeline (affine-invariant depth in 1-4 steps), needs its weights. 'depthcrafter':
    DepthCrafter video depth (Stable Video Diffusion UNet fine-tuned for depth; consistent over a whole clip, for
    --motion), needs its weights and in practice a GPU. 'stereo': SGBM on a rectified pair (--right)."""
    model: str | None = None
    """Hugging Face id or local folder of the learned depth model; default depth-anything/Depth-Anything-V2-Small-hf
    ('transformers'; apple/DepthPro-hf gives metric depth), prs-eth/marigold-depth-lcm-v1-0 ('marigold') or
    tencent/DepthCrafter ('depthcrafter', its UNet)."""
    base_model: str | None = None
    """'depthcrafter' only: Stable Video Diffusion pipeline giving the VAE, CLIP image encoder and scheduler; default
    stabilityai/stable-video-diffusion-img2vid-xt."""
    steps: int = 4
    """Denoising steps of the 'marigold' and 'depthcrafter' backends (DepthCrafter's authors use 5)."""
    window: int = 110
    """'depthcrafter': frames denoised together; longer clips go in windows sharing ``overlap`` frames."""
    overlap: int = 25
    """'depthcrafter': frames shared by consecutive windows (blended linearly)."""
    max_disparity: int = 64
    """Largest disparity (pixels at the working resolution) the 'stereo' backend searches."""
    download: bool = False
    """Allow downloading missing weights from the Hugging Face hub (off: only local files and the cache are used)."""
    thickness: float = 0.7
    """Scale of the inflated height (1 = a disc inflates to a hemisphere; 0.7 scored best on the held-out views of
    tools/bench_quality.py)."""
    profile: float = 0.5
    """Shape of the inflated cross-section: height ~ u^profile with u the Poisson solution (0.5 = round, a disc
    becomes a hemisphere; smaller = flatter top and steeper sides, boxier)."""
    scene_coverage: float = 0.95
    """When the mask covers at least this fraction of the frame (a scene, e.g. --segment.method none), the
    geometric backend uses a ground-plane prior (nearer towards the bottom) instead of inflating a dome."""
    relief: float = 0.6
    """Image-detail relief in pixels of height per unit of high-passed luminance (brighter = nearer)."""
    relief_sigma: float = 3.0
    """Gaussian sigma (pixels) of the low-pass subtracted to get the relief detail."""


@dataclass
class InitConfig:
    fov_deg: float = 40.0
    """Vertical field of view assumed for the input camera (with --multiview: of the video's frames)."""
    use_depth_fov: bool = True
    """Use the field of view the depth model infers (Depth Pro) instead of ``fov_deg`` when it gives one."""
    distance: float = 2.5
    """Distance from the input camera to the object's centre plane (world units)."""
    closed: bool = True
    """Close the object with a mirrored back surface and rim walls; False keeps only the front surface (scenes)."""
    back_thickness: float = 1.0
    """Depth of the back surface relative to the front's (1 = mirror-symmetric object)."""
    scale_factor: float = 0.4
    """Gaussian standard deviation as a fraction of the pixel footprint at its depth."""
    back_scale_factor: float = 0.75
    """Like ``scale_factor`` for the (sparser, colour-approximate) back surface: larger, so it has no gaps."""
    opacity: float = 0.98
    """Initial opacity of every Gaussian."""
    back_blur: float = 0.025
    """Vertical Gaussian blur (sigma, as a fraction of the image height) of the colours the back surface copies from
    the input: the far side is a guess, and a soft guess scored better on held-out back views
    (tools/bench_quality.py)."""
    back_blur_horizontal: float = 0.3
    """Horizontal blur (sigma, fraction of the image height) of the back colours. Much larger than the vertical one:
    objects stand upright and are often round about the vertical axis (mugs, bottles, figures), so the unseen side
    keeps the front's colours row by row (a red hat stays on top) while where they sit around the axis is unknown.
    Measured: mean held-out PSNR 19.09 -> 19.42 dB over an isotropic 0.025 (tools/bench_quality.py)."""
    back_stride: int = 2
    """Sample the back surface every this many pixels (it is seen at lower resolution)."""
    solve_colors: int = 12
    """Conjugate-gradient iterations of the least-squares colour solve that makes the front view re-render the
    input (0 = raw pixel colours)."""
    solve_rim: int = 2
    """The colour solve leaves the front Gaussians within this many pixels of the silhouette at their pixel's colour
    (the surface is seen edge-on there; solving them made near-white streaks at the sides). The back surface and the
    rim walls are never solved. Held-out PSNR (tools/bench_quality.py): everything solved 19.42, front only 19.70,
    front without a 2 px rim 19.80 dB."""
    sh_degree: int = 0
    """Spherical-harmonics degree of the scene (0 = view-independent colour)."""


@dataclass
class PriorConfig:
    backend: Literal["warp", "sd-inpaint", "zero123pp", "none"] = "warp"
    """View prior. 'warp' (offline): render the initial scene from the target cameras, inpaint disocclusions
    (OpenCV Telea) inside the object's closed silhouette; the back surface carries mirrored texture. 'sd-inpaint':
    the same warped views, holes filled by a Stable Diffusion inpainting model, progressively (nearest view first;
    each filled view is lifted into the scene so the next one sees it). 'zero123pp': six views at Zero123++'s fixed
    poses from one diffusion sample. 'none': input view only."""
    model: str = "stabilityai/stable-diffusion-2-inpainting"
    """Hugging Face id or local folder of the 'sd-inpaint' pipeline."""
    prompt: str = "a photo of the same object seen from another side, plain white background"
    """Text prompt of the inpainting model."""
    negative_prompt: str = "blurry, text, watermark, extra objects"
    """Negative prompt of the inpainting model."""
    steps: int = 25
    """Denoising steps of the inpainting model."""
    guidance: float = 7.5
    """Classifier-free guidance scale of the inpainting model."""
    sd_resolution: int = 512
    """Resolution the inpainting model runs at (views are resized to it and back; a multiple of 8)."""
    zero123_model: str = "sudo-ai/zero123plus-v1.2"
    """Hugging Face id or local folder of the Zero123++ weights."""
    zero123_pipeline: str = "sudo-ai/zero123plus-pipeline"
    """Zero123++'s custom diffusers pipeline: a hub id, or a local folder/.py file with its code."""
    download: bool = False
    """Allow downloading missing weights (and pipeline code) from the Hugging Face hub."""
    ring_views: int = 8
    """Target cameras on a ring around the object (the input azimuth 0 is skipped)."""
    ring_elevation_deg: float = 10.0
    """Elevation of the ring."""
    top_view: bool = True
    """Add a view from above (elevation ``top_elevation_deg``)."""
    top_elevation_deg: float = 60.0
    """Elevation of the top view."""
    min_weight: float = 0.15
    """Loss weight of the view opposite the input; weights rise to ``max_weight`` near the input azimuth."""
    max_weight: float = 0.5
    """Loss weight of a generated view next to the input view."""
    inpaint_radius: int = 5
    """OpenCV inpainting radius in pixels."""


@dataclass
class FitConfig:
    iterations: int = 300
    """Optimisation steps (one view per step)."""
    input_view_probability: float | None = None
    """Probability that a step trains on the input view (the others pick one of the other views). Default: 0.5 for
    a single image (its generated views are guesses); with --multiview every real frame is as likely as the input
    (measured on the multi-view test object: +0.4-0.9 dB on held-out views over 0.5 at the same cost)."""
    ssim_weight: float = 0.2
    """Weight of D-SSIM against L1 in the photometric loss."""
    mask_weight: float = 0.5
    """Weight of the |alpha - mask| silhouette loss."""
    depth_weight: float = 0.2
    """Weight of the L1 loss between rendered and initial depth on the input view (relative to object depth)."""
    opacity_reg: float = 0.0005
    """Weight of the mean-opacity regulariser (pushes unneeded Gaussians to transparency)."""
    scale_reg: float = 0.01
    """Weight of the penalty on Gaussians larger than ``max_scale_pixels`` pixels at the object distance."""
    max_scale_pixels: float = 6.0
    """Largest Gaussian standard deviation (in input-view pixels) before ``scale_reg`` applies."""
    lr_means: float = 1.6e-4
    """Adam learning rate of the means, times the scene extent."""
    lr_scales: float = 5e-3
    """Adam learning rate of the log-scales."""
    lr_quats: float = 1e-3
    """Adam learning rate of the quaternions."""
    lr_opacities: float = 5e-2
    """Adam learning rate of the opacity logits."""
    lr_sh0: float = 2.5e-3
    """Adam learning rate of the DC colour."""
    densify: bool = True
    """Grow (clone/split) and prune Gaussians with gsplat's DefaultStrategy."""
    refine_start: int = 100
    """First step of densification."""
    refine_stop: int = 250
    """Last step of densification."""
    refine_every: int = 50
    """Densify every this many steps."""
    grow_grad2d: float = 0.0004
    """Screen-space gradient threshold for growing (gsplat's grow_grad2d)."""
    split_pixels: float = 3.0
    """Gaussians wider than this many input-view pixels are split when they grow; smaller ones are cloned."""
    prune_opacity: float = 0.02
    """Prune Gaussians below this opacity."""
    max_gaussians: int = 150_000
    """Stop growing beyond this many Gaussians."""
    log_every: int = 25
    """Record the loss every this many steps (metrics.json)."""


@dataclass
class VideoConfig:
    frames: int = 120
    """Frames of the orbit video."""
    fps: float = 30.0
    """Frames per second."""
    size: int = 256
    """Video width and height in pixels."""
    elevation_deg: float = 10.0
    """Orbit elevation."""
    write_splat: bool = True
    """Also write scene.splat (antimatter15 format)."""


@dataclass
class MotionConfig:
    """Motion-aware mode and its fit (``splat4d.motion.fit``)."""

    max_frames: int = 16
    """Frames taken from the video (evenly spaced)."""
    num_bases: int = 8
    """Shared motion bases."""
    se3: bool = False
    """SE(3) bases: every basis also rotates (about the scene's centre) instead of only translating; for turning
    and spinning objects."""
    lr_rotations: float = 2e-2
    """Adam learning rate of the bases' rotations (radians; divided by num_bases like the translations)."""
    iterations: int = 300
    """Optimisation steps of the motion fit."""
    lr_bases: float = 2e-2
    """Adam learning rate of the bases' sum (each basis gets lr / num_bases)."""
    lr_weights: float = 5e-2
    """Adam learning rate of the per-Gaussian coefficients."""
    lr_colors: float = 2.5e-3
    """Adam learning rate of the colours."""
    mask_weight: float = 0.5
    """Weight of the silhouette loss."""
    depth_weight: float = 1.0
    """Weight of the per-frame depth loss."""
    smooth_weight: float = 1.0
    """Weight of the squared acceleration of the bases (smooth trajectories)."""
    static_weight: float = 1e-3
    """Weight of the L1 penalty on the coefficients (most things do not move)."""
    coherence_weight: float = 10.0
    """Weight of the coefficient difference between neighbouring Gaussians (things move together locally)."""
    neighbours: int = 8
    """Neighbours per Gaussian in the coherence term."""
    seed: int = 0
    """Random seed of the motion fit."""
    swing_deg: float = 30.0
    """The bullet-time camera sweeps from -swing to +swing degrees around the front while time runs."""


@dataclass
class SfmConfig:
    """Multi-view mode (`--multiview`): camera poses of a video that moves around a still object
    (``splat4d.sfm``: SIFT, essential matrix, PnP, bundle adjustment)."""

    max_frames: int = 24
    """Frames taken from the video (evenly spaced)."""
    features: int = 4000
    """SIFT features per frame (on the object)."""
    ratio: float = 0.9
    """Lowe's ratio test for feature matches (0.9 registered more frames than 0.8 on the benchmark's box and gave
    better held-out views on the test object; RANSAC and PnP remove the extra wrong matches)."""
    match_window: int = 3
    """Each new frame is matched with this many registered frames nearest in time (longer tracks tie the poses
    together over wider baselines)."""
    min_parallax_deg: float = 2.0
    """Median triangulation angle wanted between the first frame and the frame it is first paired with."""
    pnp_error_px: float = 2.0
    """RANSAC reprojection threshold in pixels (essential matrix and PnP)."""
    min_inliers: int = 12
    """A frame with fewer PnP inliers stays unregistered (and unused)."""
    bundle_iterations: int = 30
    """Levenberg-Marquardt steps of the final bundle adjustment (0 = none)."""
    silhouette_agreement: float = 0.8
    """A registered frame is dropped when fewer than this fraction of the points inside frame 0's silhouette project
    inside its own: every point of a still object must (a visual-hull check; it catches grossly wrong poses, not
    small errors)."""
    min_registered: float = 0.5
    """Stop with an error when fewer than this fraction of the frames get a pose."""
    prior_min_angle_deg: float = 40.0
    """Views of the view prior closer than this (angle about the object) to a video frame are left out: the real
    frame is better."""


@dataclass
class RunConfig:
    """Single image (or RGBA cut-out) -> 360-degree Gaussian-splat object: scene.ply, scene.splat, orbit.mp4, views/,
    depth.png, mask.png, config.yaml, metrics.json in the output folder. Stages are cached there: a re-run with the
    same input and settings resumes.

    Example: splat4d run photo.png --out runs/photo --preset fast
    """

    input: Path = Path("photo.png")
    """Input image (PNG/JPEG/TIFF/WebP...; RGB, RGBA, greyscale or 16-bit)."""
    right: Path | None = None
    """Right image of a rectified stereo pair (the input is the left one): depth then comes from stereo matching
    (OpenCV SGBM with a left-right check) instead of --depth.backend. With --motion: the right video (or folder of
    frames) of a stereo clip."""
    side_by_side: bool = False
    """The input holds a rectified stereo pair side by side (left view | right view), an image or, with --motion, a
    video: depth comes from stereo matching as with --right."""
    out: Path = Path("runs/out")
    """Output folder."""
    preset: str | None = None
    """Preset name in configs/ (fast, default, quality) or a YAML file; command-line flags override it."""
    seed: int = 0
    """Random seed (the whole run is deterministic for a given seed)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to fit and render."""
    resume: bool = True
    """Reuse cached stage outputs in the output folder when their inputs and settings match."""
    progress: bool = True
    """Show progress bars."""
    view: bool = False
    """Open the result in the browser viewer (viser) when the run is done; Ctrl-C stops it."""
    port: int = 8080
    """Port of the viewer started by --view (bound to 127.0.0.1)."""
    load: LoadConfig = field(default_factory=LoadConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    init: InitConfig = field(default_factory=InitConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    """Settings of the motion-aware mode (`--motion` with a video or a folder of frames)."""
    motion_mode: bool = False
    """Motion-aware (4D) mode: the input is a short video (or a folder of frames) from a still camera."""
    multiview: bool = False
    """Multi-view mode: the input video (or folder of frames) moves around a still object; camera poses are
    estimated and every registered frame supervises the fit next to the view prior."""
    sfm: SfmConfig = field(default_factory=SfmConfig)
    """Settings of the multi-view mode's pose estimation."""


def to_dict(cfg: Any) -> dict:
    """Plain dict (Paths as strings) for YAML/JSON."""

    def convert(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [convert(x) for x in v]
        return v

    return convert(dataclasses.asdict(cfg))


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
    candidate = CONFIG_DIR / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) if CONFIG_DIR.is_dir() else []
    raise ValueError(f"unknown preset {name!r}: use one of {known} or a path to a .yaml file")


def load_preset(name: str, base: RunConfig | None = None) -> RunConfig:
    path = preset_path(name)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a preset must be a YAML mapping")
    cfg = apply_overrides(base or RunConfig(), data, where=str(path))
    return dataclasses.replace(cfg, preset=name)


"""Gaussian fit on the warped views (Toon3D step 7), one explicit loop.

The scene starts as one Gaussian per ``init_stride``-th usable pixel of every warped view, lifted with its camera and
warped depth. Per step (the views in turn):

    L = (1 - ssim_weight) * masked L1 + ssim_weight * masked D-SSIM + mask_weight * |alpha - object| (usable pixels)
        + depth_weight * masked |depth - warped depth| / mean depth
        + tv_weight * TV(rendered depth) / mean depth                                 (depth smoothness)

and every ``novel_every``-th step instead a view interpolated between two input cameras (SLERP of the rotations,
linear centres and intrinsics) where only the depth TV applies: it keeps the geometry smooth where no input looks
(Toon3D's novel-view regulariser). Adam per parameter with splat4d.fit's optimisers; optional densification with
splat4d.fit's gsplat strategy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from splat4d.config import FitConfig
from splat4d.losses import psnr, ssim_map
from splat4d.render import rasterize
from splat4d.types import Cameras, GaussianScene, PARAM_KEYS

if TYPE_CHECKING:
    from gsplat.strategy import DefaultStrategy


@dataclass
class ToonFitConfig:
    """Gaussian splatting on the warped views."""

    iterations: int = 300
    """Optimisation steps (one view per step)."""
    init_stride: int = 2
    """One initial Gaussian per this many pixels (each way) of every usable warped pixel."""
    ssim_weight: float = 0.2
    """Weight of D-SSIM against L1."""
    mask_weight: float = 0.3
    """Weight of the silhouette term |alpha - object| on the usable pixels."""
    depth_weight: float = 0.1
    """Weight of the warped-depth term."""
    tv_weight: float = 1.0
    """Weight of the depth total variation on every rendered view (smooth surfaces)."""
    novel_every: int = 4
    """Every this many steps, a view interpolated between two inputs (depth TV only); 0: never."""
    # The learning rates default to `splat4d run`'s (one place to change them).
    lr_means: float = FitConfig.lr_means
    """Learning rate of the means (times the scene extent)."""
    lr_scales: float = FitConfig.lr_scales
    """Learning rate of the log-scales."""
    lr_quats: float = FitConfig.lr_quats
    """Learning rate of the quaternions."""
    lr_opacities: float = FitConfig.lr_opacities
    """Learning rate of the opacity logits."""
    lr_sh0: float = FitConfig.lr_sh0
    """Learning rate of the colours."""
    densify: bool = False
    """Grow and prune Gaussians (gsplat's DefaultStrategy, as `splat4d run`)."""


@dataclass
class ToonViews:
    """The warped views the scene is fitted to (V views of one size)."""

    images: Tensor
    """(V, H, W, 3) warped colours."""
    usable: Tensor
    """(V, H, W) bool: covered by the warp, outside excluded polygons and depth edges."""
    objects: Tensor
    """(V, H, W) bool: usable pixels that show the scene (a depth), not the background."""
    depth: Tensor
    """(V, H, W) camera z (0 where unknown)."""
    cameras: Cameras
    """The aligned cameras."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass
class ToonFitResult:
    scene: GaussianScene
    history: list[dict] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    """Per view, masked PSNR of the final render against the warped view."""
    seconds: float = 0.0


def initial_gaussians(views: ToonViews, stride: int, opacity: float = 0.7) -> GaussianScene:
    """One Gaussian per ``stride``-th object pixel of every view, on its warped depth; isotropic, as wide as
    ``stride`` pixels there."""
    means, colours, sizes = [], [], []
    H, W = views.images.shape[1:3]
    rows, cols = np.mgrid[0:H:stride, 0:W:stride]
    for i in range(len(views.images)):
        keep = views.objects[i][rows, cols].numpy()
        r, c = torch.from_numpy(rows[keep]), torch.from_numpy(cols[keep])
        z = views.depth[i][r, c].double()
        uv = Cameras.pixel_centers(r, c)
        means.append(views.cameras[i].unproject(uv, z)[0])
        colours.append(views.images[i][r, c].double())
        sizes.append(views.cameras[i].pixel_footprint(z)[0] * stride * 0.6)
    means, colours, sizes = torch.cat(means), torch.cat(colours), torch.cat(sizes)
    if len(means) == 0:
        raise ValueError("no usable pixel with a depth in any warped view: nothing to fit")
    return GaussianScene.from_activated(means.float(), sizes[:, None].expand(-1, 3).float(), colours.float(),
                                        torch.full((len(means),), opacity))


def depth_tv(depth: Tensor, alpha: Tensor) -> Tensor:
    """Mean absolute difference of neighbouring rendered depths (H, W), where both pixels are covered."""
    w = (alpha > 0.5).float()
    dx = (depth[:, 1:] - depth[:, :-1]).abs() * w[:, 1:] * w[:, :-1]
    dy = (depth[1:] - depth[:-1]).abs() * w[1:] * w[:-1]
    return (dx.sum() + dy.sum()) / (w.sum() + 1.0)


def interpolate_cameras(cameras: Cameras, a: int, b: int, t: float) -> Cameras:
    """The camera a fraction ``t`` of the way from camera ``a`` to ``b``: SLERP of the rotations, linear centres
    and intrinsics."""
    from scipy.spatial.transform import Rotation, Slerp

    c2w, K = cameras.c2w.detach().double().cpu(), cameras.K.detach().double().cpu()
    rots = Rotation.from_matrix(c2w[[a, b], :3, :3].numpy())
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3] = torch.from_numpy(Slerp([0.0, 1.0], rots)([t]).as_matrix()[0])
    out[:3, 3] = (1 - t) * c2w[a, :3, 3] + t * c2w[b, :3, 3]
    K_t = (1 - t) * K[a] + t * K[b]
    return Cameras(out[None].to(cameras.c2w), K_t[None].to(cameras.K), cameras.width, cameras.height)


def camera_path_through(cameras: Cameras, frames_between: int) -> Cameras:
    """Cameras visiting every input camera in order, ``frames_between`` steps from one to the next (the last input
    camera is the last frame)."""
    out = []
    for a in range(len(cameras) - 1):
        out += [interpolate_cameras(cameras, a, a + 1, k / frames_between) for k in range(frames_between)]
    out.append(cameras[len(cameras) - 1])
    return Cameras.concat(out)


def fit_toon(views: ToonViews, cfg: ToonFitConfig, *, seed: int = 0, device: str | torch.device = "cpu",
             progress: bool = True) -> ToonFitResult:
    """Fit a Gaussian scene to ``views`` (see the module docstring); the scene comes back on the CPU."""
    from tqdm.auto import tqdm

    from splat4d.fit import finite_scene
    from splat4d.render import backend_for

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    backend = backend_for(device)
    scene, fit = start_fit(views, cfg, device)
    targets = ToonTargets.of(views, device)
    result = ToonFitResult(scene=scene)
    t0 = time.perf_counter()
    window: list[float] = []
    for step in tqdm(range(cfg.iterations), desc="fit", unit="step", disable=not progress, leave=False):
        window.append(fit_step(step, fit, targets, views, cfg, gen, backend))
        if (step + 1) % 25 == 0 or step == cfg.iterations - 1:
            result.history.append({"step": step + 1, "loss": sum(window) / len(window),
                                   "gaussians": len(fit.params["means"])})
            window = []
    result.scene = finite_scene(fit.params)
    result.psnr = view_psnrs(result.scene, targets, backend)
    result.scene = result.scene.to("cpu")
    result.seconds = time.perf_counter() - t0
    return result


@dataclass
class ToonFitState:
    """What the fit's loop updates: the parameters, their optimisers and the densification strategy."""

    params: torch.nn.ParameterDict
    optimizers: dict
    strategy: DefaultStrategy
    """Grows and prunes Gaussians (used only with ``densify``)."""
    state: dict
    """The strategy's state."""
    depth_scale: float
    """Mean warped depth of the object pixels: depth terms are relative to it."""


def start_fit(views: ToonViews, cfg: ToonFitConfig, device: torch.device) -> tuple[GaussianScene, ToonFitState]:
    """The initial scene (on ``device``) and the fit's parameters, optimisers and strategy."""
    from splat4d.fit import make_optimizers, make_strategy

    scene = initial_gaussians(views, cfg.init_stride).to(device)
    depth_scale = float(views.depth[views.objects].mean())
    scene_scale = max(float((scene.means - scene.means.mean(0)).norm(dim=1).max()), 1e-3)
    fit_cfg = FitConfig(iterations=cfg.iterations, lr_means=cfg.lr_means, lr_scales=cfg.lr_scales,
                        lr_quats=cfg.lr_quats, lr_opacities=cfg.lr_opacities, lr_sh0=cfg.lr_sh0,
                        densify=cfg.densify)
    params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone()) for k, v in scene.items()})
    optimizers = make_optimizers(params, fit_cfg, scene_scale)
    focal = float(views.cameras.K[0, 0, 0])
    strategy = make_strategy(fit_cfg, scene_scale, footprint=depth_scale / focal)
    state = strategy.initialize_state(scene_scale=scene_scale)
    return scene, ToonFitState(params, optimizers, strategy, state, depth_scale)


@dataclass
class ToonTargets:
    """The warped views on the fit's device, as the loop reads them."""

    images: Tensor
    usable: Tensor
    objects: Tensor
    depth: Tensor
    cameras: Cameras
    background: Tensor

    @staticmethod
    def of(views: ToonViews, device: torch.device) -> "ToonTargets":
        cameras = views.cameras.to(device, torch.float32)
        background = torch.tensor(views.background, dtype=torch.float32, device=device)
        images, usable, objects = views.images.float().to(device), views.usable.to(device), views.objects.to(device)
        depth = views.depth.float().to(device)
        return ToonTargets(images, usable, objects, depth, cameras, background)


def step_camera(step: int, cfg: ToonFitConfig, targets: ToonTargets,
                gen: torch.Generator) -> tuple[int | None, Cameras]:
    """The input view of this step (its index) or, every ``novel_every``-th step, a camera interpolated between two
    neighbouring inputs (index None)."""
    V = len(targets.images)
    if cfg.novel_every > 0 and V > 1 and step % cfg.novel_every == cfg.novel_every - 1:
        a = int(torch.randint(V - 1, (), generator=gen))
        return None, interpolate_cameras(targets.cameras, a, a + 1, float(torch.rand((), generator=gen)))
    return step % V, targets.cameras[step % V]


def fit_step(step: int, fit: ToonFitState, targets: ToonTargets, views: ToonViews, cfg: ToonFitConfig,
             gen: torch.Generator, backend: str) -> float:
    """One optimisation step (render, loss, Adam, densification); returns the loss."""
    from splat4d.fit import FitError, densify, strategy_info

    current = GaussianScene(**{k: fit.params[k] for k in PARAM_KEYS})
    i, camera = step_camera(step, cfg, targets, gen)
    out = rasterize(current, camera, backend=backend, background=targets.background, check_finite=False)
    d, alpha = out.depth[0, ..., 0], out.alpha[0, ..., 0]
    loss = cfg.tv_weight * depth_tv(d, alpha) / fit.depth_scale
    info = None
    if i is not None:
        info = strategy_info(out, views) if cfg.densify else None
        if cfg.densify:
            fit.strategy.step_pre_backward(fit.params, fit.optimizers, fit.state, step, info)
        loss = loss + input_view_loss(out.rgb[0], d, alpha, i, targets, cfg, fit.depth_scale)
    if not torch.isfinite(loss):
        raise FitError(f"the loss became {float(loss.detach())} at step {step}; try lower learning rates")
    loss.backward()
    for opt in fit.optimizers.values():
        opt.step()
        opt.zero_grad(set_to_none=True)
    if cfg.densify and i is not None:
        densify(fit.strategy, fit.state, fit.params, fit.optimizers, step, info, 200_000)
    return float(loss.detach())


def input_view_loss(rgb: Tensor, d: Tensor, alpha: Tensor, i: int, targets: ToonTargets, cfg: ToonFitConfig,
                    depth_scale: float) -> Tensor:
    """Colour (L1 + D-SSIM), silhouette and warped-depth terms of a render (``rgb`` (H, W, 3), depth ``d`` and
    ``alpha`` (H, W)) of input view ``i``, on its usable pixels."""
    m = targets.usable[i].float()
    denom = m.sum().clamp_min(1.0)
    l1 = ((rgb - targets.images[i]).abs().mean(-1) * m).sum() / denom
    dssim = ((1 - ssim_map(rgb, targets.images[i])).mean(-1) * m).sum() / denom
    silhouette = ((alpha - targets.objects[i].float()).abs() * m).sum() / denom
    o = targets.objects[i]
    depth_err = ((d - targets.depth[i]).abs()[o]).mean() / depth_scale if o.any() else torch.zeros((), device=d.device)
    return ((1 - cfg.ssim_weight) * l1 + cfg.ssim_weight * dssim + cfg.mask_weight * silhouette
            + cfg.depth_weight * depth_err)


def view_psnrs(scene: GaussianScene, targets: ToonTargets, backend: str) -> list[float]:
    """Per input view, the masked PSNR of ``scene``'s render against the warped view."""
    out = []
    with torch.no_grad():
        for i in range(len(targets.images)):
            rgb = rasterize(scene, targets.cameras[i], backend=backend, background=targets.background).rgb[0]
            out.append(round(psnr(rgb.clamp(0, 1), targets.images[i], targets.usable[i]), 3))
    return out

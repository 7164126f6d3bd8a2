"""Stage 6: fit a consistent 3D Gaussian scene to the input view and the generated views. One explicit loop.

Per step (one view): L = w_view * [(1 - l) * L1 + l * (1 - SSIM)] (pixels weighted by the view's confidence)
                       + mask_weight * w_view * |alpha - mask|
                       + depth_weight * |depth - init depth| / distance        (input view, object pixels)
                       + opacity_reg * mean(opacity) + scale_reg * mean(relu(max scale - limit) / limit)
Adam per parameter (gsplat's learning rates; means scaled by the scene extent); densify and prune with gsplat's
DefaultStrategy, which is plain torch and takes our RenderOutput's means2d gradients and radii.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from splat4d.config import FitConfig
from splat4d.losses import psnr, ssim_map
from splat4d.render import rasterize
from splat4d.types import GaussianScene, PARAM_KEYS, Views


class FitError(RuntimeError):
    """The optimisation diverged (NaN/Inf); nothing is written."""


@dataclass
class FitResult:
    scene: GaussianScene
    history: list[dict] = field(default_factory=list)
    """Loss terms every ``log_every`` steps."""
    input_psnr: float = 0.0
    """PSNR of the final render of the input view against the input (all pixels)."""
    initial_input_psnr: float = 0.0
    seconds: float = 0.0
    num_gaussians: int = 0


def _lrs(cfg: FitConfig, scene_scale: float) -> dict[str, float]:
    return {"means": cfg.lr_means * scene_scale, "scales": cfg.lr_scales, "quats": cfg.lr_quats,
            "opacities": cfg.lr_opacities, "sh0": cfg.lr_sh0, "shN": cfg.lr_sh0 / 20.0}


def render_view(scene: GaussianScene, views: Views, i: int, backend: str):
    bg = torch.tensor(views.background, dtype=scene.means.dtype, device=scene.device)
    return rasterize(scene, views.cameras[i].to(scene.device), backend=backend, background=bg, check_finite=False)


def fit(scene: GaussianScene, input_view: Views, generated: Views | None, init_depth: Tensor, cfg: FitConfig, *,
        distance: float, seed: int = 0, backend: str = "auto", progress: bool = True) -> FitResult:
    """Optimise ``scene`` (returned as a new, detached scene). ``input_view`` holds one view; ``init_depth`` (H, W)
    its initial front depth (0 off the object)."""
    from gsplat.strategy import DefaultStrategy
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    device = scene.device
    views = input_view if generated is None else concat_views(input_view, generated)
    view_weights = views.view_weights().to(device)
    n_views = len(views)
    p_input = 0.5 if cfg.input_view_probability is None else cfg.input_view_probability
    width, height = views.cameras.width, views.cameras.height
    focal = float(input_view.cameras.K[0, 0, 0])
    scene_scale = max(float(scene.means.detach().norm(dim=1).max()), 1e-3)
    max_scale = cfg.max_scale_pixels * distance / focal

    params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone()) for k, v in scene.items()})
    lrs = _lrs(cfg, scene_scale)
    optimizers = {k: torch.optim.Adam([{"params": params[k], "lr": lrs[k], "name": k}], eps=1e-15)
                  for k in PARAM_KEYS}
    # Clone (rather than split) Gaussians up to ``split_pixels`` input-view pixels across: gsplat's default
    # threshold (1% of the scene scale) is below one pixel footprint here and would split every surfel.
    footprint = distance / focal
    strategy = DefaultStrategy(
        prune_opa=cfg.prune_opacity, grow_grad2d=cfg.grow_grad2d, refine_start_iter=cfg.refine_start,
        refine_stop_iter=cfg.refine_stop, refine_every=cfg.refine_every, reset_every=10**9, verbose=False,
        grow_scale3d=cfg.split_pixels * footprint / scene_scale,
    )
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=scene_scale)

    images = views.images.to(device)
    masks = views.masks.to(device)
    confidence = (views.confidence if views.confidence is not None else torch.ones_like(views.masks)).to(device)
    target_depth = init_depth.to(device)
    depth_mask = (input_view.masks[0] > 0.5).to(device) & (target_depth > 0)

    result = FitResult(scene=scene)
    with torch.no_grad():
        result.initial_input_psnr = psnr(render_view(scene, views, 0, backend).rgb[0].clamp(0, 1), images[0])
    window: dict[str, list[float]] = {"input": [], "generated": [], "l1_input": []}
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.iterations), desc="fit", unit="step", disable=not progress, leave=False)
    for step in bar:
        if n_views == 1 or float(torch.rand((), generator=gen)) < p_input:
            i = 0
        else:
            i = 1 + int(torch.randint(n_views - 1, (), generator=gen))
        current = GaussianScene(**{k: params[k] for k in PARAM_KEYS})
        out = render_view(current, views, i, backend)
        info = {"means2d": out.means2d, "radii": out.radii, "width": width, "height": height, "n_cameras": 1,
                "gaussian_ids": None}
        if cfg.densify:
            strategy.step_pre_backward(params, optimizers, state, step, info)

        rgb, alpha = out.rgb[0], out.alpha[0, ..., 0]
        pix_w = confidence[i][..., None]
        l1 = ((rgb - images[i]).abs() * pix_w).mean()
        dssim = ((1.0 - ssim_map(rgb, images[i])) * pix_w).mean()
        photometric = (1.0 - cfg.ssim_weight) * l1 + cfg.ssim_weight * dssim
        silhouette = (alpha - masks[i]).abs().mean()
        loss = view_weights[i] * (photometric + cfg.mask_weight * silhouette)
        depth_term = torch.zeros((), device=device)
        if i == 0 and cfg.depth_weight > 0 and depth_mask.any():
            depth_term = ((out.depth[0, ..., 0] - target_depth).abs()[depth_mask]).mean() / distance
            loss = loss + cfg.depth_weight * depth_term
        opacity = torch.sigmoid(params["opacities"])
        loss = loss + cfg.opacity_reg * opacity.mean()
        big = torch.relu(torch.exp(params["scales"]).max(dim=-1).values - max_scale) / max_scale
        loss = loss + cfg.scale_reg * big.mean()

        if not torch.isfinite(loss):
            raise FitError(f"the loss became {float(loss.detach())} at step {step} (view {i}); try lower learning rates "
                           "(e.g. --fit.lr-means, --fit.lr-opacities) or another --seed")
        loss.backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        if cfg.densify:
            if len(params["means"]) >= cfg.max_gaussians:
                strategy.refine_stop_iter = min(strategy.refine_stop_iter, step)
            strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
        window["input" if i == 0 else "generated"].append(float(loss.detach()))
        if i == 0:
            window["l1_input"].append(float(l1.detach()))
        if (step + 1) % cfg.log_every == 0 or step == cfg.iterations - 1:
            mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
            record = {"step": step + 1, "loss_input": mean(window["input"]),
                      "loss_generated": mean(window["generated"]), "l1_input": mean(window["l1_input"]),
                      "gaussians": len(params["means"])}
            result.history.append(record)
            window = {key: [] for key in window}
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", n=len(params["means"]))

    final = GaussianScene.from_params(params)
    bad = ~torch.isfinite(torch.cat([v.reshape(len(final), -1) for v in final.params().values()], 1)).all(1)
    if bad.any():
        raise FitError(f"{int(bad.sum())} Gaussians have NaN/Inf parameters after fitting; nothing was written")
    with torch.no_grad():
        result.input_psnr = psnr(render_view(final, views, 0, backend).rgb[0].clamp(0, 1), images[0])
    result.scene = final
    result.seconds = time.perf_counter() - t0
    result.num_gaussians = len(final)
    return result


def concat_views(a: Views, b: Views) -> Views:
    """The views of ``a`` then those of ``b`` (weights and confidences kept)."""
    from splat4d.types import Cameras

    conf = lambda v: v.confidence if v.confidence is not None else torch.ones_like(v.masks)  # noqa: E731
    cams = Cameras.concat([a.cameras, b.cameras])
    return Views(torch.cat([a.images, b.images]), torch.cat([a.masks, b.masks]), cams,
                 torch.cat([a.view_weights(), b.view_weights()]), torch.cat([conf(a), conf(b)]), a.background)


def loss_decreased(history: list[dict]) -> bool:
    """Whether the input view's mean loss in the last logged window is below the first window's."""
    values = [h["loss_input"] for h in history if h.get("loss_input") is not None]
    return len(values) >= 2 and math.isfinite(values[-1]) and values[-1] < values[0]

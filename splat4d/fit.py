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
from typing import TYPE_CHECKING, Mapping

import torch
from torch import Tensor

from splat4d.config import FitConfig
from splat4d.losses import psnr, ssim_map
from splat4d.optim import Adam
from splat4d.render import rasterize
from splat4d.types import GaussianScene, PARAM_KEYS, RenderOutput, Views

if TYPE_CHECKING:
    from gsplat.strategy import DefaultStrategy


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
    steps: int = 0
    """Steps run: ``iterations``, or fewer where the input view's loss stopped falling (``FitConfig.plateau``)."""


@dataclass
class FitTargets:
    """What every step is compared with, on the fitting device. View 0 is the input view."""

    images: Tensor
    """(V, H, W, 3) colours."""
    masks: Tensor
    """(V, H, W) foreground probability."""
    confidence: Tensor
    """(V, H, W) per-pixel weight of the photometric loss (ones where the views give none)."""
    view_weights: Tensor
    """(V,) loss weight per view."""
    depth: Tensor
    """(H, W) the input view's initial front depth (0 off the object)."""
    depth_mask: Tensor
    """(H, W) bool: input-view object pixels with a depth, where the depth term applies."""


@dataclass
class StepLoss:
    """One step's loss terms (0-d tensors, unweighted) and their weighted sum ``total``, which is backpropagated."""

    total: Tensor
    l1: Tensor
    """Confidence-weighted mean absolute colour error."""
    dssim: Tensor
    """Confidence-weighted mean of 1 - SSIM."""
    silhouette: Tensor
    """Mean |alpha - mask|."""
    depth: Tensor
    """Mean |depth - init depth| / distance on the input view's object pixels (0 on other views)."""
    opacity: Tensor
    """Mean opacity (the sparsity regulariser)."""
    oversize: Tensor
    """Mean relative excess of each Gaussian's largest scale over the limit."""


@dataclass
class LossWindow:
    """Per-step losses since the last history record."""

    input: list[float] = field(default_factory=list)
    generated: list[float] = field(default_factory=list)
    l1_input: list[float] = field(default_factory=list)

    def add(self, view: int, loss: StepLoss) -> None:
        (self.input if view == 0 else self.generated).append(float(loss.total.detach()))
        if view == 0:
            self.l1_input.append(float(loss.l1.detach()))

    def flush(self, step: int, gaussians: int) -> dict:
        """The history record for the window ending at ``step`` (1-based); the window is emptied."""
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        record = {"step": step, "loss_input": mean(self.input), "loss_generated": mean(self.generated),
                  "l1_input": mean(self.l1_input), "gaussians": gaussians}
        self.input, self.generated, self.l1_input = [], [], []
        return record


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
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    views = input_view if generated is None else concat_views(input_view, generated)
    p_input = 0.5 if cfg.input_view_probability is None else cfg.input_view_probability
    focal = float(input_view.cameras.K[0, 0, 0])
    scene_scale = max(float(scene.means.detach().norm(dim=1).max()), 1e-3)
    max_scale = cfg.max_scale_pixels * distance / focal

    params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone()) for k, v in scene.items()})
    optimizers = make_optimizers(params, cfg, scene_scale)
    strategy = make_strategy(cfg, scene_scale, footprint=distance / focal)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=scene_scale)
    targets = fit_targets(views, input_view, init_depth, scene.device)

    result = FitResult(scene=scene, initial_input_psnr=input_psnr(scene, views, targets, backend))
    window = LossWindow()
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.iterations), desc="fit", unit="step", disable=not progress, leave=False)
    for step in bar:
        i = pick_view(gen, len(views), p_input)
        out = render_view(GaussianScene(**{k: params[k] for k in PARAM_KEYS}), views, i, backend)
        info = strategy_info(out, views)
        if cfg.densify:
            strategy.step_pre_backward(params, optimizers, state, step, info)
        loss = step_loss(out, i, params, targets, cfg, distance=distance, max_scale=max_scale)
        if not torch.isfinite(loss.total):
            raise FitError(f"the loss became {float(loss.total.detach())} at step {step} (view {i}); try lower "
                           "learning rates (e.g. --fit.lr-means, --fit.lr-opacities) or another --seed")
        loss.total.backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        if cfg.densify:
            densify(strategy, state, params, optimizers, step, info, cfg.max_gaussians)
        window.add(i, loss)
        result.steps = step + 1
        if (step + 1) % cfg.log_every == 0 or step == cfg.iterations - 1:
            result.history.append(window.flush(step + 1, len(params["means"])))
            bar.set_postfix(loss=f"{float(loss.total.detach()):.4f}", n=len(params["means"]))
            if cfg.plateau > 0 and step + 1 >= cfg.plateau_after and plateau_reached(result.history, cfg.plateau):
                break

    result.scene = finite_scene(params)
    result.input_psnr = input_psnr(result.scene, views, targets, backend)
    result.seconds = time.perf_counter() - t0
    result.num_gaussians = len(result.scene)
    return result


def plateau_reached(history: list[dict], fraction: float) -> bool:
    """Whether the input view's mean loss over the last history window is not ``fraction`` below the window
    before's (both windows with input-view steps)."""
    losses = [h["loss_input"] for h in history if h["loss_input"] is not None]
    return len(losses) >= 2 and losses[-1] > (1.0 - fraction) * losses[-2]


def make_optimizers(params: torch.nn.ParameterDict, cfg: FitConfig,
                    scene_scale: float) -> dict[str, Adam]:
    """One Adam per parameter (gsplat's layout: DefaultStrategy edits each optimiser's state when it densifies)."""
    lrs = _lrs(cfg, scene_scale)
    return {k: Adam([{"params": [params[k]], "lr": lrs[k], "name": k}], eps=1e-15) for k in PARAM_KEYS}


def make_strategy(cfg: FitConfig, scene_scale: float, footprint: float) -> DefaultStrategy:
    """gsplat's densify-and-prune strategy; ``footprint`` is one input-view pixel at the object's distance."""
    from gsplat.strategy import DefaultStrategy

    # Clone (rather than split) Gaussians up to ``split_pixels`` input-view pixels across: gsplat's default
    # threshold (1% of the scene scale) is below one pixel footprint here and would split every surfel.
    return DefaultStrategy(
        prune_opa=cfg.prune_opacity, grow_grad2d=cfg.grow_grad2d, refine_start_iter=cfg.refine_start,
        refine_stop_iter=cfg.refine_stop, refine_every=cfg.refine_every, reset_every=10**9, verbose=False,
        grow_scale3d=cfg.split_pixels * footprint / scene_scale,
    )


def fit_targets(views: Views, input_view: Views, init_depth: Tensor, device: torch.device) -> FitTargets:
    target_depth = init_depth.to(device)
    confidence = views.confidence if views.confidence is not None else torch.ones_like(views.masks)
    return FitTargets(views.images.to(device), views.masks.to(device), confidence.to(device),
                      views.view_weights().to(device), target_depth,
                      (input_view.masks[0] > 0.5).to(device) & (target_depth > 0))


def pick_view(gen: torch.Generator, n_views: int, p_input: float) -> int:
    """The input view (0) with probability ``p_input``, else a generated view uniformly (draws from ``gen``)."""
    if n_views == 1 or float(torch.rand((), generator=gen)) < p_input:
        return 0
    return 1 + int(torch.randint(n_views - 1, (), generator=gen))


def strategy_info(out: RenderOutput, views: Views) -> dict:
    """What gsplat's strategy reads from a render (one camera, unpacked)."""
    return {"means2d": out.means2d, "radii": out.radii, "width": views.cameras.width,
            "height": views.cameras.height, "n_cameras": 1, "gaussian_ids": None}


def step_loss(out: RenderOutput, i: int, params: Mapping[str, Tensor], targets: FitTargets, cfg: FitConfig, *,
              distance: float, max_scale: float) -> StepLoss:
    """The loss of the render ``out`` of view ``i`` (see the module docstring)."""
    rgb, alpha = out.rgb[0], out.alpha[0, ..., 0]
    pix_w = targets.confidence[i][..., None]
    l1 = ((rgb - targets.images[i]).abs() * pix_w).mean()
    dssim = ((1.0 - ssim_map(rgb, targets.images[i])) * pix_w).mean()
    photometric = (1.0 - cfg.ssim_weight) * l1 + cfg.ssim_weight * dssim
    silhouette = (alpha - targets.masks[i]).abs().mean()
    total = targets.view_weights[i] * (photometric + cfg.mask_weight * silhouette)
    depth = torch.zeros((), device=targets.depth.device)
    if i == 0 and cfg.depth_weight > 0 and targets.depth_mask.any():
        depth = ((out.depth[0, ..., 0] - targets.depth).abs()[targets.depth_mask]).mean() / distance
        total = total + cfg.depth_weight * depth
    opacity = torch.sigmoid(params["opacities"]).mean()
    total = total + cfg.opacity_reg * opacity
    oversize = (torch.relu(torch.exp(params["scales"]).max(dim=-1).values - max_scale) / max_scale).mean()
    total = total + cfg.scale_reg * oversize
    return StepLoss(total, l1, dssim, silhouette, depth, opacity, oversize)


def densify(strategy: DefaultStrategy, state: dict, params: torch.nn.ParameterDict,
            optimizers: dict[str, Adam], step: int, info: dict, max_gaussians: int) -> None:
    """gsplat's post-backward densify/prune step; growth stops for good once ``max_gaussians`` is reached."""
    if len(params["means"]) >= max_gaussians:
        strategy.refine_stop_iter = min(strategy.refine_stop_iter, step)
    strategy.step_post_backward(params, optimizers, state, step, info, packed=False)


def input_psnr(scene: GaussianScene, views: Views, targets: FitTargets, backend: str) -> float:
    """PSNR of ``scene``'s render of the input view against the input (all pixels)."""
    with torch.no_grad():
        return psnr(render_view(scene, views, 0, backend).rgb[0].clamp(0, 1), targets.images[0])


def finite_scene(params: torch.nn.ParameterDict) -> GaussianScene:
    """The fitted scene, detached; FitError if any Gaussian has a NaN/Inf parameter."""
    final = GaussianScene.from_params(params)
    bad = ~torch.isfinite(torch.cat([v.reshape(len(final), -1) for v in final.params().values()], 1)).all(1)
    if bad.any():
        raise FitError(f"{int(bad.sum())} Gaussians have NaN/Inf parameters after fitting; nothing was written")
    return final


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

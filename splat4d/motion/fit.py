"""Fit motion bases and coefficients to a video (one explicit loop, like ``splat4d.fit``).

Per step (one frame t): L1 + silhouette on frame t, + ``depth_weight`` * depth L1 where a per-frame depth is given,
+ ``smooth_weight`` * squared acceleration of the bases (Stereo4D's smoothness) + ``static_weight`` * |w| (most of
the world does not move). Colours and opacities are refined at a low rate; shapes are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from splat4d.config import MotionConfig
from splat4d.motion import MotionScene
from splat4d.render import rasterize
from splat4d.types import Cameras


@dataclass
class MotionFitResult:
    motion: MotionScene
    history: list[float] = field(default_factory=list)


def knn(points: Tensor, k: int) -> Tensor:
    """(N, k) indices of each point's k nearest other points."""
    from scipy.spatial import cKDTree

    pts = points.cpu().double().numpy()
    k = max(1, min(k, len(pts) - 1))
    _, idx = cKDTree(pts).query(pts, k=k + 1)
    return torch.from_numpy(idx[:, 1:]).long()


def fit_motion(motion: MotionScene, images: Tensor, masks: Tensor, cameras: Cameras, cfg: MotionConfig,
               depths: Tensor | None = None, distance: float = 2.5, frames: list[int] | None = None,
               seed: int = 0, backend: str = "auto", progress: bool = False) -> MotionFitResult:
    """``images`` (T, H, W, 3), ``masks`` (T, H, W), ``cameras`` T cameras (or one, static); ``frames`` restricts
    training to some frames (the others are held out). Everything on the device of ``images``."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    T = images.shape[0]
    frames = list(range(T)) if frames is None else frames
    bases = torch.nn.Parameter(motion.bases.clone())
    init_w = motion.weights.clone()
    if not init_w.abs().any():
        # Displacement = weights @ bases: starting both at zero is a saddle with no gradient. Start every Gaussian
        # on the sum of the bases (noise breaks the symmetry); the static prior pulls still ones back to zero.
        init_w = 1.0 + 0.01 * torch.randn(init_w.shape, generator=gen).to(init_w.device)
    weights = torch.nn.Parameter(init_w)
    sh0 = torch.nn.Parameter(motion.canonical.sh0.clone())
    # Every Gaussian starts on the sum of the bases: divide their rate by their number so the motion's step size
    # does not grow with it.
    lr_bases = cfg.lr_bases / max(1, bases.shape[0])
    groups = [{"params": [bases], "lr": lr_bases}, {"params": [weights], "lr": cfg.lr_weights},
              {"params": [sh0], "lr": cfg.lr_colors}]
    rotations = None
    if motion.rotations is not None or cfg.se3:
        start = motion.rotations if motion.rotations is not None else torch.zeros_like(motion.bases)
        rotations = torch.nn.Parameter(start.clone())
        groups.append({"params": [rotations], "lr": cfg.lr_rotations / max(1, bases.shape[0])})
    pivot = motion.centre().detach()
    opt = torch.optim.Adam(groups, eps=1e-15)
    bg = torch.ones(3, device=images.device)
    history = []
    neighbours = knn(motion.canonical.means.detach(), cfg.neighbours) if cfg.coherence_weight > 0 else None
    for step in tqdm(range(cfg.iterations), desc="fit motion", disable=not progress, leave=False):
        t = frames[int(torch.randint(len(frames), (), generator=gen))]
        with torch.no_grad():
            bases[:, 0] = 0.0  # frame 0 is the canonical frame
            if rotations is not None:
                rotations[:, 0] = 0.0
        c = motion.canonical
        current = MotionScene(type(c)(c.means, c.scales, c.quats, c.opacities, sh0, c.shN), bases, weights,
                              rotations, pivot)
        cam = cameras[t] if len(cameras) > 1 else cameras
        out = rasterize(current.at(t), cam, backend=backend, background=bg, check_finite=False)
        loss = (out.rgb[0] - images[t]).abs().mean() + cfg.mask_weight * (out.alpha[0, ..., 0] - masks[t]).abs().mean()
        if depths is not None and cfg.depth_weight > 0:
            valid = (masks[t] > 0.5) & (depths[t] > 0)
            if valid.any():
                loss = loss + cfg.depth_weight * (out.depth[0, ..., 0] - depths[t]).abs()[valid].mean() / distance
        if T >= 3:
            for track in (bases,) if rotations is None else (bases, rotations):
                accel = track[:, 2:] - 2 * track[:, 1:-1] + track[:, :-2]
                loss = loss + cfg.smooth_weight * accel.square().sum(-1).mean()
        loss = loss + cfg.static_weight * weights.abs().mean()
        if neighbours is not None:
            loss = loss + cfg.coherence_weight * (weights[:, None, :] - weights[neighbours]).square().sum(-1).mean()
        if not torch.isfinite(loss):
            raise RuntimeError(f"motion fit diverged at step {step} (loss {float(loss.detach())})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    with torch.no_grad():
        bases[:, 0] = 0.0
        if rotations is not None:
            rotations[:, 0] = 0.0
    c = motion.canonical
    final = MotionScene(type(c)(c.means, c.scales, c.quats, c.opacities, sh0.detach(), c.shN), bases.detach(),
                        weights.detach(), None if rotations is None else rotations.detach(), pivot)
    return MotionFitResult(final, history)

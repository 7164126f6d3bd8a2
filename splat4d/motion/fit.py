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
from splat4d.optim import Adam
from splat4d.render import rasterize
from splat4d.types import Cameras, GaussianScene, RenderOutput


@dataclass
class MotionFitResult:
    motion: MotionScene
    history: list[float] = field(default_factory=list)


@dataclass
class MotionParams:
    """What the motion fit optimises (leaf tensors while fitting)."""

    bases: Tensor
    """(B, T, 3) displacement of each basis per frame."""
    weights: Tensor
    """(N, B) each Gaussian's coefficients on the bases."""
    sh0: Tensor
    """The canonical Gaussians' base colours."""
    rotations: Tensor | None
    """(B, T, 3) axis-angle rotation of each basis per frame (SE(3) bases), else None."""

    def tracks(self) -> tuple[Tensor, ...]:
        """The per-frame tracks the smoothness prior applies to."""
        return (self.bases,) if self.rotations is None else (self.bases, self.rotations)

    def pin_canonical_frame(self) -> None:
        """Frame 0 is the canonical frame: no displacement, no rotation."""
        with torch.no_grad():
            self.bases[:, 0] = 0.0
            if self.rotations is not None:
                self.rotations[:, 0] = 0.0

    def detached(self) -> MotionParams:
        return MotionParams(self.bases.detach(), self.weights.detach(), self.sh0.detach(),
                            None if self.rotations is None else self.rotations.detach())

    def scene(self, canonical: GaussianScene, pivot: Tensor) -> MotionScene:
        """``canonical`` with these colours, moved by these bases and weights."""
        c = canonical
        return MotionScene(type(c)(c.means, c.scales, c.quats, c.opacities, self.sh0, c.shN), self.bases,
                           self.weights, self.rotations, pivot)


@dataclass
class MotionStepLoss:
    """One step's loss terms (0-d tensors, unweighted; None where a term does not apply) and their weighted sum
    ``total``, which is backpropagated."""

    total: Tensor
    l1: Tensor
    """Mean absolute colour error on the frame."""
    silhouette: Tensor
    """Mean |alpha - mask|."""
    depth: Tensor | None
    """Mean |depth - given depth| on object pixels with a depth (weighted by ``depth_weight / distance``)."""
    smoothness: tuple[Tensor, ...]
    """Mean squared acceleration per track (bases, then rotations); empty for clips under 3 frames."""
    static: Tensor
    """Mean |weight|."""
    coherence: Tensor | None
    """Mean squared difference of each Gaussian's weights from its neighbours'."""


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
    frames = list(range(images.shape[0])) if frames is None else frames
    params = initial_params(motion, cfg, gen)
    pivot = motion.centre().detach()
    opt = make_optimizer(params, cfg)
    bg = torch.ones(3, device=images.device)
    history = []
    neighbours = knn(motion.canonical.means.detach(), cfg.neighbours) if cfg.coherence_weight > 0 else None
    for step in tqdm(range(cfg.iterations), desc="fit motion", disable=not progress, leave=False):
        t = frames[int(torch.randint(len(frames), (), generator=gen))]
        params.pin_canonical_frame()
        cam = cameras[t] if len(cameras) > 1 else cameras
        out = rasterize(params.scene(motion.canonical, pivot).at(t), cam, backend=backend, background=bg,
                        check_finite=False)
        loss = motion_step_loss(out, t, params, images, masks, depths, cfg, distance=distance, neighbours=neighbours)
        if not torch.isfinite(loss.total):
            raise RuntimeError(f"motion fit diverged at step {step} (loss {float(loss.total.detach())})")
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        opt.step()
        history.append(float(loss.total.detach()))
    params.pin_canonical_frame()
    return MotionFitResult(params.detached().scene(motion.canonical, pivot), history)


def initial_params(motion: MotionScene, cfg: MotionConfig, gen: torch.Generator) -> MotionParams:
    """Leaf parameters starting from ``motion`` (rotations from zero when ``cfg.se3`` adds them); draws from
    ``gen`` only when all weights are zero."""
    bases = torch.nn.Parameter(motion.bases.clone())
    init_w = motion.weights.clone()
    if not init_w.abs().any():
        # Displacement = weights @ bases: starting both at zero is a saddle with no gradient. Start every Gaussian
        # on the sum of the bases (noise breaks the symmetry); the static prior pulls still ones back to zero.
        init_w = 1.0 + 0.01 * torch.randn(init_w.shape, generator=gen).to(init_w.device)
    rotations = None
    if motion.rotations is not None or cfg.se3:
        start = motion.rotations if motion.rotations is not None else torch.zeros_like(motion.bases)
        rotations = torch.nn.Parameter(start.clone())
    return MotionParams(bases, torch.nn.Parameter(init_w), torch.nn.Parameter(motion.canonical.sh0.clone()),
                        rotations)


def make_optimizer(params: MotionParams, cfg: MotionConfig) -> Adam:
    # Every Gaussian starts on the sum of the bases: divide their rate by their number so the motion's step size
    # does not grow with it.
    num_bases = max(1, params.bases.shape[0])
    groups = [{"params": [params.bases], "lr": cfg.lr_bases / num_bases},
              {"params": [params.weights], "lr": cfg.lr_weights}, {"params": [params.sh0], "lr": cfg.lr_colors}]
    if params.rotations is not None:
        groups.append({"params": [params.rotations], "lr": cfg.lr_rotations / num_bases})
    return Adam(groups, eps=1e-15)


def motion_step_loss(out: RenderOutput, t: int, params: MotionParams, images: Tensor, masks: Tensor,
                     depths: Tensor | None, cfg: MotionConfig, *, distance: float,
                     neighbours: Tensor | None) -> MotionStepLoss:
    """The loss of the render ``out`` of frame ``t`` (see the module docstring)."""
    l1 = (out.rgb[0] - images[t]).abs().mean()
    silhouette = (out.alpha[0, ..., 0] - masks[t]).abs().mean()
    total = l1 + cfg.mask_weight * silhouette
    depth = None
    if depths is not None and cfg.depth_weight > 0:
        valid = (masks[t] > 0.5) & (depths[t] > 0)
        if valid.any():
            depth = (out.depth[0, ..., 0] - depths[t]).abs()[valid].mean()
            total = total + cfg.depth_weight * depth / distance
    smoothness = []
    if images.shape[0] >= 3:
        for track in params.tracks():
            accel = track[:, 2:] - 2 * track[:, 1:-1] + track[:, :-2]
            smoothness.append(accel.square().sum(-1).mean())
            total = total + cfg.smooth_weight * smoothness[-1]
    static = params.weights.abs().mean()
    total = total + cfg.static_weight * static
    coherence = None
    if neighbours is not None:
        w = params.weights
        # index_select, not w[neighbours]: advanced indexing's backward adds the repeated rows with atomics on a
        # CPU (an order that changes from run to run); index_select's (index_add_) adds them in index order
        near = w.index_select(0, neighbours.reshape(-1)).view(*neighbours.shape, w.shape[1])
        coherence = (w[:, None, :] - near).square().sum(-1).mean()
        total = total + cfg.coherence_weight * coherence
    return MotionStepLoss(total, l1, silhouette, depth, tuple(smoothness), static, coherence)

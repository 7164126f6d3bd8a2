"""Coarse alignment (Toon3D step 2): per image a pinhole camera and a depth scale and offset, so that the corresponding
points, lifted to 3D by each image's own depth, land on one another.

Image i's point k at normalised pixel coordinates (u, v) = ((x - W/2) / (W/2), (y - H/2) / (H/2)) with depth z lifts to

    P_ik = R_i [u / fx_i, v / fy_i, 1] (s_i z + d_i) + t_i

(camera 0 is the world frame: R_0 = I, t_0 = 0). The loss (Toon3D's terms and weights) is

    point_weight * mean_{i<j, k shared} |P_ik - P_jk|^2
    + scale_weight * ((mean s - 1)^2 + mean relu(-s)^2) + offset_weight * mean relu(-d)^2     (scales positive, the
    + focal_weight * (mean fx + mean fy) + aspect_weight * mean (fy / fx - a_i)^2               gauge of the scale)

with a_i the focal ratio of square pixels. Adam from a closed-form start: each image's similarity transform onto an
already placed image's lifted points (Umeyama) gives R, t and s before the first step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from splat4d.types import Cameras


@dataclass
class AlignConfig:
    """Camera and depth-scale alignment of the views (Toon3D's coarse step)."""

    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    """'lbfgs' (strong-Wolfe line search; converges in a few hundred evaluations) or 'adam' (Toon3D's choice: lr
    0.01, 2000 steps)."""
    steps: int = 300
    """L-BFGS iterations or Adam steps."""
    lr: float = 0.01
    """Adam learning rate (L-BFGS: 1, with the line search)."""
    fov_deg: float = 60.0
    """Initial horizontal field of view of every image (degrees)."""
    optimize_focal: bool = True
    """Fit each image's focal lengths (drawings have no true camera); off: keep --align.fov-deg."""
    point_weight: float = 1000.0
    """Weight of the mean squared distance between corresponding lifted points."""
    scale_weight: float = 1000.0
    """Weight of the depth-scale terms ((mean s - 1)^2 and negative scales)."""
    offset_weight: float = 1000.0
    """Weight of the penalty on negative depth offsets."""
    focal_weight: float = 1e-3
    """Weight of the mean focal length (a slight preference for wide views)."""
    aspect_weight: float = 1.0
    """Weight of the square-pixel term (fy / fx against the image's aspect)."""
    procrustes_init: bool = True
    """Start from per-image similarity transforms (Umeyama) instead of identity cameras."""


@dataclass
class ViewParams:
    """Per-image camera and depth parameters (V images), in normalised pixel units (see the module docstring)."""

    fx: Tensor
    """(V,) horizontal focal length in units of W/2."""
    fy: Tensor
    """(V,) vertical focal length in units of H/2."""
    quats: Tensor
    """(V, 4) camera-to-world rotation as w, x, y, z (normalised on use; image 0's is ignored)."""
    trans: Tensor
    """(V, 3) camera centre in the world (image 0's is ignored)."""
    scale: Tensor
    """(V,) depth scale s."""
    offset: Tensor
    """(V,) depth offset d."""

    def tensors(self) -> list[Tensor]:
        return [self.fx, self.fy, self.quats, self.trans, self.scale, self.offset]

    def detach(self) -> "ViewParams":
        return ViewParams(*[t.detach().clone() for t in self.tensors()])

    def requires_grad_(self, flag: bool = True) -> "ViewParams":
        for t in self.tensors():
            t.requires_grad_(flag)
        return self

    def rotations(self) -> Tensor:
        """(V, 3, 3) camera-to-world rotations; image 0's is the identity."""
        R = quat_to_rotmat(self.quats)
        eye = torch.eye(3, dtype=R.dtype)[None]
        return torch.cat([eye, R[1:]])

    def translations(self) -> Tensor:
        return torch.cat([torch.zeros_like(self.trans[:1]), self.trans[1:]])

    def cameras(self, width: int, height: int) -> Cameras:
        """Pinhole cameras in pixels (principal point at the centre) for images of ``width`` x ``height``."""
        V = len(self.fx)
        c2w = torch.eye(4, dtype=torch.float64).repeat(V, 1, 1)
        c2w[:, :3, :3] = self.rotations().detach().double()
        c2w[:, :3, 3] = self.translations().detach().double()
        K = torch.zeros(V, 3, 3, dtype=torch.float64)
        K[:, 0, 0] = self.fx.detach().double() * width / 2
        K[:, 1, 1] = self.fy.detach().double() * height / 2
        K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = width / 2, height / 2, 1.0
        return Cameras(c2w, K, width, height)


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrices of quaternions (..., 4) w, x, y, z (normalised here)."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(
        quats.shape[:-1] + (3, 3))


def rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    """w, x, y, z of a rotation matrix (3, 3) (Shepperd's method)."""
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z])


def normalised(xy: Tensor, width: int, height: int) -> Tensor:
    """Pixel coordinates (..., 2) to normalised ones in [-1, 1]."""
    half = torch.tensor([width / 2, height / 2], dtype=xy.dtype)
    return (xy - half) / half


def lift(params: ViewParams, uv: Tensor, z: Tensor) -> Tensor:
    """(V, N, 3) world points of normalised coordinates ``uv`` (V, N, 2) at raw depths ``z`` (V, N)."""
    depth = params.scale[:, None] * z + params.offset[:, None]
    ray = torch.stack([uv[..., 0] / params.fx[:, None], uv[..., 1] / params.fy[:, None], torch.ones_like(z)], -1)
    cam = ray * depth[..., None]
    return cam @ params.rotations().transpose(-1, -2) + params.translations()[:, None]


def pair_loss(points: Tensor, valid: Tensor) -> Tensor:
    """Mean squared distance between lifted points (V, N, 3) over image pairs i < j and points marked in both."""
    both = (valid[:, None] & valid[None]).float()  # (V, V, N)
    both = torch.triu(both.permute(2, 0, 1), diagonal=1).permute(1, 2, 0)
    dist = ((points[:, None] - points[None]) ** 2).sum(-1)
    return (dist * both).sum() / both.sum().clamp_min(1.0)


def regularisers(params: ViewParams, aspect: Tensor, cfg: AlignConfig) -> Tensor:
    s, d = params.scale, params.offset
    return (cfg.scale_weight * ((s.mean() - 1) ** 2 + torch.relu(-s).pow(2).mean())
            + cfg.offset_weight * torch.relu(-d).pow(2).mean()
            + cfg.focal_weight * (params.fx.mean() + params.fy.mean())
            + cfg.aspect_weight * ((params.fy / params.fx - aspect) ** 2).mean())


def initial_params(V: int, aspect: Tensor, cfg: AlignConfig) -> ViewParams:
    fx = 1.0 / math.tan(math.radians(cfg.fov_deg) / 2)
    quats = torch.zeros(V, 4, dtype=torch.float64)
    quats[:, 0] = 1
    return ViewParams(torch.full((V,), fx, dtype=torch.float64), fx * aspect.double().clone(), quats,
                      torch.zeros(V, 3, dtype=torch.float64), torch.ones(V, dtype=torch.float64),
                      torch.zeros(V, dtype=torch.float64))


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) minimising sum |s R src + t - dst|^2 over points (N, 3), a proper rotation (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0])
    R = U @ D @ Vt
    var = (a ** 2).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / var) if var > 0 else 1.0
    return s, R, mu_d - s * R @ mu_s


def procrustes_start(params: ViewParams, uv: Tensor, z: Tensor, valid: Tensor) -> ViewParams:
    """Place images one by one (most points shared with the placed ones first) by the similarity transform of their
    lifted points onto the placed images' (averaged per point); the transform's scale becomes the depth scale."""
    V = len(params.fx)
    params = params.detach()
    placed = [0]
    with torch.no_grad():
        while len(placed) < V:
            rest = [i for i in range(V) if i not in placed]
            seen = valid[placed].any(0)
            i = max(rest, key=lambda r: int((valid[r] & seen).sum()))
            shared = (valid[i] & seen).numpy()
            placed.append(i)
            if shared.sum() < 3:
                continue
            world = lift(params, uv, z)
            w = valid[placed[:-1]].double()[..., None]
            target = ((world[placed[:-1]] * w).sum(0) / w.sum(0).clamp_min(1))[shared].numpy()
            own = lift(replace(params, quats=_identity_quats(V), trans=torch.zeros(V, 3, dtype=torch.float64),
                               scale=torch.ones(V, dtype=torch.float64)), uv, z)[i][shared].numpy()
            s, R, t = umeyama(own, target)
            if not (np.isfinite(s) and s > 0):
                continue
            params.quats[i] = torch.from_numpy(rotmat_to_quat(R))
            params.trans[i] = torch.from_numpy(t)
            params.scale[i] = s
            params.offset[i] = 0.0
    # The scale gauge: mean depth scale 1 (the regulariser would pull it there anyway).
    m = params.scale.mean()
    return ViewParams(params.fx, params.fy, params.quats, params.trans / m, params.scale / m, params.offset / m)


def _identity_quats(V: int) -> Tensor:
    q = torch.zeros(V, 4, dtype=torch.float64)
    q[:, 0] = 1
    return q


@dataclass
class AlignResult:
    params: ViewParams
    """The fitted per-image parameters."""
    history: list[float]
    """Total loss every 100 steps."""


def align(xy: Tensor, z: Tensor, valid: Tensor, width: int, height: int, cfg: AlignConfig,
          aspect: Tensor | None = None, params: ViewParams | None = None) -> AlignResult:
    """Fit cameras and depth scales to corresponding points ``xy`` (V, N, 2) (pixels of W x H images) with raw
    depths ``z`` (V, N), marked where ``valid`` (V, N). ``aspect`` (V,): fy / fx of square pixels in normalised
    units (default W / H). ``params``: start from these instead."""
    V = xy.shape[0]
    xy, z = xy.double(), z.double()
    aspect = torch.full((V,), width / height, dtype=torch.float64) if aspect is None else aspect.double()
    uv = normalised(xy, width, height)
    if params is None:
        params = initial_params(V, aspect, cfg)
        if cfg.procrustes_init:
            params = procrustes_start(params, uv, z, valid)
    params = params.detach().requires_grad_()
    if not cfg.optimize_focal:
        params.fx.requires_grad_(False)
        params.fy.requires_grad_(False)
    history = minimise(lambda: cfg.point_weight * pair_loss(lift(params, uv, z), valid)
                       + regularisers(params, aspect, cfg), [t for t in params.tensors() if t.requires_grad],
                       cfg.optimizer, cfg.steps, cfg.lr)
    if history and not math.isfinite(history[-1]):
        raise RuntimeError("the camera alignment diverged (NaN/Inf loss); try a lower --align.lr")
    return AlignResult(params.detach(), history)


def minimise(loss_fn, tensors: list[Tensor], optimizer: str, steps: int, lr: float) -> list[float]:
    """Minimise ``loss_fn()`` over ``tensors`` (leaf tensors that require grad) in place; the loss every 10
    evaluations (and the last)."""
    history: list[float] = []
    if steps <= 0 or not tensors:
        return history
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(tensors, lr=1.0, max_iter=steps, max_eval=int(steps * 1.5), history_size=20,
                                tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe")
        count = [0]

        def closure():
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            if count[0] % 10 == 0:
                history.append(float(loss.detach()))
            count[0] += 1
            return loss

        opt.step(closure)
        with torch.no_grad():
            history.append(float(loss_fn()))
        return history
    if optimizer != "adam":
        raise ValueError(f"unknown optimizer {optimizer!r}; 'lbfgs' or 'adam'")
    opt = torch.optim.Adam(tensors, lr=lr)
    for step in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == steps - 1:
            history.append(float(loss.detach()))
    return history


def reprojection_residual(params: ViewParams, xy: Tensor, z: Tensor, valid: Tensor, width: int,
                          height: int) -> float:
    """Mean pixel distance, over ordered image pairs (i, j) and points marked in both, between image i's point and
    image j's lifted point projected into camera i (the views' disagreement in pixels)."""
    with torch.no_grad():
        xy, z = xy.double(), z.double()
        world = lift(params, normalised(xy, width, height), z)  # (V, N, 3)
        cams = params.cameras(width, height)
        errors, count = 0.0, 0
        for i in range(len(xy)):
            uv, depth = cams[i].project(world.reshape(-1, 3))
            uv = uv[0].reshape(world.shape[0], world.shape[1], 2)
            d = (uv - xy[i][None]).norm(dim=-1)  # (V, N): image j's points seen by camera i
            both = valid[i][None] & valid
            both[i] = False
            both &= depth[0].reshape(world.shape[:2]) > 0
            errors += float(d[both].sum())
            count += int(both.sum())
        return errors / max(count, 1)


def rotation_error_deg(R_a: Tensor, R_b: Tensor) -> Tensor:
    """(V,) angle in degrees of R_a^T R_b for rotations (V, 3, 3)."""
    rel = R_a.transpose(-1, -2).double() @ R_b.double()
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.acos(cos))

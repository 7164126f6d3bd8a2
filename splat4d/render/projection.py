"""Projection of 3D Gaussians to 2D (EWA splatting) and SH colours, via gsplat's pure-torch reference functions.

Only ``gsplat.cuda._torch_impl`` is used here: it runs on any device with autograd. ``gsplat.cuda._backend`` (the
CUDA extension, which starts a JIT build when imported) is never touched on this path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from gsplat.cuda import _torch_impl as gs_torch
from torch import Tensor

from splat4d.types import Cameras, GaussianScene

ALPHA_MIN = 1.0 / 255.0


@dataclass
class Projected:
    """Per camera and Gaussian 2D quantities (C cameras, N Gaussians)."""

    means2d: Tensor
    """(C, N, 2) pixel coordinates of the centres."""
    conics: Tensor
    """(C, N, 3) upper triangle (a, b, c) of the inverse 2D covariance."""
    depths: Tensor
    """(C, N) camera-space z of the centres."""
    colors: Tensor
    """(C, N, 3) view-dependent colour from SH, clamped at 0."""
    opacities: Tensor
    """(C, N) activated opacity."""
    extents: Tensor
    """(C, N, 2) half-widths in pixels of the box outside which alpha < 1/255 (0 where culled)."""
    valid: Tensor
    """(C, N) bool: in front of the near plane, overlapping the image, able to reach alpha >= 1/255."""


def covariances(scene: GaussianScene) -> Tensor:
    """(N, 3, 3) world-space covariances R S S^T R^T."""
    covars, _ = gs_torch._quat_scale_to_covar_preci(
        scene.quats_act(), scene.scales_act(), compute_covar=True, compute_preci=False
    )
    return covars


def sh_colors(scene: GaussianScene, cameras: Cameras, sh_degree: int | None = None) -> Tensor:
    """(C, N, 3) colours seen from each camera centre: sum_k SH_k(dir) * coeff_k + 0.5, clamped at 0."""
    degree = scene.sh_degree if sh_degree is None else min(sh_degree, scene.sh_degree)
    coeffs = scene.colors_sh()
    n_cams = len(cameras)
    if degree == 0:
        colors = gs_torch._spherical_harmonics(0, scene.means.new_ones(len(scene), 3), coeffs)
        colors = colors[None].expand(n_cams, -1, -1)
    else:
        dirs = scene.means[None, :, :] - cameras.centers()[:, None, :].to(scene.means.dtype)
        colors = gs_torch._spherical_harmonics(degree, dirs, coeffs[None].expand(n_cams, -1, -1, -1))
    return torch.clamp_min(colors + 0.5, 0.0)


def project(
    scene: GaussianScene,
    cameras: Cameras,
    sh_degree: int | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    colors: Tensor | None = None,
    fused: bool | None = None,
) -> Projected:
    """Project every Gaussian into every camera (differentiable w.r.t. all scene parameters, and w.r.t. the cameras
    when their matrices require gradients).

    CPU tensors go through splat4d's fused numba projection (``splat4d.render.cpu_projection``: the same maths,
    support boxes and SH colours in one pass per Gaussian, forward and backward); cameras that require gradients,
    or other devices, through gsplat's torch functions and :func:`support_extents`. ``fused`` False forces gsplat's
    path (benchmarks compare the two)."""
    dtype = scene.means.dtype
    viewmats = cameras.viewmats().to(dtype)
    Ks = cameras.K.to(dtype)
    opacities = scene.opacities_act()[None].expand(len(cameras), -1)
    if _fused(scene, viewmats, Ks) and fused is not False:
        # One numba pass per Gaussian: projection, support boxes and SH colours (forward and backward).
        from splat4d.render.cpu_projection import project_full

        degree = -1 if colors is not None else (scene.sh_degree if sh_degree is None else
                                                min(sh_degree, scene.sh_degree))
        coeffs = scene.colors_sh() if colors is None else scene.means.new_zeros(len(scene), 1, 3)
        means2d, conics, depths, sh, extents, valid = project_full(
            scene.means, scene.quats, scene.scales_act(), coeffs, opacities[0], degree, viewmats, Ks,
            cameras.centers().to(dtype), cameras.width, cameras.height, eps2d, near_plane, far_plane)
        colors = sh if colors is None else colors.to(dtype)[None].expand(len(cameras), -1, -1)
        return Projected(means2d, conics, depths, colors, opacities, extents, valid)
    _, means2d, depths, conics, _ = gs_torch._fully_fused_projection(
        scene.means, covariances(scene), viewmats, Ks, cameras.width, cameras.height, eps2d=eps2d,
        near_plane=near_plane, far_plane=far_plane)
    extents, valid = support_extents(means2d.detach(), conics.detach(), depths.detach(), opacities.detach(), cameras,
                                     near_plane, far_plane)
    if colors is None:
        colors = sh_colors(scene, cameras, sh_degree)
    else:
        colors = colors.to(dtype)[None].expand(len(cameras), -1, -1)
    return Projected(means2d, conics, depths, colors, opacities, extents, valid)


def _fused(scene: GaussianScene, viewmats: Tensor, Ks: Tensor) -> bool:
    return (scene.means.device.type == "cpu" and scene.means.dtype in (torch.float32, torch.float64)
            and not viewmats.requires_grad and not Ks.requires_grad)


@torch.no_grad()
def support_extents(
    means2d: Tensor,
    conics: Tensor,
    depths: Tensor,
    opacities: Tensor,
    cameras: Cameras,
    near_plane: float,
    far_plane: float,
) -> tuple[Tensor, Tensor]:
    """Exact opacity-aware support: the axis-aligned box of {d : opacity * exp(-d^T conic d / 2) >= 1/255}.

    Outside this box a Gaussian's alpha is below the 1/255 threshold, so binning Gaussians to the tiles their box
    touches loses nothing: the tiled result equals a brute-force sum over all Gaussians (the reference renderer).
    """
    a, b, c = conics.unbind(-1)
    det = a * c - b * b
    level = 2.0 * torch.log(torch.clamp_min(opacities * 255.0, 1e-30))  # d^T conic d <= level
    var_x = c / det
    var_y = a / det
    ext_x = torch.sqrt(torch.clamp_min(level * var_x, 0.0))
    ext_y = torch.sqrt(torch.clamp_min(level * var_y, 0.0))
    extents = torch.stack([ext_x, ext_y], dim=-1) * (1.0 + 1e-4) + 1e-3  # margin for float32 rounding
    finite = torch.isfinite(means2d).all(-1) & torch.isfinite(conics).all(-1) & torch.isfinite(extents).all(-1)
    valid = (
        finite
        & (depths > near_plane)
        & (depths < far_plane)
        & (det > 0)
        & (level > 0)
        & (means2d[..., 0] + extents[..., 0] > 0)
        & (means2d[..., 0] - extents[..., 0] < cameras.width)
        & (means2d[..., 1] + extents[..., 1] > 0)
        & (means2d[..., 1] - extents[..., 1] < cameras.height)
    )
    extents = torch.where(valid[..., None], extents, torch.zeros_like(extents))
    return extents, valid


def radii_from_extents(extents: Tensor) -> Tensor:
    return torch.ceil(extents).to(torch.int32)

"""Differentiable Gaussian rasterization with three interchangeable backends.

``rasterize(scene, cameras)`` returns a :class:`~splat4d.types.RenderOutput` (colour over a background, alpha,
expected depth, 2D means with gradients for densification, radii):

* ``"gsplat"``: gsplat's fused CUDA rasterizer (CUDA tensors only).
* ``"cpu"``: gsplat's torch projection + numba tile kernels (``splat4d.render.cpu``); any machine.
* ``"reference"``: brute force in pure torch; the test oracle for tiny scenes.
* ``"auto"``: ``gsplat`` when the scene lives on a CUDA device, ``cpu`` otherwise.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from splat4d.types import Cameras, GaussianScene, RenderOutput

Backend = Literal["auto", "cpu", "gsplat", "reference"]
BACKENDS = ("auto", "cpu", "gsplat", "reference")
CPU_TILE = 8


def _check_inputs(scene: GaussianScene, cameras: Cameras, background: Tensor | None, backend: str,
                  check_finite: bool) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown rasterizer backend {backend!r}; choose one of {BACKENDS}")
    if check_finite:
        scene.validate()
    if not torch.isfinite(cameras.c2w).all() or not torch.isfinite(cameras.K).all():
        raise ValueError("camera matrices contain NaN/Inf")
    if background is not None and background.shape[-1] != 3:
        raise ValueError(f"background must have 3 channels, got shape {tuple(background.shape)}")


def _finish(feats: Tensor, alpha: Tensor, background: Tensor | None, means2d: Tensor, radii: Tensor) -> RenderOutput:
    rgb = feats[..., :3]
    if background is not None:
        bg = background.to(rgb)
        rgb = rgb + (1.0 - alpha) * (bg if bg.ndim > 1 else bg.view(1, 1, 1, 3))
    depth_sum = feats[..., 3:4]
    depth = torch.where(alpha > 0, depth_sum / alpha.clamp_min(1e-10), torch.zeros_like(depth_sum))
    return RenderOutput(rgb=rgb, alpha=alpha, depth=depth, means2d=means2d, radii=radii, depth_sum=depth_sum)


def backend_for(device: torch.device) -> str:
    """The rasterizer for ``device``: gsplat's CUDA kernels on CUDA, splat4d's own on the CPU."""
    return "gsplat" if torch.device(device).type == "cuda" else "cpu"


def rasterize(
    scene: GaussianScene,
    cameras: Cameras,
    *,
    backend: Backend = "auto",
    sh_degree: int | None = None,
    background: Tensor | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    tile_size: int | None = None,
    check_finite: bool = True,
    colors: Tensor | None = None,
) -> RenderOutput:
    """Render ``scene`` from every camera in ``cameras``.

    Args:
        scene: Gaussians (pre-activation parameters; gradients flow to every tensor that requires them).
        cameras: C cameras sharing one image size.
        backend: see the module docstring.
        sh_degree: highest SH degree to use (default: the scene's).
        background: (3,) or (C, 1, 1, 3) colour composited behind the splats; black when None.
        near_plane, far_plane: Gaussians whose centre's camera z is outside (near, far) are culled.
        eps2d: added to the 2D covariance diagonal (low-pass filter, as in 3DGS).
        tile_size: tile side in pixels for the tiled backends; default 16 for gsplat, 8 for the CPU kernels (at
            256 px and 50k Gaussians their forward and backward passes ran 1.7-2x faster than with 16: each
            (tile, Gaussian) pair evaluates a quarter of the pixels, so the work shrinks faster than the pair
            count grows; ``tools/bench_raster.py`` measures it).
        check_finite: raise ``ValueError`` on NaN/Inf parameters instead of rendering garbage.
        colors: optional (N, 3) colours used as they are instead of the scene's SH (linear in them: colour solves).
    """
    _check_inputs(scene, cameras, background, backend, check_finite)
    if backend == "auto":
        backend = backend_for(scene.means.device)
    if len(scene) == 0:
        return _empty(scene, cameras, background)

    if backend == "reference":
        from splat4d.render.reference import rasterize_reference

        feats, alpha, means2d = rasterize_reference(scene, cameras, sh_degree, near_plane, far_plane, eps2d, colors)
        radii = torch.zeros(means2d.shape, dtype=torch.int32)
        return _finish(feats, alpha, background, means2d, radii)

    if backend == "gsplat":
        from splat4d.render.gsplat_cuda import rasterize_gsplat

        return rasterize_gsplat(scene, cameras, sh_degree, background, near_plane, far_plane, eps2d, tile_size or 16,
                                colors)

    from splat4d.render.cpu import rasterize_projected
    from splat4d.render.projection import project, radii_from_extents

    if scene.means.is_cuda:
        raise ValueError("the 'cpu' backend needs CPU tensors; use backend='gsplat' (or 'auto') for CUDA scenes")
    proj = project(scene, cameras, sh_degree, near_plane, far_plane, eps2d, colors)
    if proj.means2d.requires_grad:
        proj.means2d.retain_grad()
    feats, alpha = rasterize_projected(proj, cameras.width, cameras.height, tile_size or CPU_TILE)
    return _finish(feats.to(scene.means.dtype), alpha.to(scene.means.dtype), background, proj.means2d,
                   radii_from_extents(proj.extents))


def _empty(scene: GaussianScene, cameras: Cameras, background: Tensor | None) -> RenderOutput:
    C, H, W = len(cameras), cameras.height, cameras.width
    dtype, device = scene.means.dtype, scene.means.device
    zeros = torch.zeros(C, H, W, 4, dtype=dtype, device=device)
    # Keep the graph connected so an optimiser step on an empty scene does not crash.
    zeros = zeros + 0.0 * scene.means.sum()
    means2d = torch.zeros(C, 0, 2, dtype=dtype, device=device)
    return _finish(zeros, zeros[..., :1], background, means2d, torch.zeros(C, 0, 2, dtype=torch.int32))

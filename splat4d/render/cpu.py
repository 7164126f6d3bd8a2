"""CPU rasterizer: gsplat's torch projection + vectorised binning + numba tile kernels in an autograd Function."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from splat4d.render.binning import TileBins, bin_gaussians
from splat4d.render.projection import Projected

NUM_FEATS = 4  # r, g, b, depth


def _np(t: Tensor):
    return t.detach().contiguous().numpy()


class _RasterizeTiles(torch.autograd.Function):
    """Composite binned 2D Gaussians; returns padded (C, Hp, Wp, 4) features and (C, Hp, Wp) alpha."""

    @staticmethod
    def forward(ctx, means2d, conics, feats, opacities, bins: TileBins, n_cams: int):
        from splat4d.render import cpu_kernels as kern  # numba import is slow; only pay it when rasterizing

        tile = bins.tile
        hp, wp = bins.tiles_y * tile, bins.tiles_x * tile
        dtype = means2d.dtype
        out_feats = torch.zeros(n_cams, hp, wp, NUM_FEATS, dtype=dtype)
        out_t = torch.ones(n_cams, hp, wp, dtype=dtype)
        out_last = torch.full((n_cams, hp, wp), -1, dtype=torch.int32)
        if bins.flat_ids.numel():
            kern.rasterize_forward(
                _np(bins.tile_offsets), _np(bins.flat_ids), _np(means2d), _np(conics), _np(feats), _np(opacities),
                tile, bins.tiles_x, bins.tiles_y, out_feats.numpy(), out_t.numpy(), out_last.numpy(),
            )
        ctx.bins = bins
        ctx.save_for_backward(means2d, conics, feats, opacities, out_t, out_last)
        ctx.mark_non_differentiable(out_last)
        return out_feats, 1.0 - out_t, out_last

    @staticmethod
    def backward(ctx, grad_feats, grad_alpha, _grad_last):
        from splat4d.render import cpu_kernels as kern

        means2d, conics, feats, opacities, out_t, out_last = ctx.saved_tensors
        bins: TileBins = ctx.bins
        m = bins.flat_ids.numel()
        dtype = means2d.dtype
        pair_grads = torch.empty(m, 10, dtype=dtype)  # the kernel writes every row
        if grad_feats is None:
            grad_feats = torch.zeros_like(out_t)[..., None].expand(-1, -1, -1, NUM_FEATS)
        if grad_alpha is None:
            grad_alpha = torch.zeros_like(out_t)
        if m:
            kern.rasterize_backward(
                _np(bins.tile_offsets), _np(bins.flat_ids), _np(means2d), _np(conics), _np(feats), _np(opacities),
                bins.tile, bins.tiles_x, bins.tiles_y, _np(out_t), _np(out_last),
                _np(grad_feats.to(dtype)), _np(grad_alpha.to(dtype)),
                pair_grads.numpy(),
            )
        # One deterministic scatter-add per Gaussian, in pair order (no atomics anywhere).
        grads = torch.zeros(means2d.shape[0], 10, dtype=dtype)
        if m:
            kern.sum_pairs(_np(bins.flat_ids), pair_grads.numpy(), grads.numpy())
        g_means2d, g_conics, g_feats, g_opacities = grads.split([2, 3, NUM_FEATS, 1], dim=1)
        return g_means2d, g_conics, g_feats, g_opacities[:, 0], None, None


def rasterize_projected(proj: Projected, width: int, height: int, tile: int = 8) -> tuple[Tensor, Tensor]:
    """Composite projected Gaussians on the CPU.

    Returns ``(feats, alpha)``: (C, H, W, 4) alpha-weighted sums of (r, g, b, depth) and (C, H, W, 1) alpha.
    """
    n_cams, n = proj.depths.shape
    bins = bin_gaussians(proj.means2d.detach(), proj.extents, proj.depths.detach(), proj.valid, width, height, tile)
    feats = torch.cat([proj.colors, proj.depths[..., None]], dim=-1)
    # float32 normally; float64 inputs run the float64 kernels (used by gradcheck).
    dtype = torch.float64 if proj.means2d.dtype == torch.float64 else torch.float32
    out_feats, alpha, _ = _RasterizeTiles.apply(
        proj.means2d.reshape(n_cams * n, 2).to(dtype),
        proj.conics.reshape(n_cams * n, 3).to(dtype),
        feats.reshape(n_cams * n, NUM_FEATS).to(dtype),
        proj.opacities.reshape(n_cams * n).to(dtype),
        bins,
        n_cams,
    )
    return out_feats[:, :height, :width], alpha[:, :height, :width, None]


class FrameRenderer:
    """Forward-only rendering of one scene from many cameras (videos, viewers) on the CPU: no autograd, the
    scene's activations, SH coefficients, 3D covariances and support levels prepared once, one fused numba pass per
    frame for projection, support boxes and SH colours, and a tile kernel that composites the background and writes the clamped image in place
    (no backward state: final transmittance, last index, depth). The same image as ``rasterize(...).rgb`` clamped
    to [0, 1] (tested)."""

    def __init__(self, scene, width: int, height: int, *, sh_degree: int | None = None,
                 background: Tensor | None = None, near_plane: float = 0.01, far_plane: float = 1e10,
                 eps2d: float = 0.3, tile: int = 8):
        dtype = torch.float64 if scene.means.dtype == torch.float64 else torch.float32
        with torch.no_grad():
            self.means = _np(scene.means.to(dtype))
            self.quats = _np(scene.quats.to(dtype))
            self.scales = _np(scene.scales_act().to(dtype))
            self.opacities_t = scene.opacities_act().to(dtype).contiguous()
            self.coeffs = _np(scene.colors_sh().to(dtype))
        self.opacities = self.opacities_t.numpy()
        from splat4d.render.cpu_projection import scene_terms

        # Covariances and support levels do not depend on the camera: once per video, not per frame.
        self.sigmas = np.empty((self.means.shape[0], 9))
        self.levels = np.empty(self.means.shape[0])
        scene_terms(self.quats, self.scales, self.opacities, self.sigmas, self.levels)
        self.degree = scene.sh_degree if sh_degree is None else min(sh_degree, scene.sh_degree)
        self.width, self.height, self.tile, self.dtype = width, height, tile, dtype
        self.eps2d, self.near, self.far = float(eps2d), float(near_plane), float(far_plane)
        bg = torch.zeros(3) if background is None else background.reshape(-1)[:3]
        self.background = _np(bg.to(dtype))
        n = self.means.shape[0]
        self.means2d = torch.empty(1, n, 2, dtype=dtype)
        self.conics = torch.empty(1, n, 3, dtype=dtype)
        self.depths = torch.empty(1, n, dtype=dtype)
        self.colors = torch.empty(1, n, 3, dtype=dtype)
        self.extents = torch.empty(1, n, 2, dtype=dtype)
        self.valid = torch.empty(1, n, dtype=torch.bool)

    def render(self, camera) -> Tensor:
        """The (H, W, 3) image in [0, 1] seen by ``camera`` (a one-camera :class:`~splat4d.types.Cameras`); a new
        tensor per call (the projection buffers are reused)."""
        from splat4d.render import cpu_kernels as kern
        from splat4d.render.cpu_projection import project_forward

        dtype = self.dtype
        project_forward(self.means, self.quats, self.scales, self.opacities, self.coeffs, self.degree,
                        _np(camera.viewmats().to(dtype)), _np(camera.K.to(dtype)), _np(camera.centers().to(dtype)),
                        float(self.width), float(self.height), self.eps2d, self.near, self.far, self.sigmas,
                        self.levels, self.means2d.numpy(), self.conics.numpy(), self.depths.numpy(), self.colors.numpy(),
                        self.extents.numpy(), self.valid.numpy())
        bins = bin_gaussians(self.means2d, self.extents, self.depths, self.valid, self.width, self.height, self.tile)
        out = torch.empty(self.height, self.width, 3, dtype=dtype)
        if bins.flat_ids.numel():
            kern.render_rgb(bins.tile_offsets.numpy(), bins.flat_ids.numpy(), self.means2d.numpy()[0],
                            self.conics.numpy()[0], self.colors.numpy()[0], self.opacities, self.tile, bins.tiles_x,
                            bins.tiles_y, self.background, out.numpy())
        else:
            out[:] = torch.from_numpy(self.background).clamp(0.0, 1.0)
        return out


KERNELS = ("cpu_kernels.rasterize_forward", "cpu_kernels.rasterize_backward", "cpu_kernels.sort_valid",
           "cpu_kernels.bin_boxes",
           "cpu_kernels.render_rgb", "cpu_kernels.sum_pairs", "cpu_projection.project_forward",
           "cpu_projection.project_backward", "cpu_projection.scene_terms")


def kernels() -> list:
    """The numba kernels of the CPU rasterizer (the dispatchers named in ``KERNELS``)."""
    import importlib

    return [getattr(importlib.import_module(f"splat4d.render.{mod}"), name)
            for mod, name in (k.split(".") for k in KERNELS)]


def warm_up() -> dict[str, int]:
    """Compile the float32 kernels (projection, binning, tile forward and backward, video frames) now, or load them from numba's
    on-disk cache, so a first run does not spend 10-35 s compiling. ``make install`` calls it; returns numba's
    cache hits/misses over :data:`KERNELS`."""
    from splat4d.render import rasterize
    from splat4d.synthetic import random_scene
    from splat4d.types import Cameras

    scene = random_scene(8, seed=0)
    for _, v in scene.items():
        v.requires_grad_(True)
    c2w = torch.eye(4)
    c2w[2, 3] = -3.0
    cams = Cameras(c2w, torch.tensor([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]]), 16, 16)
    out = rasterize(scene, cams, backend="cpu")
    (out.rgb.sum() + out.alpha.sum()).backward()
    FrameRenderer(scene, 16, 16).render(cams)  # the forward-only kernel of videos
    ks = kernels()
    return {"cache_hits": sum(sum(k.stats.cache_hits.values()) for k in ks),
            "cache_misses": sum(sum(k.stats.cache_misses.values()) for k in ks)}


if __name__ == "__main__":  # python -m splat4d.render.cpu: what `make install` runs
    import time

    t0 = time.perf_counter()
    stats = warm_up()
    state = "loaded from cache" if stats["cache_misses"] == 0 else "compiled and cached"
    print(f"CPU rasterizer kernels {state} in {time.perf_counter() - t0:.1f} s")

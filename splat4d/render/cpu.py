"""CPU rasterizer: gsplat's torch projection + vectorised binning + numba tile kernels in an autograd Function."""

from __future__ import annotations

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
        pair_grads = torch.zeros(m, 10, dtype=dtype)
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
        # One deterministic scatter-add per Gaussian (no atomics anywhere).
        grads = torch.zeros(means2d.shape[0], 10, dtype=dtype).index_add_(0, bins.flat_ids, pair_grads)
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


KERNELS = ("cpu_kernels.rasterize_forward", "cpu_kernels.rasterize_backward", "cpu_kernels.bin_pairs",
           "cpu_projection.project_forward", "cpu_projection.project_backward")


def kernels() -> list:
    """The numba kernels of the CPU rasterizer (the dispatchers named in ``KERNELS``)."""
    import importlib

    return [getattr(importlib.import_module(f"splat4d.render.{mod}"), name)
            for mod, name in (k.split(".") for k in KERNELS)]


def warm_up() -> dict[str, int]:
    """Compile the float32 kernels (projection, binning, tile forward and backward) now, or load them from numba's
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
    out = rasterize(scene, Cameras(c2w, torch.tensor([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]]), 16, 16), backend="cpu")
    (out.rgb.sum() + out.alpha.sum()).backward()
    ks = kernels()
    return {"cache_hits": sum(sum(k.stats.cache_hits.values()) for k in ks),
            "cache_misses": sum(sum(k.stats.cache_misses.values()) for k in ks)}


if __name__ == "__main__":  # python -m splat4d.render.cpu: what `make install` runs
    import time

    t0 = time.perf_counter()
    stats = warm_up()
    state = "loaded from cache" if stats["cache_misses"] == 0 else "compiled and cached"
    print(f"CPU rasterizer kernels {state} in {time.perf_counter() - t0:.1f} s")

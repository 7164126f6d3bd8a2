"""CPU rasterizer: gsplat's torch projection + vectorised binning + numba tile kernels in an autograd Function."""

from __future__ import annotations

import threading

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

        wait_for_background(FOREGROUND)
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

        wait_for_background()

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

        wait_for_background(FOREGROUND)
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

        wait_for_background()
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
           "cpu_kernels.bin_boxes", "cpu_kernels.render_rgb", "cpu_kernels.sum_pairs",
           "cpu_projection.project_forward", "cpu_projection.project_backward", "cpu_projection.scene_terms")

# The float32 kernels' argument types as the rasterizer calls them, to compile them before their first call (in
# another process, see compile_in_background): "f32[2]" a C-contiguous 2-d float32 array, "i" an int64 scalar,
# "f" a float64 scalar. They must equal what a real render compiles: tested against the signatures one leaves.
SIGNATURES = {
    "cpu_kernels.rasterize_forward": "i64[1] i64[1] f32[2] f32[2] f32[2] f32[1] i i i f32[4] f32[3] i32[3]",
    "cpu_kernels.rasterize_backward": "i64[1] i64[1] f32[2] f32[2] f32[2] f32[1] i i i f32[3] i32[3] f32[4] f32[3] "
                                      "f32[2]",
    "cpu_kernels.sort_valid": "b[1] f32[1] i",
    "cpu_kernels.bin_boxes": "i64[1] i64[1] f32[2] f32[2] i i i i i i64[1] i",
    "cpu_kernels.render_rgb": "i64[1] i64[1] f32[2] f32[2] f32[2] f32[1] i i i f32[1] f32[3]",
    "cpu_kernels.sum_pairs": "i64[1] f32[2] f32[2]",
    "cpu_projection.project_forward": "f32[2] f32[2] f32[2] f32[1] f32[3] i f32[3] f32[3] f32[2] f f f f f f64[2] "
                                      "f64[1] f32[3] f32[3] f32[2] f32[3] f32[3] b[2]",
    "cpu_projection.project_backward": "f32[2] f32[2] f32[2] f32[3] i f32[3] f32[3] f32[2] f f f f32[3] f32[3] f32[2] "
                                       "f32[3] f32[2] f32[2] f32[2] f32[3]",
    "cpu_projection.scene_terms": "f32[2] f32[2] f32[1] f64[2] f64[1]",
}
# On a first run the kernels compile in two child processes, one per group below, while the run goes on; the run
# then loads them from numba's cache, as every later run does. A kernel compiled in the running process computes
# slightly differently from the same kernel loaded from the cache (numba 0.68.1: rasterize_forward's fresh code gave
# 2,308 of 49,152 values of a 128 px render 1 ulp apart), so a first run that compiled its own kernels gave a scene
# different from every later run's (docs/reliability.md). The backward and video kernels are the slower half (about
# 15 of 25 s of compiling on this 2-core CPU); the forward ones, needed first, compile beside them.
BACKGROUND = ("cpu_projection.project_backward", "cpu_kernels.rasterize_backward", "cpu_kernels.render_rgb",
              "cpu_kernels.sum_pairs")
FOREGROUND = tuple(k for k in KERNELS if k not in BACKGROUND)


def kernels(names=KERNELS) -> list:
    """The numba dispatchers named in ``names`` (default :data:`KERNELS`, the CPU rasterizer's kernels)."""
    import importlib

    return [getattr(importlib.import_module(f"splat4d.render.{mod}"), name)
            for mod, name in (k.split(".") for k in names)]


def signature(name: str) -> tuple:
    """The numba argument types of kernel ``name`` (:data:`SIGNATURES`)."""
    from numba import types

    scalars = {"i": types.int64, "f": types.float64}
    dtypes = {"f32": types.float32, "f64": types.float64, "i32": types.int32, "i64": types.int64, "b": types.boolean}
    out = []
    for tok in SIGNATURES[name].split():
        if tok in scalars:
            out.append(scalars[tok])
        else:
            dtype, ndim = tok.rstrip("]").split("[")
            out.append(types.Array(dtypes[dtype], int(ndim), "C"))
    return tuple(out)


def uncached(names=KERNELS) -> list[str]:
    """The kernels of ``names`` that numba's on-disk cache does not hold yet for this source (a first run)."""
    missing = []
    for name, k in zip(names, kernels(names)):
        try:
            index = k._cache._cache_file._load_index()  # numba's cache index: {(signature, target, ...): file}
            held = any(key[0] == signature(name) for key in index)
        except Exception:  # noqa: BLE001 - numba internals changed: assume cached, compile lazily as before
            held = True
        if not held:
            missing.append(name)
    return missing


def compile_kernels(names=KERNELS) -> None:
    """Compile (or load from numba's cache) the kernels ``names`` for :data:`SIGNATURES`, without calling them."""
    for name, k in zip(names, kernels(names)):
        k.compile(signature(name))


_background: list[tuple[tuple[str, ...], object]] = []  # (kernels, the child process compiling them), while any runs
_background_lock = threading.Lock()  # a video's frames may render in another thread than the fit


def compile_in_background(groups=(FOREGROUND, BACKGROUND)) -> bool:
    """On a first run (kernels not in numba's cache, e.g. installed without ``make install``), compile each group of
    ``groups`` that is not cached in a child process of its own (the first at this process's priority, the others
    niced, so the kernels needed first are ready first) while this one goes on; :func:`wait_for_background`
    (called by their first users) then loads them from the cache, so the first run computes what every later one
    does. Returns whether a child was started (not twice in one process)."""
    import subprocess
    import sys

    if _background:
        return False
    import os

    for k, names in enumerate(groups):
        missing = uncached(names)
        if missing:  # the first group (needed first) at full priority, later ones niced: they give way to it
            proc = subprocess.Popen([sys.executable, "-m", "splat4d.render.cpu", *missing],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    preexec_fn=(lambda: os.nice(10)) if k else None)
            _background.append((tuple(missing), proc))
    return bool(_background)


def wait_for_background(names=KERNELS) -> None:
    """Wait for the children of :func:`compile_in_background` that compile any of ``names`` (no-op when none does);
    if a child failed, say so once: its kernels then compile here on first use, as without it."""
    if not _background:  # every call after the first run's children are done
        return
    with _background_lock:  # held while waiting: another thread's first use waits for the same children
        for entry in [e for e in _background if set(e[0]) & set(names)]:
            _background.remove(entry)
            _, err = entry[1].communicate()
            if entry[1].returncode:
                import warnings

                warnings.warn(f"compiling the CPU kernels in a background process failed ({err.strip()[-300:]}); "
                              "they compile in this one instead", RuntimeWarning, stacklevel=2)


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


if __name__ == "__main__":  # python -m splat4d.render.cpu [KERNEL ...]: what `make install` runs
    import subprocess
    import sys
    import time

    t0 = time.perf_counter()
    if sys.argv[1:]:  # a child of compile_in_background (or of the install below): just these kernels
        compile_kernels(tuple(sys.argv[1:]))
        sys.exit(0)
    # the install: both halves at once, one in a child process (one core each), then a real render as a check
    child = None
    if uncached():
        child = subprocess.Popen([sys.executable, "-m", "splat4d.render.cpu", *BACKGROUND])
        compile_kernels(tuple(k for k in KERNELS if k not in BACKGROUND))
        if child.wait():
            sys.exit(f"compiling {', '.join(BACKGROUND)} failed")
    stats = warm_up()
    state = "loaded from cache" if stats["cache_misses"] == 0 and child is None else "compiled and cached"
    print(f"CPU rasterizer kernels {state} in {time.perf_counter() - t0:.1f} s")

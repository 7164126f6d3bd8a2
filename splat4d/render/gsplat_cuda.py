"""gsplat's fused CUDA rasterizer behind splat4d's ``RenderOutput``. Imported only for CUDA scenes."""

from __future__ import annotations

from torch import Tensor

from splat4d.types import Cameras, GaussianScene, RenderOutput


def rasterize_gsplat(scene: GaussianScene, cameras: Cameras, sh_degree: int | None, background: Tensor | None,
                     near_plane: float, far_plane: float, eps2d: float, tile_size: int,
                     colors: Tensor | None = None) -> RenderOutput:
    if not scene.means.is_cuda:
        raise ValueError("backend='gsplat' needs the scene on a CUDA device; use backend='cpu' on CPU")
    # Imported here: gsplat.rendering reaches the CUDA extension (a JIT build where no binary exists).
    from gsplat.rendering import rasterization

    from splat4d.render import _finish

    degree = scene.sh_degree if sh_degree is None else min(sh_degree, scene.sh_degree)
    cams = cameras.to(scene.device, scene.means.dtype)
    feats, alpha, meta = rasterization(
        means=scene.means,
        quats=scene.quats,  # normalised inside gsplat
        scales=scene.scales_act(),
        opacities=scene.opacities_act(),
        colors=scene.colors_sh() if colors is None else colors,
        viewmats=cams.viewmats(),
        Ks=cams.K,
        width=cams.width,
        height=cams.height,
        near_plane=near_plane,
        far_plane=far_plane,
        eps2d=eps2d,
        sh_degree=degree if colors is None else None,
        packed=False,
        tile_size=tile_size,
        render_mode="RGB+D",  # accumulated depth, normalised by alpha in _finish like the CPU backend
    )
    if meta["means2d"].requires_grad:
        meta["means2d"].retain_grad()
    return _finish(feats, alpha, background, meta["means2d"], meta["radii"])

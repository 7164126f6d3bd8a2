"""Brute-force pure-torch Gaussian renderer: the test oracle.

Written independently of gsplat and of the tiled CPU kernels: its own quaternion, covariance, EWA projection and
spherical-harmonics code (graphdeco-inria's conventions), and every pixel composites *every* Gaussian in depth order
with no tiles and no bounding boxes. Autograd gives its gradients. Memory is O(C * H * W * N): tiny scenes only.

The image model it defines (and every backend must match):
  * EWA: cov2d = J W Sigma W^T J^T + eps2d * I, with gsplat's clamp of x/z, y/z to 1.3x the field of view in J.
  * alpha = min(0.999, opacity * exp(-0.5 d^T cov2d^-1 d)), skipped below 1/255; d = mean2d - pixel centre.
  * front-to-back compositing by camera z; a pixel stops before the Gaussian that would take T to <= 1e-4.
  * colour = clamp_min(SH(view dir) + 0.5, 0); feature 4 is camera z, giving expected depth.

``rasterize_reference_tiled`` runs the same maths on per-tile padded Gaussian lists: the "pure torch" baseline of
``tools/bench_raster.py`` (the speed a torch-only implementation reaches), exact thanks to the opacity-aware boxes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from splat4d.types import Cameras, GaussianScene

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def eval_sh(degree: int, coeffs: Tensor, dirs: Tensor) -> Tensor:
    """graphdeco-inria's real SH evaluation. coeffs (..., (d+1)^2, 3), dirs (..., 3) unit vectors -> (..., 3)."""
    sh = coeffs.transpose(-1, -2)  # (..., 3, K)
    result = SH_C0 * sh[..., 0]
    if degree > 0:
        x, y, z = (dirs[..., i : i + 1] for i in range(3))
        result = result - SH_C1 * y * sh[..., 1] + SH_C1 * z * sh[..., 2] - SH_C1 * x * sh[..., 3]
        if degree > 1:
            xx, yy, zz = x * x, y * y, z * z
            xy, yz, xz = x * y, y * z, x * z
            result = (
                result
                + SH_C2[0] * xy * sh[..., 4]
                + SH_C2[1] * yz * sh[..., 5]
                + SH_C2[2] * (2.0 * zz - xx - yy) * sh[..., 6]
                + SH_C2[3] * xz * sh[..., 7]
                + SH_C2[4] * (xx - yy) * sh[..., 8]
            )
            if degree > 2:
                result = (
                    result
                    + SH_C3[0] * y * (3 * xx - yy) * sh[..., 9]
                    + SH_C3[1] * xy * z * sh[..., 10]
                    + SH_C3[2] * y * (4 * zz - xx - yy) * sh[..., 11]
                    + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[..., 12]
                    + SH_C3[4] * x * (4 * zz - xx - yy) * sh[..., 13]
                    + SH_C3[5] * z * (xx - yy) * sh[..., 14]
                    + SH_C3[6] * x * (xx - 3 * yy) * sh[..., 15]
                )
    return result


def quat_to_rotmat(quats: Tensor) -> Tensor:
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(quats.shape[:-1] + (3, 3))


def project_reference(scene: GaussianScene, cameras: Cameras, sh_degree: int | None, near_plane: float,
                      far_plane: float, eps2d: float, colors: Tensor | None = None):
    """Returns means2d (C,N,2), conics (C,N,3), depths (C,N), colors (C,N,3), opacities (N,), in_range (C,N)."""
    dtype = scene.means.dtype
    R = quat_to_rotmat(scene.quats)
    S = torch.exp(scene.scales)
    M = R * S[..., None, :]
    cov = M @ M.transpose(-1, -2)  # (N,3,3)
    w2c = torch.linalg.inv(cameras.c2w.to(dtype))
    Rw, tw = w2c[:, :3, :3], w2c[:, :3, 3]
    mc = torch.einsum("cij,nj->cni", Rw, scene.means) + tw[:, None]
    covc = torch.einsum("cij,njk,clk->cnil", Rw, cov, Rw)
    K = cameras.K.to(dtype)
    fx, fy, cx, cy = K[:, 0, 0, None], K[:, 1, 1, None], K[:, 0, 2, None], K[:, 1, 2, None]
    W, H = cameras.width, cameras.height
    tz = mc[..., 2]
    tan_x, tan_y = 0.5 * W / fx, 0.5 * H / fy
    tx = tz * torch.clamp(mc[..., 0] / tz, -(cx / fx + 0.3 * tan_x), (W - cx) / fx + 0.3 * tan_x)
    ty = tz * torch.clamp(mc[..., 1] / tz, -(cy / fy + 0.3 * tan_y), (H - cy) / fy + 0.3 * tan_y)
    zero = torch.zeros_like(tz)
    J = torch.stack([fx / tz, zero, -fx * tx / tz**2, zero, fy / tz, -fy * ty / tz**2], -1).reshape(tz.shape + (2, 3))
    cov2d = J @ covc @ J.transpose(-1, -2) + eps2d * torch.eye(2, dtype=dtype)
    conics_full = torch.linalg.inv(cov2d)
    conics = torch.stack([conics_full[..., 0, 0], conics_full[..., 0, 1], conics_full[..., 1, 1]], -1)
    means2d = torch.stack([fx * mc[..., 0] / tz + cx, fy * mc[..., 1] / tz + cy], -1)

    coeffs = torch.cat([scene.sh0, scene.shN], 1)
    degree = scene.sh_degree if sh_degree is None else min(sh_degree, scene.sh_degree)
    dirs = F.normalize(scene.means[None] - cameras.c2w[:, None, :3, 3].to(dtype), dim=-1)
    if colors is None:
        colors = torch.clamp_min(eval_sh(degree, coeffs[None].expand(len(cameras), -1, -1, -1), dirs) + 0.5, 0.0)
    else:
        colors = colors.to(dtype)[None].expand(len(cameras), -1, -1)
    in_range = (tz > near_plane) & (tz < far_plane)
    return means2d, conics, tz, colors, torch.sigmoid(scene.opacities), in_range


def composite(px: Tensor, py: Tensor, means2d: Tensor, conics: Tensor, opac: Tensor, feats: Tensor, present: Tensor):
    """Composite depth-sorted Gaussians over pixels.

    px, py: (B, P) pixel centres. means2d (B, K, 2), conics (B, K, 3), opac (B, K), feats (B, K, F) sorted front to
    back; present (B, K) bool (padding / culled entries are False). Returns feats (B, P, F), alpha (B, P).
    """
    dx = means2d[:, None, :, 0] - px[..., None]  # (B, P, K)
    dy = means2d[:, None, :, 1] - py[..., None]
    a, b, c = (conics[:, None, :, i] for i in range(3))
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = torch.clamp_max(opac[:, None, :] * torch.exp(-sigma), 0.999)
    ok = present[:, None, :] & (sigma >= 0) & (alpha >= 1.0 / 255.0)
    a_ok = torch.where(ok, alpha, torch.zeros_like(alpha))
    trans = torch.cumprod(1.0 - a_ok, dim=-1)  # T after each Gaussian
    t_before = torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], dim=-1)
    include = ok & (trans > 1e-4)  # the pixel stops before the Gaussian that would take T to <= 1e-4
    weights = torch.where(include, a_ok * t_before, torch.zeros_like(a_ok))
    out = weights @ feats  # (B, P, F)
    final_t = torch.prod(torch.where(include, 1.0 - a_ok, torch.ones_like(a_ok)), dim=-1)
    return out, 1.0 - final_t


def rasterize_reference(scene: GaussianScene, cameras: Cameras, sh_degree: int | None = None,
                        near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = 0.3,
                        colors: Tensor | None = None):
    """Brute force. Returns (feats (C,H,W,4) = alpha-weighted r,g,b,depth; alpha (C,H,W,1); means2d (C,N,2))."""
    means2d, conics, depths, colors, opac, in_range = project_reference(scene, cameras, sh_degree, near_plane,
                                                                        far_plane, eps2d, colors)
    n_cams, W, H = len(cameras), cameras.width, cameras.height
    order = torch.argsort(depths.detach(), dim=-1, stable=True)
    take = lambda t: torch.gather(t, 1, order[..., None].expand(-1, -1, t.shape[-1]))  # noqa: E731
    feats = torch.cat([colors, depths[..., None]], -1)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=means2d.dtype), torch.arange(W, dtype=means2d.dtype), indexing="ij")
    px = (xs.reshape(1, -1) + 0.5).expand(n_cams, -1)
    py = (ys.reshape(1, -1) + 0.5).expand(n_cams, -1)
    present = torch.gather(in_range, 1, order)
    out, alpha = composite(px, py, take(means2d), take(conics), torch.gather(opac[None].expand(n_cams, -1), 1, order),
                           take(feats), present)
    return out.reshape(n_cams, H, W, 4), alpha.reshape(n_cams, H, W, 1), means2d


def rasterize_reference_tiled(means2d: Tensor, conics: Tensor, feats: Tensor, opacities: Tensor, bins, n_cams: int,
                              width: int, height: int):
    """The same compositing over per-tile padded Gaussian lists (pure torch, autograd). Flattened (C*N, .) inputs.

    Returns feats (C, H, W, F), alpha (C, H, W, 1).
    """
    tile = bins.tile
    counts = bins.tile_offsets[1:] - bins.tile_offsets[:-1]
    n_tiles = counts.numel()
    kmax = int(counts.max().item()) if n_tiles else 0
    slot = torch.arange(max(kmax, 1))
    present = slot[None] < counts[:, None]  # (T, K)
    idx = torch.where(present, bins.tile_offsets[:-1, None] + slot[None], torch.zeros_like(slot[None]))
    gid = bins.flat_ids[idx.clamp_max(max(bins.flat_ids.numel() - 1, 0))] if bins.flat_ids.numel() else idx
    tiles_per_image = bins.tiles_x * bins.tiles_y
    local = torch.arange(n_tiles) % tiles_per_image
    ty, tx = local // bins.tiles_x, local % bins.tiles_x
    p = torch.arange(tile * tile)
    px = (tx[:, None] * tile + p[None] % tile).to(means2d.dtype) + 0.5
    py = (ty[:, None] * tile + p[None] // tile).to(means2d.dtype) + 0.5
    out, alpha = composite(px, py, means2d[gid], conics[gid], opacities[gid], feats[gid], present)
    # (T, P, F) -> (C, tiles_y, tiles_x, tile, tile, F) -> image
    F_ = feats.shape[-1]
    out = out.reshape(n_cams, bins.tiles_y, bins.tiles_x, tile, tile, F_).permute(0, 1, 3, 2, 4, 5)
    alpha = alpha.reshape(n_cams, bins.tiles_y, bins.tiles_x, tile, tile).permute(0, 1, 3, 2, 4)
    hp, wp = bins.tiles_y * tile, bins.tiles_x * tile
    out = out.reshape(n_cams, hp, wp, F_)[:, :height, :width]
    alpha = alpha.reshape(n_cams, hp, wp)[:, :height, :width, None]
    return out, alpha

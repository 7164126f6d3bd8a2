"""Rigid / similarity transforms of a whole Gaussian scene, view-dependent colour included.

x -> s R x + t moves every mean, turns every Gaussian (quaternion R * q), scales it by s (log-scales + log s) and
rotates its spherical-harmonic colour so that the transformed scene seen from the transformed cameras is the same
picture as before. The SH rotation of each degree l is the (2l+1)x(2l+1) matrix D with Y_l(R d) D = Y_l(d) for all
directions d, solved by least squares on a fixed set of directions (exact up to float rounding: the degree-l real SH
span is closed under rotation).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from splat4d.types import GaussianScene


def rotmat_to_quat(R: Tensor) -> Tensor:
    """(..., 3, 3) proper rotations -> (..., 4) unit quaternions wxyz with w >= 0 (Shepperd's method: the branch of
    the largest diagonal term, stable for every rotation)."""
    shape = R.shape[:-2]
    m = R.reshape(-1, 3, 3)
    t = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cands = torch.stack([
        torch.stack([1 + t, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
        torch.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0],
                     m[:, 0, 2] + m[:, 2, 0]], -1),
        torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
                     m[:, 1, 2] + m[:, 2, 1]], -1),
        torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1],
                     1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1),
    ], 1)  # (N, 4 candidates, 4)
    best = torch.stack([t, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1).argmax(-1)
    q = torch.nn.functional.normalize(cands[torch.arange(len(m)), best], dim=-1)
    q = torch.where(q[:, :1] < 0, -q, q)
    return q.reshape(*shape, 4)


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product a * b of wxyz quaternions (broadcasting); rotating by b then by a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], -1)


def _sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """(M, K) real SH basis values (gsplat's convention and order) at unit directions ``dirs`` (M, 3)."""
    from gsplat.cuda._torch_impl import _eval_sh_bases_fast

    return _eval_sh_bases_fast((degree + 1) ** 2, dirs)


def sh_rotation(R: Tensor, degree: int) -> Tensor:
    """(K, K) block-diagonal matrix D with  Y(R d) @ D = Y(d)  for K = (degree+1)^2 bases: new coefficients are
    D @ old coefficients (per colour channel)."""
    K = (degree + 1) ** 2
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(max(64, 4 * K), 3, generator=g, dtype=torch.float64), dim=-1)
    R = R.double()
    y_old = _sh_bases(degree, dirs)
    y_new = _sh_bases(degree, dirs @ R.T)
    D = torch.linalg.lstsq(y_new, y_old).solution
    # Zero the exact zeros (different degrees never mix) to keep the DC term untouched.
    mask = torch.zeros(K, K, dtype=torch.bool)
    for l in range(degree + 1):
        mask[l * l:(l + 1) ** 2, l * l:(l + 1) ** 2] = True
    return torch.where(mask, D, torch.zeros_like(D))


def transform_scene(scene: GaussianScene, R: Tensor, t: Tensor | None = None, scale: float = 1.0) -> GaussianScene:
    """The scene under x -> scale * R x + t (R a proper rotation). Cameras transformed the same way
    (c2w -> [[R, t], [0, 1]] @ c2w with the translation scaled) see the same images."""
    R = R.double()
    if abs(float(torch.det(R)) - 1.0) > 1e-6 or not torch.allclose(R @ R.T, torch.eye(3, dtype=R.dtype), atol=1e-6):
        raise ValueError("transform_scene needs a proper rotation matrix (orthonormal, det +1)")
    dtype = scene.means.dtype
    t = torch.zeros(3, dtype=torch.float64) if t is None else torch.as_tensor(t, dtype=torch.float64)
    means = (scale * scene.means.double() @ R.T + t).to(dtype)
    quats = quat_multiply(rotmat_to_quat(R).to(scene.quats.dtype), scene.quats)
    scales = scene.scales + math.log(scale)
    shN = scene.shN
    if scene.sh_degree > 0:
        D = sh_rotation(R, scene.sh_degree)[1:, 1:].to(shN.dtype)  # the DC term is rotation invariant
        shN = torch.einsum("kj,njc->nkc", D, shN)
    return GaussianScene(means, scales, quats, scene.opacities.clone(), scene.sh0.clone(), shN)

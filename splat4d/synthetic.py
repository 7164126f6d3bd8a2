"""Procedural example scenes (deterministic): the bundled demo scene and test fixtures."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from splat4d.types import GaussianScene


def quat_from_z_to(normals: Tensor) -> Tensor:
    """(N, 4) wxyz quaternions rotating +z onto each unit normal."""
    z = torch.tensor([0.0, 0.0, 1.0], dtype=normals.dtype).expand_as(normals)
    axis = torch.linalg.cross(z, normals, dim=-1)
    w = 1.0 + (normals * z).sum(-1, keepdim=True)
    q = torch.cat([w, axis], dim=-1)
    flipped = w[:, 0] < 1e-6  # normal == -z: rotate 180 degrees about x
    q[flipped] = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=normals.dtype)
    return torch.nn.functional.normalize(q, dim=-1)


def _surfels(points: Tensor, normals: Tensor, colors: Tensor, size: float, opacity: float = 0.95) -> GaussianScene:
    n = points.shape[0]
    scales = torch.tensor([size, size, size * 0.25]).expand(n, 3)
    return GaussianScene.from_activated(points, scales, colors.clamp(0, 1), torch.full((n,), opacity),
                                        quats=quat_from_z_to(normals))


def toy_scene(n_sphere: int = 9000, n_torus: int = 5000, n_cone: int = 2000, seed: int = 0) -> GaussianScene:
    """A striped ball inside a tilted ring with a cone on top (world y is down): distinct from every side."""
    g = torch.Generator().manual_seed(seed)
    # Sphere: Fibonacci lattice, stripes by longitude, a dark band at the equator.
    i = torch.arange(n_sphere, dtype=torch.float32) + 0.5
    phi = torch.acos(1 - 2 * i / n_sphere)
    theta = math.pi * (1 + 5**0.5) * i
    normals = torch.stack([torch.sin(phi) * torch.cos(theta), torch.cos(phi), torch.sin(phi) * torch.sin(theta)], -1)
    points = 0.6 * normals
    stripe = (torch.floor((torch.atan2(normals[:, 2], normals[:, 0]) + math.pi) / (math.pi / 4)) % 2)
    colors = torch.where(stripe[:, None] > 0, torch.tensor([0.95, 0.35, 0.1]), torch.tensor([0.15, 0.45, 0.9]))
    colors = torch.where((normals[:, 1].abs() < 0.08)[:, None], torch.tensor([0.1, 0.1, 0.1]), colors)
    sphere = _surfels(points, normals, colors, 0.022)
    # Torus around the sphere, tilted 25 degrees about x.
    u = torch.rand(n_torus, generator=g) * 2 * math.pi
    v = torch.rand(n_torus, generator=g) * 2 * math.pi
    R, r = 0.95, 0.08
    pts = torch.stack([(R + r * torch.cos(v)) * torch.cos(u), r * torch.sin(v), (R + r * torch.cos(v)) * torch.sin(u)], -1)
    nrm = torch.stack([torch.cos(v) * torch.cos(u), torch.sin(v), torch.cos(v) * torch.sin(u)], -1)
    tilt = math.radians(25)
    rot = torch.tensor([[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]])
    ring_col = 0.5 + 0.4 * torch.stack([torch.sin(u), torch.sin(u + 2.1), torch.sin(u + 4.2)], -1)
    torus = _surfels(pts @ rot.T, nrm @ rot.T, ring_col, 0.018)
    # Cone on top (y negative is up): apex at y=-1.05, base radius 0.22 at y=-0.55.
    h = torch.rand(n_cone, generator=g)
    a = torch.rand(n_cone, generator=g) * 2 * math.pi
    rad = 0.22 * (1 - h)
    pts = torch.stack([rad * torch.cos(a), -0.55 - 0.5 * h, rad * torch.sin(a)], -1)
    slope = 0.22 / 0.5
    nrm = torch.nn.functional.normalize(torch.stack([torch.cos(a), -slope * torch.ones_like(a), torch.sin(a)], -1), dim=-1)
    cone_col = torch.tensor([0.2, 0.75, 0.3]) * (0.7 + 0.3 * h[:, None])
    cone = _surfels(pts, nrm, cone_col, 0.02)
    return GaussianScene.concat([sphere, torus, cone])


def random_scene(n: int, sh_degree: int = 0, seed: int = 0, dtype: torch.dtype = torch.float32,
                 extent=(1.0, 1.0, 0.5), scale_range=(0.005, 0.025)) -> GaussianScene:
    """Random Gaussians in a box about the origin (tests and benchmarks)."""
    g = torch.Generator().manual_seed(seed)
    ext = torch.tensor(extent, dtype=dtype)
    lo, hi = scale_range
    return GaussianScene(
        means=(torch.rand(n, 3, generator=g, dtype=dtype) * 2 - 1) * ext,
        scales=torch.log(lo + (hi - lo) * torch.rand(n, 3, generator=g, dtype=dtype)),
        quats=torch.randn(n, 4, generator=g, dtype=dtype),
        opacities=torch.randn(n, generator=g, dtype=dtype),
        sh0=torch.randn(n, 1, 3, generator=g, dtype=dtype),
        shN=0.3 * torch.randn(n, (sh_degree + 1) ** 2 - 1, 3, generator=g, dtype=dtype),
    )

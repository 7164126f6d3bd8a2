"""Make-It-4D-style animation of a single-image scene from a user's 2D motion: a region of the input view moves
along a direction (pixels), lifted to 3D through each Gaussian's depth, looping; rendered while the camera swings.

A Gaussian whose centre projects into the region moves by ``(z / f) * s(t) * (dx * x_cam + dy * y_cam)``: at its
depth z that is exactly (dx, dy) * s(t) pixels in the input view, with s(t) = sin(2 pi t / T) (a seamless loop).
It is one motion basis of a :class:`MotionScene` with per-Gaussian coefficients z / f.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from splat4d.motion import MotionScene
from splat4d.types import Cameras, GaussianScene


def region_coefficients(scene: GaussianScene, camera: Cameras, region: np.ndarray) -> torch.Tensor:
    """(N,) z / f for Gaussians whose centre projects inside ``region`` (H, W bool, the camera's size), else 0."""
    w2c = torch.linalg.inv(camera.c2w[0].double())
    pc = scene.means.double() @ w2c[:3, :3].T + w2c[:3, 3]
    K = camera.K[0].double()
    z = pc[:, 2]
    u = (K[0, 0] * pc[:, 0] / z + K[0, 2]).floor().long()
    v = (K[1, 1] * pc[:, 1] / z + K[1, 2]).floor().long()
    h, w = region.shape
    inside = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    hit = torch.zeros(len(scene), dtype=torch.bool)
    reg = torch.from_numpy(np.asarray(region, bool))
    hit[inside] = reg[v[inside], u[inside]]
    return torch.where(hit, z / K[0, 0], torch.zeros_like(z)).float()


def animate(scene: GaussianScene, camera: Cameras, region: np.ndarray, direction_px: tuple[float, float],
            frames: int = 60) -> MotionScene:
    """A looping animation: the region moves +-direction_px pixels (a sine over ``frames``)."""
    c2w = camera.c2w[0].double()
    step = direction_px[0] * c2w[:3, 0] + direction_px[1] * c2w[:3, 1]  # camera x (right), y (down) in world
    s = torch.sin(2 * math.pi * torch.arange(frames, dtype=torch.float64) / frames)
    bases = (s[:, None] * step[None])[None].float()  # (1, T, 3)
    weights = region_coefficients(scene, camera, region)[:, None]
    return MotionScene(scene, bases, weights)

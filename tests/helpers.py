"""Shared test fixtures: cameras and scenes."""

import torch

from splat4d.paths import look_at
from splat4d.types import Cameras


def front_cameras(width=48, height=40, distance=3.0, n=1, dtype=torch.float64, fov=50.0, spread_deg=25.0):
    """n cameras on an arc in front of the origin, looking at it."""
    az = torch.linspace(-spread_deg, spread_deg, n, dtype=dtype) if n > 1 else torch.zeros(1, dtype=dtype)
    az = torch.deg2rad(az)
    eyes = torch.stack([distance * torch.sin(az), -0.3 * torch.ones_like(az), -distance * torch.cos(az)], -1)
    c2w = look_at(eyes, torch.zeros_like(eyes), torch.tensor([0.0, -1.0, 0.0], dtype=dtype))
    return Cameras.from_fov(c2w, width, height, fov)

"""Make-It-4D-style animation of a single-image scene from a user's 2D motion, lifted to 3D through each Gaussian's
depth, looping; rendered while the camera swings. The motion is a flow image (H, W, 2): the peak displacement in
input-view pixels of whatever is seen at each pixel; a region mask plus one direction is the special case of a
flow that is constant inside the region and zero outside.

A Gaussian whose centre projects to pixel p moves by ``(z / f) * s(t) * (flow_x(p) * x_cam + flow_y(p) * y_cam)``:
at its depth z that is exactly flow(p) * s(t) pixels in the input view, with s(t) = sin(2 pi t / T) (a seamless
loop). That is a :class:`MotionScene` with two bases (s(t) x_cam and s(t) y_cam in world units) and per-Gaussian
coefficients (z / f) * flow(p).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from splat4d.motion import MotionScene
from splat4d.types import Cameras, GaussianScene


def flow_coefficients(scene: GaussianScene, camera: Cameras, flow: np.ndarray) -> torch.Tensor:
    """(N, 2) (z / f) * flow at the pixel each centre projects to (the camera's size); 0 outside the image."""
    flow_t = torch.from_numpy(np.asarray(flow, np.float64))
    if flow_t.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"flow must be ({camera.height}, {camera.width}, 2) like the camera, got "
                         f"{tuple(flow_t.shape)}")
    camera = camera[0]
    uv, z = camera.project(scene.means.double())
    inside = camera.in_image(uv, z)[0]
    u, v = uv[0, inside].floor().long().unbind(-1)
    coeffs = torch.zeros(len(scene), 2, dtype=torch.float64)
    coeffs[inside] = flow_t[v, u] * camera.pixel_footprint(z[:, inside])[0, :, None]
    return coeffs.float()


def animate_flow(scene: GaussianScene, camera: Cameras, flow: np.ndarray, frames: int = 60) -> MotionScene:
    """A looping animation: what is seen at pixel p moves +-flow[p] pixels (a sine over ``frames``)."""
    flow = np.asarray(flow, np.float64)
    if flow.shape != (camera.height, camera.width, 2):
        raise ValueError(f"flow must be (H, W, 2) = ({camera.height}, {camera.width}, 2) here, got {flow.shape}")
    if not np.isfinite(flow).all():
        raise ValueError("flow has NaN or infinite values")
    c2w = camera.c2w[0].double()
    s = torch.sin(2 * math.pi * torch.arange(frames, dtype=torch.float64) / frames)
    bases = torch.stack([s[:, None] * c2w[:3, 0], s[:, None] * c2w[:3, 1]]).float()  # (2, T, 3): camera x, y
    return MotionScene(scene, bases, flow_coefficients(scene, camera, flow))


def animate(scene: GaussianScene, camera: Cameras, region: np.ndarray, direction_px: tuple[float, float],
            frames: int = 60) -> MotionScene:
    """A looping animation: the region moves +-direction_px pixels (a sine over ``frames``)."""
    flow = np.asarray(region, bool)[..., None] * np.asarray(direction_px, np.float64)
    return animate_flow(scene, camera, flow, frames)

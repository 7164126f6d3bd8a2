"""Conversions between splat4d's convention and the others, in one place.

splat4d: OpenCV cameras (x right, y down, z forward), world +y down (see ``splat4d.types``).
nerfstudio / viser-GL: OpenGL cameras (x right, y up, looking along -z), world +Z up.
The world map is the rotation ``(x, y, z) -> (x, z, -y)``: our "down" (+y) becomes nerfstudio's -Z, our forward
(+z) becomes nerfstudio's +Y.
"""

from __future__ import annotations

import torch
from torch import Tensor

WORLD_TO_NERFSTUDIO = torch.tensor(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64
)
"""4x4 rotation taking splat4d world points to nerfstudio's +Z-up world."""

OPENCV_TO_OPENGL_CAMERA = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))
"""Right-multiplying a c2w by this flips the camera's y and z axes (OpenCV <-> OpenGL); it is its own inverse."""


def opencv_c2w_to_nerfstudio(c2w: Tensor) -> Tensor:
    """(..., 4, 4) splat4d (OpenCV, y-down world) c2w -> nerfstudio (OpenGL, Z-up world) c2w."""
    return WORLD_TO_NERFSTUDIO.to(c2w) @ c2w @ OPENCV_TO_OPENGL_CAMERA.to(c2w)


def nerfstudio_c2w_to_opencv(c2w: Tensor) -> Tensor:
    """Inverse of :func:`opencv_c2w_to_nerfstudio`."""
    return WORLD_TO_NERFSTUDIO.to(c2w).T @ c2w @ OPENCV_TO_OPENGL_CAMERA.to(c2w)


def points_to_nerfstudio(points: Tensor) -> Tensor:
    """(..., 3) splat4d world points -> nerfstudio world."""
    return points @ WORLD_TO_NERFSTUDIO[:3, :3].to(points).T

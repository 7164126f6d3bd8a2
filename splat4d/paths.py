"""Camera paths: orbit, spiral, swing, and nerfstudio ``camera_path.json``.

World convention (see ``splat4d.types``): OpenCV-like, +y points *down*, so "up" is ``(0, -1, 0)`` by default. The
input camera of the single-image pipeline sits at azimuth 0, on the -z side of the object, looking along +z.
Azimuth turns about the up axis; elevation > 0 puts the camera above the object.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from splat4d.io.conventions import opencv_c2w_to_nerfstudio, nerfstudio_c2w_to_opencv
from splat4d.types import CameraPath, Cameras

DEFAULT_UP = (0.0, -1.0, 0.0)


def object_up(elevation_deg: float | None) -> tuple[float, float, float]:
    """The object's up direction in splat4d's world (the input camera's frame: y down, z forward) when the input
    camera looks down on it from ``elevation_deg`` above its horizon: the camera's up (0, -1, 0) tipped towards the
    camera. Orbits about it at that elevation pass through the input view at azimuth 0 (see :func:`orbit_eyes`)."""
    e = math.radians(elevation_deg or 0.0)
    return (0.0, -math.cos(e), -math.sin(e))


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """(..., 4, 4) OpenCV camera-to-world matrices for cameras at ``eye`` looking at ``target``."""
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.linalg.cross(forward, up.expand_as(forward), dim=-1)
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-8
    if degenerate.any():  # looking straight along the up axis: any right vector perpendicular to forward works
        alt = torch.linalg.cross(forward, torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype).expand_as(forward), dim=-1)
        right = torch.where(degenerate, alt, right)
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.linalg.cross(forward, right, dim=-1)
    c2w = torch.zeros(eye.shape[:-1] + (4, 4), dtype=eye.dtype)
    c2w[..., :3, 0] = right
    c2w[..., :3, 1] = down
    c2w[..., :3, 2] = forward
    c2w[..., :3, 3] = eye
    c2w[..., 3, 3] = 1.0
    return c2w


def _basis(up: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Orthonormal (up, front, side) with front = the -z direction of the reference frame where possible."""
    up = torch.nn.functional.normalize(up, dim=-1)
    ref = torch.tensor([0.0, 0.0, -1.0], dtype=up.dtype)
    if torch.abs(torch.dot(ref, up)) > 0.99:
        ref = torch.tensor([1.0, 0.0, 0.0], dtype=up.dtype)
    front = torch.nn.functional.normalize(ref - torch.dot(ref, up) * up, dim=-1)
    side = torch.linalg.cross(up, front)
    return up, front, side


def orbit_eyes(center: Tensor, radius: Tensor | float, azimuth_deg: Tensor, elevation_deg: Tensor | float,
               up: Tensor) -> Tensor:
    """Camera positions on a sphere about ``center``: azimuth 0 is in front (the -z side); positive azimuth moves the
    camera towards +x (the right of the input image); positive elevation moves it along ``up``."""
    up_n, front, side = _basis(up)
    az = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=center.dtype))
    el = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=center.dtype))
    radius = torch.as_tensor(radius, dtype=center.dtype)
    horiz = torch.cos(az)[..., None] * front + torch.sin(az)[..., None] * side
    direction = torch.cos(el)[..., None] * horiz + torch.sin(el)[..., None] * up_n
    return center + radius[..., None] * direction if radius.ndim else center + radius * direction


def looking_at_origin(radius: float, azimuth_deg, elevation_deg, up=DEFAULT_UP) -> Tensor:
    """(N, 4, 4) float64 camera-to-world of cameras at the given azimuths and elevations (degrees, as in
    :func:`orbit_eyes`) on a sphere of ``radius`` about the origin, each looking at it."""
    center, up = torch.zeros(3, dtype=torch.float64), _as_tensor(up)
    eyes = orbit_eyes(center, radius, _as_tensor(azimuth_deg), _as_tensor(elevation_deg), up)
    return look_at(eyes, center.expand_as(eyes), up)


def _path(eyes: Tensor, center: Tensor, up: Tensor, width: int, height: int, fov_y_deg: float, fps: float) -> CameraPath:
    c2w = look_at(eyes, center.expand_as(eyes), torch.nn.functional.normalize(up, dim=-1))
    return CameraPath(Cameras.from_fov(c2w, width, height, fov_y_deg), fps=fps)


def _as_tensor(v, dtype=torch.float64) -> Tensor:
    return torch.as_tensor(v, dtype=dtype)


def orbit(center=(0.0, 0.0, 0.0), radius: float = 3.0, elevation_deg: float = 15.0, frames: int = 120,
          width: int = 256, height: int = 256, fov_y_deg: float = 40.0, up=DEFAULT_UP, fps: float = 30.0,
          start_azimuth_deg: float = 0.0, degrees: float = 360.0) -> CameraPath:
    """A full turn (by default) at a fixed elevation. The last frame stops one step short of the first, so the
    video loops seamlessly."""
    if frames < 1:
        raise ValueError("an orbit needs at least one frame")
    center, up = _as_tensor(center), _as_tensor(up)
    az = start_azimuth_deg + degrees * torch.arange(frames, dtype=torch.float64) / frames
    eyes = orbit_eyes(center, radius, az, elevation_deg, up)
    return _path(eyes, center, up, width, height, fov_y_deg, fps)


def spiral(center=(0.0, 0.0, 0.0), radius: float = 3.0, elevation_deg: float = 15.0, elevation_amplitude_deg:
           float = 20.0, turns: float = 1.0, frames: int = 120, width: int = 256, height: int = 256,
           fov_y_deg: float = 40.0, up=DEFAULT_UP, fps: float = 30.0) -> CameraPath:
    """Orbit whose elevation rises and falls once per turn (sinusoid): shows top and underside too."""
    center, up = _as_tensor(center), _as_tensor(up)
    u = torch.arange(frames, dtype=torch.float64) / frames
    az = 360.0 * turns * u
    el = elevation_deg + elevation_amplitude_deg * torch.sin(2 * math.pi * u)
    eyes = orbit_eyes(center, radius, az, el, up)
    return _path(eyes, center, up, width, height, fov_y_deg, fps)


def swing(center=(0.0, 0.0, 0.0), radius: float = 3.0, elevation_deg: float = 5.0, amplitude_deg: float = 20.0,
          frames: int = 120, width: int = 256, height: int = 256, fov_y_deg: float = 40.0, up=DEFAULT_UP,
          fps: float = 30.0) -> CameraPath:
    """Swing left and right about the front view (azimuth = amplitude * sin): the 2.5D 'wiggle' look."""
    center, up = _as_tensor(center), _as_tensor(up)
    u = torch.arange(frames, dtype=torch.float64) / frames
    az = amplitude_deg * torch.sin(2 * math.pi * u)
    eyes = orbit_eyes(center, radius, az, elevation_deg, up)
    return _path(eyes, center, up, width, height, fov_y_deg, fps)


# nerfstudio camera_path.json ----------------------------------------------------------------------------------------

def write_nerfstudio_camera_path(path: CameraPath, file: str | Path) -> None:
    """Write nerfstudio's viewer format (OpenGL c2w in nerfstudio's +Z-up world, vertical FoV in degrees)."""
    cams = path.cameras
    c2w_ns = opencv_c2w_to_nerfstudio(cams.c2w.double())
    fovs = cams.fov_y_deg()
    frames = [
        {"camera_to_world": c2w_ns[i].reshape(-1).tolist(), "fov": float(fovs[i]), "aspect": cams.width / cams.height}
        for i in range(len(cams))
    ]
    data = {
        "camera_type": "perspective",
        "render_height": cams.height,
        "render_width": cams.width,
        "fps": path.fps,
        "seconds": len(cams) / path.fps,
        "camera_path": frames,
    }
    Path(file).write_text(json.dumps(data, indent=2))


def read_nerfstudio_camera_path(file: str | Path, width: int | None = None, height: int | None = None) -> CameraPath:
    """Read a ``camera_path.json`` from nerfstudio's viewer (or ours). Size defaults to the file's render size."""
    try:
        data = json.loads(Path(file).read_text())
        frames = data["camera_path"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{file} is not a nerfstudio camera_path.json ({err})") from err
    if not frames:
        raise ValueError(f"{file} has an empty camera_path")
    if data.get("camera_type", "perspective") != "perspective":
        raise ValueError(f"{file}: only perspective camera paths are supported, got {data['camera_type']!r}")
    height = int(height or data.get("render_height", 256))
    width = int(width or data.get("render_width", round(height * frames[0].get("aspect", 1.0))))
    c2w_ns = torch.tensor([f["camera_to_world"] for f in frames], dtype=torch.float64).reshape(-1, 4, 4)
    c2w = nerfstudio_c2w_to_opencv(c2w_ns)
    focal = 0.5 * height / torch.tan(torch.deg2rad(torch.tensor([float(f["fov"]) for f in frames],
                                                                 dtype=torch.float64)) / 2)
    K = torch.zeros(len(frames), 3, 3, dtype=torch.float64)
    K[:, 0, 0] = focal
    K[:, 1, 1] = focal
    K[:, 0, 2] = width / 2
    K[:, 1, 2] = height / 2
    K[:, 2, 2] = 1.0
    seconds = float(data.get("seconds", 0) or 0)
    fps = float(data.get("fps") or (len(frames) / seconds if seconds > 0 else 30.0))
    return CameraPath(Cameras(c2w, K, width, height), fps=fps)


def frame_scene(means: Tensor, opacities: Tensor | None = None, fov_y_deg: float = 40.0, margin: float = 1.15,
                quantile: float = 0.98) -> tuple[Tensor, float]:
    """Centre and camera distance that fit a scene's Gaussians in a field of view (robust to stray splats).

    ``means`` (N, 3); ``opacities`` (N,) activated, used to ignore nearly transparent Gaussians. The centre is the
    middle of the (1-q, q) quantile box and the radius the q-quantile distance from it.
    """
    pts = means.detach().double()
    if opacities is not None:
        keep = opacities.detach() > 0.05
        if keep.sum() >= 8:
            pts = pts[keep]
    if pts.shape[0] == 0:
        return torch.zeros(3, dtype=torch.float64), 3.0
    if pts.shape[0] > 200_000:
        pts = pts[torch.randperm(pts.shape[0], generator=torch.Generator().manual_seed(0))[:200_000]]
    lo = torch.quantile(pts, 1 - quantile, dim=0)
    hi = torch.quantile(pts, quantile, dim=0)
    center = (lo + hi) / 2
    extent = float(torch.quantile((pts - center).norm(dim=1), quantile))
    extent = max(extent, 1e-3)
    distance = margin * extent / math.sin(math.radians(fov_y_deg) / 2)
    return center, distance

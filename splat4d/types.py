"""Typed data passed between splat4d stages.

One convention, documented once:

* World and camera frames follow OpenCV/COLMAP: camera x right, y down, z forward (the camera looks along +z).
* ``Cameras.c2w`` is camera-to-world (4x4); ``Cameras.viewmats()`` gives gsplat's world-to-camera matrices.
* Intrinsics ``K`` are in pixels with pixel centres at ``+0.5`` (pixel (0, 0) covers [0, 1) x [0, 1)), zero skew.
  ``Cameras.project`` maps world points to these pixel coordinates and camera z (the pixel is ``uv.floor()``),
  ``Cameras.unproject`` maps them back; both are gsplat's pinhole (``means2d``, ``depths``).
* Gaussian parameters are stored pre-activation with gsplat's keys: ``means`` (N,3), ``scales`` (N,3) log scale,
  ``quats`` (N,4) w,x,y,z (not necessarily normalised), ``opacities`` (N,) logit, ``sh0`` (N,1,3) DC SH coefficient,
  ``shN`` (N,K,3) higher-order SH coefficients (K = (degree+1)^2 - 1).

Conversions to other conventions (nerfstudio/OpenGL, viser, PLY) happen only at the edges, in ``splat4d.io``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterator, Literal

import numpy as np
import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
"""Zeroth-order real spherical harmonic: colour = SH_C0 * sh0 + 0.5."""

PARAM_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """Colour in [0, 1] (..., 3) to the DC SH coefficient that renders it."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    """DC SH coefficient to colour (unclamped)."""
    return sh0 * SH_C0 + 0.5


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def sh_degree_from_bases(num_rest: int) -> int:
    """Degree from the number of higher-order coefficients per channel (0, 3, 8, 15 -> 0, 1, 2, 3)."""
    degree = int(round(math.sqrt(num_rest + 1))) - 1
    if num_sh_bases(degree) - 1 != num_rest:
        raise ValueError(f"{num_rest} higher-order SH coefficients per channel is not (d+1)^2-1 for any degree d")
    return degree


def rigid_transform(matrices: Tensor, points: Tensor) -> Tensor:
    """(C, N, 3) ``R p + t`` for C transforms ``matrices`` (C, 4, 4) (their last row is ignored) and points (N, 3)
    shared by all, or (C, N, 3) one set per transform. Same dtype and device expected."""
    return points @ matrices[:, :3, :3].transpose(-1, -2) + matrices[:, None, :3, 3]


def pinhole_project(points: Tensor, Ks: Tensor) -> tuple[Tensor, Tensor]:
    """Camera-frame points (N, 3) or (C, N, 3) to pixel coordinates ``uv`` (C, N, 2) and camera z (C, N) under
    intrinsics ``Ks`` (C, 3, 3): ``u = fx x / z + cx``, ``v = fy y / z + cy`` (computed as ``fx * (x / z)``).

    Pixel centres are at ``+0.5`` (see module docstring). Zero skew: ``K[0, 1]`` is ignored, as gsplat's CUDA
    projection ignores it. Where ``z <= 0`` the result is mirrored, inf or NaN: callers mask with ``z > 0``.
    """
    points = points.expand(Ks.shape[0], *points.shape[-2:]) if points.ndim == 2 else points
    z = points[..., 2]
    focal = torch.stack([Ks[:, 0, 0], Ks[:, 1, 1]], -1)[:, None]  # (C, 1, 2)
    return points[..., :2] / z[..., None] * focal + Ks[:, None, :2, 2], z


def pinhole_unproject(uv: Tensor, depth: Tensor, Ks: Tensor) -> Tensor:
    """(C, N, 3) camera-frame points at camera z ``depth`` (N,) or (C, N) on the rays through pixel coordinates
    ``uv`` (N, 2) or (C, N, 2) under intrinsics ``Ks`` (C, 3, 3): ``x = (u - cx) / fx * z``; the inverse of
    :func:`pinhole_project` (zero skew)."""
    uv = uv.expand(Ks.shape[0], *uv.shape[-2:]) if uv.ndim == 2 else uv
    depth = depth.expand(Ks.shape[0], depth.shape[-1]) if depth.ndim == 1 else depth
    focal = torch.stack([Ks[:, 0, 0], Ks[:, 1, 1]], -1)[:, None]
    xy = (uv - Ks[:, None, :2, 2]) / focal * depth[..., None]
    return torch.cat([xy, depth[..., None]], -1)


@dataclass
class Cameras:
    """A batch of C pinhole cameras (OpenCV convention, see module docstring)."""

    c2w: Tensor
    """(C, 4, 4) camera-to-world transforms."""
    K: Tensor
    """(C, 3, 3) intrinsics in pixels."""
    width: int
    """Image width in pixels (shared by the batch)."""
    height: int
    """Image height in pixels (shared by the batch)."""

    def __post_init__(self) -> None:
        if self.c2w.ndim == 2:
            self.c2w = self.c2w[None]
        if self.K.ndim == 2:
            self.K = self.K[None]
        if self.c2w.shape[-2:] != (4, 4) or self.K.shape[-2:] != (3, 3) or self.c2w.shape[0] != self.K.shape[0]:
            raise ValueError(f"Cameras need c2w (C,4,4) and K (C,3,3); got {tuple(self.c2w.shape)}, {tuple(self.K.shape)}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, idx: int | slice) -> "Cameras":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1 if idx != -1 else None)
        return replace(self, c2w=self.c2w[idx], K=self.K[idx])

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    def viewmats(self) -> Tensor:
        """(C, 4, 4) world-to-camera matrices (gsplat's ``viewmats``)."""
        return torch.linalg.inv(self.c2w)

    def centers(self) -> Tensor:
        """(C, 3) camera centres in world coordinates."""
        return self.c2w[:, :3, 3]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Cameras":
        return replace(self, c2w=self.c2w.to(device, dtype), K=self.K.to(device, dtype))

    @staticmethod
    def concat(cameras: list["Cameras"]) -> "Cameras":
        """All cameras of ``cameras`` (one image size), in order, in the first one's dtype and device."""
        c2w, K = cameras[0].c2w, cameras[0].K
        return Cameras(torch.cat([c.c2w.to(c2w) for c in cameras]), torch.cat([c.K.to(K) for c in cameras]),
                       cameras[0].width, cameras[0].height)

    @staticmethod
    def from_fov(c2w: Tensor, width: int, height: int, fov_y_deg: float) -> "Cameras":
        """Cameras with square pixels, principal point at the image centre and a vertical field of view."""
        c2w = c2w if c2w.ndim == 3 else c2w[None]
        focal = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
        K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=c2w.dtype)
        return Cameras(c2w=c2w, K=K.expand(c2w.shape[0], 3, 3).clone().to(c2w.device), width=width, height=height)

    def fov_y_deg(self) -> Tensor:
        """(C,) vertical field of view in degrees."""
        return torch.rad2deg(2 * torch.atan(0.5 * self.height / self.K[:, 1, 1]))

    # Geometry -------------------------------------------------------------------------------------------------------
    # Shapes: per-point inputs are either shared by all C cameras, (N, ...), or one set per camera, (C, N, ...);
    # outputs are always (C, N, ...). They are computed in the promoted dtype of the inputs and the cameras (the
    # cameras are converted before anything is inverted), on the inputs' device.

    def world_to_camera(self, points: Tensor) -> Tensor:
        """(C, N, 3) camera-frame coordinates of world points (N, 3) or (C, N, 3): ``R p + t`` of ``viewmats()``."""
        c2w = self.c2w.to(points.device, torch.promote_types(points.dtype, self.c2w.dtype))
        return rigid_transform(torch.linalg.inv(c2w), points)

    def camera_to_world(self, points: Tensor) -> Tensor:
        """(C, N, 3) world coordinates of camera-frame points (N, 3) or (C, N, 3): ``R p + t`` of ``c2w``."""
        return rigid_transform(self.c2w.to(points.device, torch.promote_types(points.dtype, self.c2w.dtype)), points)

    def camera_to_pixels(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Pinhole projection of camera-frame points, see :func:`pinhole_project`: ``uv`` (C, N, 2), ``z`` (C, N)."""
        return pinhole_project(points, self.K.to(points.device, torch.promote_types(points.dtype, self.K.dtype)))

    def pixels_to_camera(self, uv: Tensor, depth: Tensor) -> Tensor:
        """(C, N, 3) camera-frame points at camera z ``depth`` (N,) or (C, N) on the rays through pixel coordinates
        ``uv`` (N, 2) or (C, N, 2); see :func:`pinhole_unproject`."""
        dtype = torch.promote_types(torch.promote_types(uv.dtype, depth.dtype), self.K.dtype)
        return pinhole_unproject(uv.to(dtype), depth.to(dtype), self.K.to(uv.device, dtype))

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """World points (N, 3) or (C, N, 3) to pixel coordinates ``uv`` (C, N, 2) and camera z ``z`` (C, N).

        ``uv`` is continuous with pixel centres at ``+0.5``: the pixel a point lands in is ``uv.floor()`` as (column,
        row). ``uv`` means nothing where ``z <= 0`` (behind the camera it is mirrored, on the camera plane inf or
        NaN): mask with ``z > 0``, as :meth:`in_image` does. gsplat's ``means2d`` are the same (up to rounding).
        """
        return self.camera_to_pixels(self.world_to_camera(points))

    def unproject(self, uv: Tensor, depth: Tensor) -> Tensor:
        """(C, N, 3) world points at camera z ``depth`` (N,) or (C, N) seen at pixel coordinates ``uv`` (N, 2) or
        (C, N, 2) (the inverse of :meth:`project`: a pixel's centre is ``(col + 0.5, row + 0.5)``, see
        :meth:`pixel_centers`)."""
        return self.camera_to_world(self.pixels_to_camera(uv, depth))

    def in_image(self, uv: Tensor, z: Tensor) -> Tensor:
        """(C, N) bool: in front of the camera (``z > 0``) and inside the image (``0 <= u < width``,
        ``0 <= v < height``, i.e. ``uv.floor()`` is a valid pixel). NaN coordinates are outside."""
        u, v = uv.unbind(-1)
        return (z > 0) & (u >= 0) & (u < self.width) & (v >= 0) & (v < self.height)

    def pixel_footprint(self, depth: Tensor) -> Tensor:
        """(C, N) world size of one pixel (horizontally) at camera z ``depth`` (N,) or (C, N): ``depth / fx``."""
        return depth / self.K[:, 0, 0, None].to(depth.device, torch.promote_types(depth.dtype, self.K.dtype))

    @staticmethod
    def pixel_centers(rows: Tensor | np.ndarray, cols: Tensor | np.ndarray,
                      dtype: torch.dtype = torch.float64) -> Tensor:
        """(..., 2) pixel coordinates ``(col + 0.5, row + 0.5)`` of the centres of the pixels (``rows``, ``cols``)
        (integer arrays or tensors of one shape), for :meth:`unproject`."""
        rows, cols = torch.as_tensor(rows).to(dtype), torch.as_tensor(cols).to(dtype)
        return torch.stack([cols + 0.5, rows + 0.5], -1)


@dataclass
class GaussianScene:
    """Gaussian parameters, pre-activation (see module docstring). No optimiser and no rendering live here."""

    means: Tensor
    """(N, 3) centres in world coordinates."""
    scales: Tensor
    """(N, 3) log standard deviations along the local axes."""
    quats: Tensor
    """(N, 4) rotations as w, x, y, z (normalised on use)."""
    opacities: Tensor
    """(N,) opacity logits."""
    sh0: Tensor
    """(N, 1, 3) DC spherical-harmonic coefficients."""
    shN: Tensor
    """(N, K, 3) higher-order SH coefficients, K in {0, 3, 8, 15}."""

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_bases(self.shN.shape[1])

    @property
    def device(self) -> torch.device:
        return self.means.device

    # Activated accessors ------------------------------------------------------------------------------------------
    def scales_act(self) -> Tensor:
        return torch.exp(self.scales)

    def quats_act(self) -> Tensor:
        return torch.nn.functional.normalize(self.quats, dim=-1)

    def opacities_act(self) -> Tensor:
        return torch.sigmoid(self.opacities)

    def colors_sh(self) -> Tensor:
        """(N, (d+1)^2, 3) all SH coefficients, DC first."""
        return torch.cat([self.sh0, self.shN], dim=1)

    def rgb_dc(self) -> Tensor:
        """(N, 3) view-independent colour in [0, 1]."""
        return sh0_to_rgb(self.sh0[:, 0]).clamp(0.0, 1.0)

    # Construction and checks -------------------------------------------------------------------------------------
    @staticmethod
    def from_activated(
        means: Tensor,
        scales: Tensor,
        rgb: Tensor,
        opacities: Tensor,
        quats: Tensor | None = None,
        sh_degree: int = 0,
    ) -> "GaussianScene":
        """Build from activated values: linear scales, colours in [0,1], opacities in (0,1)."""
        n = means.shape[0]
        if quats is None:
            quats = torch.zeros(n, 4, dtype=means.dtype, device=means.device)
            quats[:, 0] = 1.0
        eps = 1e-6
        return GaussianScene(
            means=means,
            scales=torch.log(scales.clamp_min(1e-12)),
            quats=quats,
            opacities=torch.logit(opacities.clamp(eps, 1 - eps)),
            sh0=rgb_to_sh0(rgb)[:, None, :],
            shN=torch.zeros(n, num_sh_bases(sh_degree) - 1, 3, dtype=means.dtype, device=means.device),
        )

    def params(self) -> dict[str, Tensor]:
        return {k: getattr(self, k) for k in PARAM_KEYS}

    def items(self) -> Iterator[tuple[str, Tensor]]:
        return iter(self.params().items())

    @staticmethod
    def from_params(params: dict[str, Tensor]) -> "GaussianScene":
        """From a dict (or torch.nn.ParameterDict) with gsplat's keys; tensors are detached."""
        return GaussianScene(**{k: params[k].detach() for k in PARAM_KEYS})

    def to(self, device: torch.device | str) -> "GaussianScene":
        return GaussianScene(**{k: v.to(device) for k, v in self.items()})

    def detach(self) -> "GaussianScene":
        return GaussianScene(**{k: v.detach() for k, v in self.items()})

    @staticmethod
    def concat(scenes: list["GaussianScene"]) -> "GaussianScene":
        """One scene holding all Gaussians of ``scenes`` (same SH degree), in order."""
        return GaussianScene(**{k: torch.cat([getattr(s, k).to(getattr(scenes[0], k)) for s in scenes])
                                for k in PARAM_KEYS})

    def select(self, mask_or_index: Tensor) -> "GaussianScene":
        return GaussianScene(**{k: v[mask_or_index] for k, v in self.items()})

    def validate(self) -> "GaussianScene":
        """Check shapes, dtypes and finiteness; raise ``ValueError`` naming the first problem. Returns self."""
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        expected = {
            "means": (n, 3),
            "scales": (n, 3),
            "quats": (n, 4),
            "opacities": (n,),
            "sh0": (n, 1, 3),
        }
        for key, shape in expected.items():
            tensor = getattr(self, key)
            if tuple(tensor.shape) != shape:
                raise ValueError(f"GaussianScene.{key} has shape {tuple(tensor.shape)}, expected {shape}")
        if self.shN.ndim != 3 or self.shN.shape[0] != n or self.shN.shape[2] != 3:
            raise ValueError(f"GaussianScene.shN has shape {tuple(self.shN.shape)}, expected ({n}, K, 3)")
        sh_degree_from_bases(self.shN.shape[1])
        for key, tensor in self.items():
            if not tensor.is_floating_point():
                raise ValueError(f"GaussianScene.{key} must be floating point, got {tensor.dtype}")
            bad = ~torch.isfinite(tensor)
            if bad.any():
                rows = bad.reshape(n, -1).any(dim=1).nonzero()[:, 0]
                raise ValueError(
                    f"GaussianScene.{key} has {len(rows)} Gaussians with NaN/Inf values (first: index {rows[0].item()})"
                )
        if n and (self.quats.norm(dim=-1) == 0).any():
            raise ValueError("GaussianScene.quats has zero-length quaternions")
        return self


@dataclass
class RenderOutput:
    """What a rasterizer returns for a batch of C cameras."""

    rgb: Tensor
    """(C, H, W, 3) colour composited over the background."""
    alpha: Tensor
    """(C, H, W, 1) accumulated opacity."""
    depth: Tensor
    """(C, H, W, 1) expected depth along the camera z axis (accumulated depth / alpha; 0 where alpha is 0)."""
    means2d: Tensor
    """(C, N, 2) projected centres in pixels; ``retain_grad()`` is set on it when it requires grad (densification)."""
    radii: Tensor
    """(C, N, 2) integer pixel half-extents of each Gaussian's support; 0 where it is culled."""
    depth_sum: Tensor | None = None
    """(C, H, W, 1) accumulated (alpha-weighted) depth, before dividing by alpha."""

    @property
    def num_cameras(self) -> int:
        return self.rgb.shape[0]


@dataclass
class CameraPath:
    """A timed sequence of cameras to render a video along."""

    cameras: Cameras
    """All frames' cameras (C = number of frames)."""
    fps: float = 30.0
    """Frames per second of the video."""
    times: Tensor | None = field(default=None)
    """(C,) optional scene time per frame in [0, 1] for motion-aware scenes."""

    def __len__(self) -> int:
        return len(self.cameras)


@dataclass
class Views:
    """Images with their cameras: the input view(s) or the supervisory views a prior generates."""

    images: Tensor
    """(V, H, W, 3) colours in [0, 1], composited over ``background`` outside the mask."""
    masks: Tensor
    """(V, H, W) foreground probability in [0, 1] (1 = object)."""
    cameras: Cameras
    """V cameras matching the images."""
    weights: Tensor | None = None
    """(V,) loss weight per view (1 for the input view; lower for hallucinated ones). None = all ones."""
    confidence: Tensor | None = None
    """(V, H, W) optional per-pixel confidence in [0, 1] (e.g. 0 where a prior inpainted)."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Colour the images were composited over."""

    def __post_init__(self) -> None:
        v, h, w = self.images.shape[:3]
        if self.images.shape != (v, h, w, 3) or self.masks.shape != (v, h, w):
            raise ValueError(f"Views need images (V,H,W,3) and masks (V,H,W); got {tuple(self.images.shape)}, "
                             f"{tuple(self.masks.shape)}")
        if len(self.cameras) != v or (self.cameras.height, self.cameras.width) != (h, w):
            raise ValueError(f"{len(self.cameras)} cameras of {self.cameras.width}x{self.cameras.height} do not match "
                             f"{v} images of {w}x{h}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def view_weights(self) -> Tensor:
        return self.weights if self.weights is not None else torch.ones(len(self))


DepthKind = Literal["metric", "relative", "disparity"]


@dataclass
class DepthMap:
    """A depth estimate for one view."""

    depth: Tensor
    """(H, W) camera-space z (metric/relative) or disparity, by ``kind``; 0 where unknown."""
    confidence: Tensor
    """(H, W) in [0, 1]."""
    kind: DepthKind = "metric"
    """'metric': z in world units; 'relative': z up to scale and shift; 'disparity': inverse depth up to scale/shift."""
    fov_deg: float | None = None
    """Vertical field of view the estimator inferred for the image (e.g. Depth Pro), if any."""
    back: Tensor | None = None
    """(H, W) camera z where each pixel's ray last leaves the object (``kind`` 'metric' only), when the estimator
    predicts the far side (the shape prior); ``None``: the init mirrors the front."""
    elevation_deg: float | None = None
    """The camera's elevation above the object's horizon (degrees, positive looking down), when estimated."""

    @staticmethod
    def on_mask(values: np.ndarray, fg: np.ndarray, kind: DepthKind = "metric",
                confidence: np.ndarray | float | None = None, fov_deg: float | None = None,
                back: np.ndarray | None = None, elevation_deg: float | None = None) -> "DepthMap":
        """``values`` (H, W) kept where ``fg`` (bool), 0 elsewhere; ``confidence`` and ``back`` likewise
        (confidence default: 1 on ``fg``)."""
        conf = fg if confidence is None else confidence
        back_t = None if back is None else torch.from_numpy(np.where(fg, back, 0.0).astype(np.float32))
        return DepthMap(torch.from_numpy(np.where(fg, values, 0.0).astype(np.float32)),
                        torch.from_numpy(np.where(fg, conf, 0.0).astype(np.float32)), kind=kind, fov_deg=fov_deg,
                        back=back_t, elevation_deg=elevation_deg)

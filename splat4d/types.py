"""Typed data passed between splat4d stages.

One convention, documented once:

* World and camera frames follow OpenCV/COLMAP: camera x right, y down, z forward (the camera looks along +z).
* ``Cameras.c2w`` is camera-to-world (4x4); ``Cameras.viewmats()`` gives gsplat's world-to-camera matrices.
* Intrinsics ``K`` are in pixels with pixel centres at ``+0.5`` (pixel (0, 0) covers [0, 1) x [0, 1)).
* Gaussian parameters are stored pre-activation with gsplat's keys: ``means`` (N,3), ``scales`` (N,3) log scale,
  ``quats`` (N,4) w,x,y,z (not necessarily normalised), ``opacities`` (N,) logit, ``sh0`` (N,1,3) DC SH coefficient,
  ``shN`` (N,K,3) higher-order SH coefficients (K = (degree+1)^2 - 1).

Conversions to other conventions (nerfstudio/OpenGL, viser, PLY) happen only at the edges, in ``splat4d.io``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
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


def dataclass_tensors(obj) -> dict[str, Tensor]:
    """The tensor fields of a dataclass instance (handy for saving)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj) if isinstance(getattr(obj, f.name), Tensor)}


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

    @staticmethod
    def on_mask(values: np.ndarray, fg: np.ndarray, kind: DepthKind = "metric",
                confidence: np.ndarray | float | None = None, fov_deg: float | None = None) -> "DepthMap":
        """``values`` (H, W) kept where ``fg`` (bool), 0 elsewhere; ``confidence`` likewise (default: 1 on ``fg``)."""
        conf = fg if confidence is None else confidence
        return DepthMap(torch.from_numpy(np.where(fg, values, 0.0).astype(np.float32)),
                        torch.from_numpy(np.where(fg, conf, 0.0).astype(np.float32)), kind=kind, fov_deg=fov_deg)

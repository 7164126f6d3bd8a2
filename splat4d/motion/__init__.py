"""Motion-aware (4D) scenes: Gaussians that move along a few shared motion bases (Shape-of-Motion / Stereo4D style).

Position of Gaussian n at frame t:  x_n(t) = x_n + sum_b w_nb * [m_b(t) + (R_b(t) - I)(x_n - c)],   m_b(0) = 0,
with B motion bases (per-frame 3D translations m_b(t) and, for SE(3) bases, rotations R_b(t) = exp(omega_b(t))
about the scene's centre c; translation-only bases have R = I) shared by all Gaussians and per-Gaussian
coefficients w_nb (0 = static). A Gaussian following one basis with weight 1 moves rigidly with it, its orientation
turned by R_b(t); mixtures turn by exp(sum_b w_nb omega_b(t)). Everything else (shape, colour, opacity) is shared
across time. Times between frames interpolate the bases linearly, so held-out times and slow-motion renders work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from splat4d.transform import quat_multiply
from splat4d.types import GaussianScene


def axis_angle_to_matrix(omega: Tensor) -> Tensor:
    """(..., 3) rotation vectors -> (..., 3, 3) rotations (matrix exponential of the skew matrix; differentiable,
    exact at zero)."""
    zero = torch.zeros_like(omega[..., 0])
    skew = torch.stack([torch.stack([zero, -omega[..., 2], omega[..., 1]], -1),
                        torch.stack([omega[..., 2], zero, -omega[..., 0]], -1),
                        torch.stack([-omega[..., 1], omega[..., 0], zero], -1)], -2)
    return torch.linalg.matrix_exp(skew)


def axis_angle_to_quat(omega: Tensor) -> Tensor:
    """(..., 3) rotation vectors -> (..., 4) wxyz unit quaternions (smooth at zero)."""
    half = omega / 2
    theta = torch.sqrt(half.square().sum(-1, keepdim=True) + 1e-20)
    return torch.cat([torch.cos(theta), torch.sinc(theta / torch.pi) * half], -1)


@dataclass
class MotionScene:
    canonical: GaussianScene
    """The Gaussians at frame 0."""
    bases: Tensor
    """(B, T, 3) translation of each motion basis at each frame (frame 0 is zero)."""
    weights: Tensor
    """(N, B) coefficient of each basis for each Gaussian."""
    rotations: Tensor | None = None
    """(B, T, 3) rotation vector (axis * angle, radians) of each basis at each frame (frame 0 is zero); None for
    translation-only bases."""
    pivot: Tensor | None = None
    """(3,) centre c the rotations turn about (default: the canonical Gaussians' mean position)."""

    @property
    def num_frames(self) -> int:
        return self.bases.shape[1]

    def _interp(self, track: Tensor, t: float | Tensor) -> Tensor:
        T = self.num_frames
        if T == 1:
            return track[:, 0]
        t = torch.as_tensor(t, dtype=track.dtype).clamp(0, T - 1)
        i0 = torch.clamp(torch.floor(t).long(), max=T - 2)
        a = t - i0
        return (1 - a) * track[:, i0] + a * track[:, i0 + 1]

    def basis_at(self, t: float | Tensor) -> Tensor:
        """(B, 3) bases' translations at (fractional) frame ``t`` in [0, T-1], linear between frames."""
        return self._interp(self.bases, t)

    def rotation_at(self, t: float | Tensor) -> Tensor | None:
        """(B, 3) bases' rotation vectors at frame ``t`` (linear between frames), None for translation bases."""
        return None if self.rotations is None else self._interp(self.rotations, t)

    def centre(self) -> Tensor:
        return self.canonical.means.detach().mean(0) if self.pivot is None else self.pivot

    def displacement(self, t: float | Tensor) -> Tensor:
        """(N, 3) displacement of every Gaussian at frame ``t``."""
        d = self.weights @ self.basis_at(t)
        omega = self.rotation_at(t)
        if omega is not None:
            turn = axis_angle_to_matrix(omega) - torch.eye(3, dtype=omega.dtype)  # (B, 3, 3)
            rel = self.canonical.means - self.centre().to(self.canonical.means)
            d = d + torch.einsum("nb,bij,nj->ni", self.weights, turn, rel)
        return d

    def at(self, t: float | Tensor) -> GaussianScene:
        c = self.canonical
        quats = c.quats
        omega = self.rotation_at(t)
        if omega is not None:
            quats = quat_multiply(axis_angle_to_quat(self.weights @ omega), c.quats)
        return GaussianScene(c.means + self.displacement(t), c.scales, quats, c.opacities, c.sh0, c.shN)

    def to(self, device) -> "MotionScene":
        def move(t):
            return None if t is None else t.to(device)

        return MotionScene(self.canonical.to(device), move(self.bases), move(self.weights), move(self.rotations),
                           move(self.pivot))

    def detach(self) -> "MotionScene":
        rot = None if self.rotations is None else self.rotations.detach()
        return MotionScene(self.canonical.detach(), self.bases.detach(), self.weights.detach(), rot, self.pivot)

    def save(self, path) -> None:
        """``.npz`` with the canonical parameters, ``bases`` (B, T, 3), ``weights`` (N, B) and, for SE(3) bases,
        ``rotations`` (B, T, 3) and ``pivot`` (3,)."""
        arrays = {f"canonical_{k}": v.detach().cpu().numpy() for k, v in self.canonical.items()}
        if self.rotations is not None:
            arrays["rotations"] = self.rotations.detach().cpu().numpy()
            arrays["pivot"] = self.centre().detach().cpu().numpy()
        np.savez_compressed(path, bases=self.bases.detach().cpu().numpy(),
                            weights=self.weights.detach().cpu().numpy(), **arrays)

    @staticmethod
    def load(path) -> "MotionScene":
        data = np.load(path)
        canonical = GaussianScene(**{k: torch.from_numpy(data[f"canonical_{k}"])
                                     for k in ("means", "scales", "quats", "opacities", "sh0", "shN")})
        rot = torch.from_numpy(data["rotations"]) if "rotations" in data else None
        pivot = torch.from_numpy(data["pivot"]) if "pivot" in data else None
        return MotionScene(canonical, torch.from_numpy(data["bases"]), torch.from_numpy(data["weights"]), rot, pivot)


def static_motion(scene: GaussianScene, num_frames: int, num_bases: int = 8, se3: bool = False) -> MotionScene:
    n = len(scene)
    rotations = torch.zeros(num_bases, num_frames, 3) if se3 else None
    return MotionScene(scene, torch.zeros(num_bases, num_frames, 3), torch.zeros(n, num_bases), rotations)

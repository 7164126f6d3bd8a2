"""Motion-aware (4D) scenes: Gaussians that move along a few shared motion bases (Shape-of-Motion / Stereo4D style).

Position of Gaussian n at frame t:  x_n(t) = x_n + sum_b w_nb * m_b(t),   m_b(0) = 0,
with B motion bases m_b(t) (per-frame 3D translations shared by all Gaussians) and per-Gaussian coefficients w_nb
(0 = static). Everything else (shape, colour, opacity) is shared across time. Times between frames interpolate the
bases linearly, so held-out times and slow-motion renders work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from splat4d.types import GaussianScene


@dataclass
class MotionScene:
    canonical: GaussianScene
    """The Gaussians at frame 0."""
    bases: Tensor
    """(B, T, 3) translation of each motion basis at each frame (frame 0 is zero)."""
    weights: Tensor
    """(N, B) coefficient of each basis for each Gaussian."""

    @property
    def num_frames(self) -> int:
        return self.bases.shape[1]

    def basis_at(self, t: float | Tensor) -> Tensor:
        """(B, 3) bases at (fractional) frame ``t`` in [0, T-1], linear between frames."""
        T = self.num_frames
        t = torch.as_tensor(t, dtype=self.bases.dtype).clamp(0, T - 1)
        i0 = torch.clamp(torch.floor(t).long(), max=T - 2) if T > 1 else torch.zeros((), dtype=torch.long)
        if T == 1:
            return self.bases[:, 0]
        a = t - i0
        return (1 - a) * self.bases[:, i0] + a * self.bases[:, i0 + 1]

    def displacement(self, t: float | Tensor) -> Tensor:
        """(N, 3) displacement of every Gaussian at frame ``t``."""
        return self.weights @ self.basis_at(t)

    def at(self, t: float | Tensor) -> GaussianScene:
        c = self.canonical
        return GaussianScene(c.means + self.displacement(t), c.scales, c.quats, c.opacities, c.sh0, c.shN)

    def detach(self) -> "MotionScene":
        return MotionScene(self.canonical.detach(), self.bases.detach(), self.weights.detach())

    def save(self, path) -> None:
        """``.npz`` with the canonical parameters, ``bases`` (B, T, 3) and ``weights`` (N, B)."""
        arrays = {f"canonical_{k}": v.detach().cpu().numpy() for k, v in self.canonical.items()}
        np.savez_compressed(path, bases=self.bases.detach().cpu().numpy(),
                            weights=self.weights.detach().cpu().numpy(), **arrays)

    @staticmethod
    def load(path) -> "MotionScene":
        data = np.load(path)
        canonical = GaussianScene(**{k: torch.from_numpy(data[f"canonical_{k}"])
                                     for k in ("means", "scales", "quats", "opacities", "sh0", "shN")})
        return MotionScene(canonical, torch.from_numpy(data["bases"]), torch.from_numpy(data["weights"]))


def static_motion(scene: GaussianScene, num_frames: int, num_bases: int = 8) -> MotionScene:
    n = len(scene)
    return MotionScene(scene, torch.zeros(num_bases, num_frames, 3), torch.zeros(n, num_bases))

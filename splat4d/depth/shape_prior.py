"""The 'shape-prior' depth backend: splat4d's own network (``splat4d.shape``), trained in this repo on procedural
3D objects, predicts from the working image the front surface, the back surface (where each ray last leaves the
object) and the camera's elevation. Offline, on a CPU, weights shipped in the package (hash-checked)."""

from __future__ import annotations

import numpy as np

from splat4d.types import DepthMap

_LOADED: dict[str, object] = {}


def shape_prior(path: str | None = None):
    """The network at ``path`` (a weights .pt; default: the packaged one), loaded once per process."""
    from splat4d.shape import load_shape_prior

    key = str(path or "packaged")
    if key not in _LOADED:
        _LOADED[key] = load_shape_prior(path)
    return _LOADED[key]


class ShapePriorDepth:
    """``DepthEstimator``: metric camera z of the front and the back of the object for splat4d's input camera
    (vertical FoV ``fov_deg`` over the square working image, object centred at ``distance``), plus the elevation.
    ``ShapePriorUnavailable`` (one line naming ``--depth.backend geometric``) when the weights are missing or
    corrupt."""

    def __init__(self, weights: str | None = None, fov_deg: float = 40.0, distance: float = 2.5):
        self.prior = shape_prior(weights)
        self.fov_deg, self.distance = fov_deg, distance

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> DepthMap:
        fg = mask > 0.5
        estimate = self.prior(image, mask)
        z_front, z_back = estimate.depths(self.distance, self.fov_deg)
        return DepthMap.on_mask(z_front, fg, kind="metric", back=np.maximum(z_back, z_front),
                                elevation_deg=float(estimate.elevation_deg))

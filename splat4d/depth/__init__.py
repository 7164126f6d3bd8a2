"""Stage 3: monocular depth. Backends implement the :class:`DepthEstimator` protocol."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from splat4d.config import DepthConfig
from splat4d.types import DepthMap


class DepthEstimator(Protocol):
    """Estimate depth for one working image. ``image`` (H, W, 3) float in [0, 1], ``mask`` (H, W) in [0, 1]."""

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> DepthMap: ...


@runtime_checkable
class VideoDepthEstimator(DepthEstimator, Protocol):
    """A depth estimator that also takes a whole clip at once and returns temporally consistent depth (one scale and
    shift for the clip), e.g. DepthCrafter. ``frames`` (T, H, W, 3), ``masks`` (T, H, W)."""

    def video(self, frames: np.ndarray, masks: np.ndarray) -> list[DepthMap]: ...


def make_depth_estimator(cfg: DepthConfig, fov_deg: float = 40.0, distance: float = 2.5, device: str = "auto",
                         lefts: np.ndarray | None = None, rights: np.ndarray | None = None,
                         elevation_deg: float | None = None, outside: np.ndarray | None = None) -> DepthEstimator:
    """The configured backend for splat4d's input camera (vertical FoV ``fov_deg``, object at ``distance``).

    Stereo input (``rights``: (T, H, W, 3) right views of a rectified pair or clip; ``lefts`` the raw left views,
    else the images passed in) always gives the 'stereo' estimator: the pair fixes the depth. 'auto' is the shape
    prior here (one image of an object). ``elevation_deg``: the input camera's elevation when the user gave it
    (``--init.elevation-deg``); the shape prior conditions on it. ``outside``: (H, W) where the working images lie
    outside the photo's frame (``splat4d.io.frames.Frames.outside``), which the shape prior (v13) reads."""
    if rights is not None:
        from splat4d.depth.stereo import StereoDepth

        return StereoDepth(rights, num_disparities=cfg.max_disparity, distance=distance, left=lefts)
    if cfg.backend in ("shape-prior", "auto"):  # a run resolves 'auto' by its mode (pipeline.resolve_depth_backend)
        from splat4d.depth.shape_prior import ShapePriorDepth

        return ShapePriorDepth(cfg, fov_deg, distance, elevation_deg, outside)
    if cfg.backend == "geometric":
        from splat4d.depth.geometric import GeometricDepth

        return GeometricDepth(cfg, fov_deg, distance, outside)
    if cfg.backend == "transformers":
        from splat4d.depth.transformers_depth import DEFAULT_MODEL, TransformersDepth

        return TransformersDepth(cfg.model or DEFAULT_MODEL, device=device, download=cfg.download, distance=distance)
    if cfg.backend == "marigold":
        from splat4d.depth.marigold import DEFAULT_MODEL as MARIGOLD, MarigoldDepth

        return MarigoldDepth(cfg.model or MARIGOLD, device=device, download=cfg.download, steps=cfg.steps)
    if cfg.backend == "depthcrafter":
        from splat4d.depth.depthcrafter import DEFAULT_BASE_MODEL, DEFAULT_MODEL as CRAFTER, DepthCrafterDepth

        return DepthCrafterDepth(cfg.model or CRAFTER, cfg.base_model or DEFAULT_BASE_MODEL, device=device,
                                 download=cfg.download, steps=cfg.steps, window=cfg.window, overlap=cfg.overlap)
    if cfg.backend == "stereo":
        raise ValueError("the 'stereo' depth backend needs a right image: splat4d run left.png --right right.png "
                         "(or --side-by-side)")
    raise ValueError(f"unknown depth backend {cfg.backend!r}; the offline backend is 'geometric'")

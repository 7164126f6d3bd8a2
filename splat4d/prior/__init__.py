"""Stage 5: view priors. A :class:`ViewGenerator` hallucinates supervisory views around the object."""

from __future__ import annotations

from typing import Protocol

from splat4d.config import PriorConfig
from splat4d.types import Cameras, GaussianScene, Views


class ViewGenerator(Protocol):
    """Given the input view, the initial scene and target cameras, return supervisory ``Views`` with weights."""

    def __call__(self, input_view: Views, scene: GaussianScene, targets: Cameras) -> Views: ...


def make_view_generator(cfg: PriorConfig, backend: str = "cpu", device: str = "auto", seed: int = 0,
                        fov_deg: float = 40.0, distance: float = 2.5) -> ViewGenerator | None:
    if cfg.backend == "none":
        return None
    if cfg.backend == "warp":
        from splat4d.prior.warp import WarpPrior

        return WarpPrior(cfg, backend)
    if cfg.backend == "sd-inpaint":
        from splat4d.prior.sd_inpaint import SDInpaintPrior

        return SDInpaintPrior(cfg, backend, device, seed)
    if cfg.backend == "zero123pp":
        from splat4d.prior.zero123pp import Zero123PlusPrior

        return Zero123PlusPrior(cfg, backend, device, seed, input_fov_deg=fov_deg, distance=distance)
    raise ValueError(f"unknown view prior {cfg.backend!r}; the offline prior is 'warp'")


def target_cameras(cfg: PriorConfig, input_camera: Cameras, distance: float,
                   elevation_deg: float | None = None) -> Cameras:
    """A ring of ``ring_views`` cameras (azimuth 0, the input, skipped) plus an optional top view, all looking at the
    object centre (world origin) from ``distance`` with the input camera's intrinsics. Elevations are above the
    object's horizon: the input camera looks down on it from ``elevation_deg`` (None: its own horizon)."""
    from splat4d import paths

    n = cfg.ring_views
    az = [360.0 * (i + 1) / (n + 1) for i in range(n)]
    el = [cfg.ring_elevation_deg] * n
    if cfg.top_view:
        az.append(0.0)
        el.append(cfg.top_elevation_deg)
    c2w = paths.looking_at_origin(distance, az, el, up=paths.object_up(elevation_deg)).float()
    K = input_camera.K[:1].expand(len(az), 3, 3).clone()
    return Cameras(c2w, K, input_camera.width, input_camera.height)

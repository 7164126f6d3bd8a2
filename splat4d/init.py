"""Stage 4: Gaussians from one view and its depth, front and back, so the object is closed.

* Input camera: at ``(0, 0, -distance)`` looking along +z (azimuth 0 of every orbit), vertical FoV ``fov_deg``; the
  object's centre plane is the world plane z = 0.
* Front surface: one Gaussian per foreground pixel, unprojected at its depth. Its covariance is the pixel's own
  footprint on the surface, ``s^2 (t_u t_u^T + t_v t_v^T)`` with ``t_u, t_v`` the 3D steps to the neighbouring
  pixels: steep parts (the rim) get Gaussians stretched along the slope, which closes the side walls, and the
  front view is covered exactly once.
* Back surface: the depth estimator's far side when it predicts one (the shape prior: where each pixel's ray last
  leaves the object), else each front point mirrored about the centre plane (same x, y; ``back_thickness`` scales
  the depth offset; points beyond the plane have no mirror), sampled every ``back_stride`` pixels, carrying the
  same pixel's colour, blurred around the object. Boundary
  pixels get a Gaussian stretched along their ray between the two, so front and back meet at the rim.
* Inset: a layer of Gaussians renders about 1.5 px outside its centres wherever it is seen edge-on (each splat's
  thickness plus the renderer's 0.3 px^2 low-pass, summed over the splats along the line of sight), so a sphere
  built on its true surfaces looked 1.5-2 px too large from the side and from behind. A predicted front and back
  are therefore moved into the object along their pixel rays (which leaves the input view as it is) by
  ``surface_inset`` pixel footprints measured along the surface normal, at most a quarter of the local thickness.
* Colours: optionally corrected for a few rounds so that rendering the front view reproduces the input (each
  Gaussian dominates its own pixel, so adding the residual is a Jacobi step of the linear colour solve).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from splat4d.config import InitConfig
from splat4d.paths import object_up
from splat4d.transform import rotmat_to_quat
from splat4d.types import Cameras, DepthMap, GaussianScene, rgb_to_sh0

MAX_STRETCH = 8.0  # longest Gaussian axis, in pixel footprints
WALL_SEGMENT = 8.0  # longest rim-wall Gaussian before the wall is split into beads, in footprints
MAX_WALL_BEADS = 8
# Smallest scale factor of a back Gaussian on the pixel rays at the silhouette (the rule is a third of its distance to
# the background). With the front's 0.4 as the floor, as a mirrored back keeps (it projects inside the rim anyway),
# the shape prior's back showed 1-3 px around the rim in the input view: coffee's initial input view 26.5 dB against
# 27.9 with 0.1, 42.1 against 43.2 dB after the fit; tools/bench_quality.py unchanged (within 0.05 dB per object).
BACK_RIM_MIN_SCALE = 0.1
# The inset (see the module docstring) moves a point along its ray by inset / cos(ray, normal) footprints, the cosine
# floored here (a surface within 6 degrees of grazing moves as one at 6 degrees), and by at most this fraction of the
# front-to-back gap at its pixel (a thin plate keeps half its thickness).
INSET_MIN_COS = 0.1
INSET_MAX_GAP = 0.25
# ``InitConfig.surface_inset``'s default for a predicted back: an exact sphere's outline from the side and from behind
# comes within 0.4 px of the truth (tests/test_shape_backend.py); docs/benchmarks.md, session 15.
PREDICTED_BACK_INSET = 1.5


@dataclass
class InitResult:
    scene: GaussianScene
    camera: Cameras
    """The input camera (1 camera)."""
    depth: Tensor
    """(H, W) front-surface camera z of the foreground (0 elsewhere)."""
    n_front: int
    """The first ``n_front`` Gaussians are the front surface, in row-major foreground-pixel order."""
    elevation_deg: float | None = None
    """The input camera's elevation above the object's horizon (``--init.elevation-deg``, else the depth
    estimator's), None when unknown; the orbit and the prior's views turn about the object's up axis from it."""


def input_camera(width: int, fov_deg: float, distance: float, height: int | None = None) -> Cameras:
    """The input view's camera: at (0, 0, -distance) looking along +z, vertical FoV ``fov_deg``."""
    c2w = torch.eye(4)
    c2w[2, 3] = -distance
    return Cameras.from_fov(c2w, width, height or width, fov_deg)


def align_depth(depth: DepthMap, mask: np.ndarray, focal: float, distance: float) -> np.ndarray:
    """Camera z of the front surface (H, W); 0 off the object.

    'metric' depth is used as it is. 'relative' depth (z up to scale and shift; 'disparity' is negated first) is
    fitted by least squares in scale and shift to the silhouette-inflation height (the same prior as the geometric
    backend, whose output therefore passes unchanged), in pixel units, then converted to world units at
    ``distance``: the object's centre plane is z = distance.
    """
    return apply_depth_alignment(depth, mask, depth_alignment(depth, mask, focal, distance))


def depth_alignment(depth: DepthMap, mask: np.ndarray, focal: float, distance: float) -> tuple[float, float, bool]:
    """(a, b, use_prior): camera z = a * r + b on the object, r the signed relative depth of ``depth`` (or the
    negated silhouette-inflation height when ``use_prior``: the depth was unusable). See :func:`align_depth`.
    Fitting it once on one frame and applying it to every frame keeps a clip's depth consistent."""
    from splat4d.depth.geometric import poisson_height

    d = depth.depth.detach().cpu().numpy().astype(np.float64)
    fg = mask > 0.5
    if depth.kind == "metric":
        if not (d[fg] > 0).all():
            raise ValueError("metric depth must be positive on the whole object")
        return 1.0, 0.0, False
    rel = -d if depth.kind == "disparity" else d
    target = -poisson_height(fg)[fg]  # nearer = more negative, like z
    design = np.stack([rel[fg], np.ones(int(fg.sum()))], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, target, rcond=None)
    if not scale > 0:  # depth anti-correlated with the prior or constant: fall back to the prior
        return distance / focal, distance, True
    return scale * distance / focal, distance + shift * distance / focal, False


def apply_depth_alignment(depth: DepthMap, mask: np.ndarray, alignment: tuple[float, float, bool]) -> np.ndarray:
    """Camera z (H, W) of ``depth`` under an alignment from :func:`depth_alignment`; 0 off the object."""
    from splat4d.depth.geometric import poisson_height

    a, b, use_prior = alignment
    d = depth.depth.detach().cpu().numpy().astype(np.float64)
    fg = mask > 0.5
    if depth.kind == "metric":
        return np.where(fg, d, 0.0)
    rel = -poisson_height(fg) if use_prior else (-d if depth.kind == "disparity" else d)
    return np.where(fg, a * rel + b, 0.0)


def covariance_to_scale_quat(cov: Tensor, min_std: float) -> tuple[Tensor, Tensor]:
    """(N, 3, 3) SPD covariances -> log-scales (N, 3), wxyz quats (N, 4)."""
    evals, evecs = torch.linalg.eigh(cov.double())
    det = torch.linalg.det(evecs)
    evecs[:, :, 2] *= det.sign()[:, None]  # proper rotation
    std = torch.sqrt(evals.clamp_min(min_std**2))
    return torch.log(std).float(), rotmat_to_quat(evecs).float()


def neighbour_steps(pts: np.ndarray, valid: np.ndarray, axis: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The 3D step from each point of ``pts`` (H, W, 3) to its neighbour ``stride`` pixels away along ``axis`` (1:
    columns, 0: rows): the mean of the steps to both sides where both neighbours are on ``valid`` (H, W), the one
    step where one is, 0 where none is; and where there is one (H, W bool)."""
    fwd = np.zeros_like(pts)
    bwd = np.zeros_like(pts)
    ok_f = np.zeros(valid.shape, bool)
    ok_b = np.zeros(valid.shape, bool)
    if axis == 1:
        fwd[:, :-stride] = pts[:, stride:] - pts[:, :-stride]
        ok_f[:, :-stride] = valid[:, stride:] & valid[:, :-stride]
        bwd[:, stride:] = pts[:, stride:] - pts[:, :-stride]
        ok_b[:, stride:] = ok_f[:, :-stride]
    else:
        fwd[:-stride] = pts[stride:] - pts[:-stride]
        ok_f[:-stride] = valid[stride:] & valid[:-stride]
        bwd[stride:] = pts[stride:] - pts[:-stride]
        ok_b[stride:] = ok_f[:-stride]
    has = ok_f | ok_b
    out = np.where((ok_f & ok_b)[..., None], 0.5 * (fwd + bwd), np.where(ok_f[..., None], fwd, bwd))
    return np.where(has[..., None], out, 0.0), has


def surface_gaussians(z: np.ndarray, sample: np.ndarray, camera: Cameras, stride: int,
                      scale_factor: float | np.ndarray, thickness: float,
                      lateral_z: np.ndarray | None = None) -> tuple[Tensor, Tensor, Tensor, np.ndarray]:
    """Gaussians on the surface ``z`` (H, W) seen by ``camera`` (1 camera) at the pixels ``sample`` (bool).
    ``scale_factor`` is a number or an (H, W) map. Points lie on the pixel rays, or, with ``lateral_z``, at the x, y
    the ray has at depth ``lateral_z`` (the back surface mirrors the front point's z and keeps its x, y). Returns
    means, log-scales, quats, and the (N, 2) pixel coordinates (row, col) they came from."""
    h, w = z.shape
    vs, us = np.mgrid[0:h, 0:w]
    zl = z if lateral_z is None else lateral_z
    # Camera space (the steps to the neighbours are taken there): each pixel centre's ray at depth zl, camera z = z.
    pts = camera.pixels_to_camera(Cameras.pixel_centers(vs, us).reshape(-1, 2),
                                  torch.from_numpy(zl).reshape(-1).double())[0].numpy().reshape(h, w, 3)
    pts[..., 2] = z
    pixel_size = camera.pixel_footprint(torch.from_numpy(z).reshape(-1).double())[0].numpy().reshape(h, w)
    valid = z > 0
    rows, cols = np.nonzero(sample)

    def step(axis: int) -> np.ndarray:
        out, has = neighbour_steps(pts, valid, axis, stride)
        # No neighbour on either side: a flat step of one footprint.
        flat = np.zeros_like(pts)
        flat[..., 0 if axis == 1 else 1] = stride * pixel_size  # along camera x for u steps, y for v steps
        return np.where(has[..., None], out, flat)

    tu = step(1)[rows, cols]
    tv = step(0)[rows, cols]
    footprint = stride * pixel_size[rows, cols]
    # Limit stretch across depth discontinuities.
    for t in (tu, tv):
        length = np.linalg.norm(t, axis=1, keepdims=True)
        t *= np.minimum(1.0, MAX_STRETCH * footprint[:, None] / np.maximum(length, 1e-12))
    normal = np.cross(tu, tv)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    tu_t, tv_t, n_t = (torch.from_numpy(a) for a in (tu, tv, normal))
    fp = torch.from_numpy(footprint)
    sf = torch.from_numpy(np.broadcast_to(np.asarray(scale_factor, dtype=np.float64), z.shape)[rows, cols].copy())
    cov = (sf**2)[:, None, None] * (tu_t[:, :, None] * tu_t[:, None] + tv_t[:, :, None] * tv_t[:, None])
    cov = cov + (thickness * fp)[:, None, None] ** 2 * n_t[:, :, None] * n_t[:, None]
    R = camera.c2w[0, :3, :3].double()
    cov_w = R @ cov @ R.T
    log_scales, quats = covariance_to_scale_quat(cov_w, min_std=1e-4 * float(fp.mean()))
    means = camera.camera_to_world(torch.from_numpy(pts[rows, cols]))[0]
    return means.float(), log_scales, quats, np.stack([rows, cols], 1)


def rim_wall_gaussians(z_front: np.ndarray, z_back: np.ndarray, fg: np.ndarray, camera: Cameras,
                       scale_factor: float) -> tuple[Tensor, Tensor, Tensor, np.ndarray]:
    """Close the side wall at the silhouette: each boundary pixel's front and back samples are ``gap`` apart in
    depth (a few pixels for inflation, whose height rises like sqrt near the rim; the whole depth for a predicted
    back), so the gap is filled with Gaussians stretched along the camera z axis (at the front point's x, y, like the
    mirrored back): one for a gap of up to ``WALL_SEGMENT`` footprints, else up to ``MAX_WALL_BEADS`` shorter ones
    in a row -- one long Gaussian's tails, added up along a side view's line of sight, would thicken the silhouette
    by a third of the gap."""
    from scipy import ndimage

    boundary = fg & ~ndimage.binary_erosion(fg)
    rows, cols = np.nonzero(boundary)
    zf, zb = z_front[rows, cols], z_back[rows, cols]
    footprint = camera.pixel_footprint(torch.from_numpy(zf))[0].numpy()
    beads = np.clip(np.ceil((zb - zf) / (WALL_SEGMENT * footprint)), 1, MAX_WALL_BEADS).astype(np.int64)
    rows, cols, zf, zb, footprint = (np.repeat(a, beads) for a in (rows, cols, zf, zb, footprint))
    index = np.arange(len(rows)) - np.repeat(np.cumsum(beads) - beads, beads)  # bead k of its pixel's n
    n = np.repeat(beads, beads)
    segment = (zb - zf) / n
    zm = zf + (index + 0.5) * segment
    centres = camera.pixels_to_camera(Cameras.pixel_centers(rows, cols), torch.from_numpy(zf))[0]  # camera space
    centres[:, 2] = torch.from_numpy(zm)  # along the gap, at the front point's x, y
    direction = np.tile(np.array([0.0, 0.0, 1.0]), (len(zm), 1))
    lateral = (scale_factor * footprint) ** 2
    along = np.maximum(0.5 * segment / 1.7, scale_factor * footprint) ** 2
    d = torch.from_numpy(direction)
    eye = torch.eye(3, dtype=torch.float64)
    cov = torch.from_numpy(lateral)[:, None, None] * (eye - d[:, :, None] * d[:, None]) + \
        torch.from_numpy(along)[:, None, None] * d[:, :, None] * d[:, None]
    R = camera.c2w[0, :3, :3].double()
    log_scales, quats = covariance_to_scale_quat(R @ cov @ R.T, min_std=1e-4 * float(footprint.mean()))
    means = camera.camera_to_world(centres)[0]
    return means.float(), log_scales, quats, np.stack([rows, cols], 1)


def back_colors(image: np.ndarray, fg: np.ndarray, sigma_x: float, sigma_y: float) -> np.ndarray:
    """The colours the back surface copies: ``image`` (H, W, 3) blurred over the object ``fg`` (H, W bool) only,
    horizontally by ``sigma_x`` and vertically by ``sigma_y`` pixels (normalised by the blurred mask, so the white
    background does not bleed in; 0 = no blur along that axis). Pixels off the object keep the image."""
    if sigma_x <= 0 and sigma_y <= 0:
        return image
    import cv2

    w_fg = fg.astype(np.float32)
    kw = {"sigmaX": max(sigma_x, 1e-3), "sigmaY": max(sigma_y, 1e-3)}
    num = cv2.GaussianBlur(image.astype(np.float32) * w_fg[..., None], (0, 0), **kw)
    den = cv2.GaussianBlur(w_fg, (0, 0), **kw)[..., None]
    return np.where(fg[..., None] & (den > 1e-3), num / np.maximum(den, 1e-3), image)


def init_scene(image: np.ndarray, mask: np.ndarray, depth: DepthMap, cfg: InitConfig,
               rasterize_backend: str = "cpu") -> InitResult:
    """Build the initial scene (see module docstring). ``image`` (H, W, 3) over white, ``mask`` (H, W)."""
    height, width = image.shape[:2]
    fov = depth.fov_deg if (cfg.use_depth_fov and depth.fov_deg) else cfg.fov_deg
    camera = input_camera(width, fov, cfg.distance, height)
    fg = mask > 0.5
    if not fg.any():
        raise ValueError("empty mask: nothing to initialise")
    # Anti-aliased rim pixels (0 < mask <= 0.5) get front Gaussians too, with opacity ~ mask.
    partial = (mask > 0.02) & ~fg
    surfaces = surface_depths(depth, mask, partial, camera, cfg)
    thin = 0.3  # normal-direction std as a fraction of the footprint: surfels, not blobs
    front = surface_gaussians(surfaces.front_all, fg | partial, camera, 1, cfg.scale_factor, thin)
    elevation = cfg.elevation_deg if cfg.elevation_deg is not None else depth.elevation_deg
    back = closing_gaussians(surfaces, fg, camera, cfg, thin, elevation)
    scene = initial_scene(image, mask, front, back, cfg)
    px_f, n_f = front[3], len(front[0])
    scene = match_coverage(scene, camera, mask, px_f, rounds=3, backend=rasterize_backend, max_opacity=cfg.opacity)
    if cfg.solve_colors > 0:
        free = torch.zeros(len(scene), dtype=torch.bool)
        free[:n_f] = torch.from_numpy(solvable(fg, partial, cfg.solve_rim)[px_f[:, 0], px_f[:, 1]])
        scene = solve_colors(scene, camera, image, cfg.solve_colors, rasterize_backend, free=free)
    return InitResult(scene.validate(), camera, torch.from_numpy(surfaces.front.astype(np.float32)), n_f, elevation)


@dataclass
class SurfaceDepths:
    """Camera z maps (H, W) of the object's two surfaces, 0 off the object."""

    front: np.ndarray
    front_all: np.ndarray
    """``front`` extended to the anti-aliased rim pixels."""
    back: np.ndarray
    back_lateral: np.ndarray | None
    """Depth whose pixel-ray x, y the back points keep (the mirrored front's), or None: on their own rays."""


def surface_depths(depth: DepthMap, mask: np.ndarray, partial: np.ndarray, camera: Cameras,
                   cfg: InitConfig) -> SurfaceDepths:
    """The front from ``depth`` (aligned to the input camera) and the back: the estimator's far side when it has one,
    else the front mirrored about the centre plane (a symmetry prior)."""
    fg = mask > 0.5
    z_front = align_depth(depth, mask, float(camera.K[0, 0, 0]), cfg.distance)
    inset = cfg.surface_inset
    if inset is None:
        inset = 0.0 if depth.back is None else PREDICTED_BACK_INSET
    if depth.back is None:
        # Only parts in front of the plane have a mirror image behind them: the mirror of a point beyond it would
        # land in front of it (beyond twice the distance: at or behind the camera), so those stay one surface.
        z_back = np.where(fg, z_front + 2.0 * np.maximum(cfg.distance - z_front, 0.0) * cfg.back_thickness, 0.0)
        if inset > 0:
            z_front, z_back = inset_surfaces(z_front, z_back, fg, camera, inset)
        # Rim pixels on the centre plane, where inflation puts the silhouette; the mirror keeps the front's x, y.
        return SurfaceDepths(z_front, np.where(partial, cfg.distance, z_front), z_back, z_front)
    from scipy import ndimage

    back = depth.back.detach().cpu().numpy().astype(np.float64)  # where each pixel's ray last leaves the object
    z_back = np.where(fg, z_front + np.maximum(back - z_front, 0.0) * cfg.back_thickness, 0.0)
    if inset > 0:
        z_front, z_back = inset_surfaces(z_front, z_back, fg, camera, inset)
    # Rim pixels at the nearest object pixel's front depth (a step in depth there would stretch them along z).
    nearest = ndimage.distance_transform_edt(~fg, return_distances=False, return_indices=True)
    lateral = z_front if cfg.back_placement == "mirror" else None
    return SurfaceDepths(z_front, np.where(partial, z_front[nearest[0], nearest[1]], z_front), z_back, lateral)


def pixel_rays(camera: Cameras) -> np.ndarray:
    """(H, W, 3) camera-space rays through the pixel centres of ``camera`` (1 camera), scaled to camera z = 1."""
    h, w = camera.height, camera.width
    vs, us = np.mgrid[0:h, 0:w]
    ones = torch.ones(h * w, dtype=torch.float64)
    return camera.pixels_to_camera(Cameras.pixel_centers(vs, us).reshape(-1, 2), ones)[0].numpy().reshape(h, w, 3)


def ray_normal_cosine(z: np.ndarray, valid: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """|cos| of the angle between each pixel's ray (``rays`` (H, W, 3), :func:`pixel_rays`) and the normal of the
    surface ``z`` (H, W camera z), from the 3D steps to the neighbouring pixels (:func:`neighbour_steps` on
    ``valid``; 1 where a pixel has no neighbour along an axis). A step in depth counts as a steep surface there, as
    it does for the Gaussians' own steps."""
    pts = rays * z[..., None]
    (tu, has_u), (tv, has_v) = neighbour_steps(pts, valid, 1), neighbour_steps(pts, valid, 0)
    normal = np.cross(tu, tv)
    norm = np.linalg.norm(normal, axis=-1) * np.linalg.norm(rays, axis=-1)
    cos = np.abs((normal * rays).sum(-1)) / np.maximum(norm, 1e-300)
    return np.where(has_u & has_v & (norm > 0), cos, 1.0)


def inset_surfaces(z_front: np.ndarray, z_back: np.ndarray, fg: np.ndarray, camera: Cameras,
                   inset: float) -> tuple[np.ndarray, np.ndarray]:
    """The front moved back and the back moved forward along the pixel rays of ``camera`` (camera z maps, 0 off
    ``fg``), each by ``inset`` footprints measured along its normal: ``inset / cos`` along the ray (``cos`` floored at
    ``INSET_MIN_COS``), at most ``INSET_MAX_GAP`` of the pixel's front-to-back gap."""
    gap = np.maximum(z_back - z_front, 0.0)
    rays = pixel_rays(camera)
    ray_length = np.linalg.norm(rays, axis=-1)  # per unit of camera z
    focal = float(camera.K[0, 0, 0])
    moved = []
    for z in (z_front, z_back):
        cos = np.maximum(ray_normal_cosine(z, fg, rays), INSET_MIN_COS)
        moved.append(np.minimum(inset * z / focal / (cos * ray_length), INSET_MAX_GAP * gap))  # z / focal: footprint
    return np.where(fg, z_front + moved[0], 0.0), np.where(fg, z_back - moved[1], 0.0)


def closing_gaussians(surfaces: SurfaceDepths, fg: np.ndarray, camera: Cameras, cfg: InitConfig,
                      thin: float, elevation_deg: float | None = None) -> tuple:
    """The back surface (every ``back_stride`` pixels) and the rim walls: (means, log-scales, quats, back pixels,
    wall pixels), the pixels being those whose colours they copy (a back on the pixel rays: the mirrored front
    point's, :func:`mirrored_pixels`, for the object seen from ``elevation_deg``, unless
    ``cfg.back_color_source`` is 'pixel'); empty when ``cfg.closed`` is off."""
    if not cfg.closed:
        none = np.zeros((0, 2), np.int64)
        return torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, 4), none, none
    from scipy import ndimage

    stride = max(1, cfg.back_stride)
    back_sample = np.zeros_like(fg)
    back_sample[::stride, ::stride] = fg[::stride, ::stride]
    # Near the silhouette the larger back Gaussians would show around the rim in the input view: shrink them to
    # about a third of their distance to the background.
    edge_distance = ndimage.distance_transform_edt(fg)
    floor = BACK_RIM_MIN_SCALE if surfaces.back_lateral is None else cfg.scale_factor
    back_sf = np.clip(edge_distance / (3.0 * stride), floor, cfg.back_scale_factor)
    m_b, s_b, q_b, px_b = surface_gaussians(surfaces.back, back_sample, camera, stride, back_sf, thin,
                                            lateral_z=surfaces.back_lateral)
    if surfaces.back_lateral is None and cfg.back_color_source == "mirror":
        px_b = mirrored_pixels(m_b, surfaces.front, fg, camera, px_b, elevation_deg)
    m_w, s_w, q_w, px_w = rim_wall_gaussians(surfaces.front, surfaces.back, fg, camera, cfg.scale_factor)
    return torch.cat([m_b, m_w]), torch.cat([s_b, s_w]), torch.cat([q_b, q_w]), px_b, px_w


def mirrored_pixels(means: Tensor, z_front: np.ndarray, fg: np.ndarray, camera: Cameras, pixels: np.ndarray,
                    elevation_deg: float | None = None, steps: int = 3) -> np.ndarray:
    """The input-view pixels (N, 2) (row, col) of the front points that mirror the back points ``means`` (N, 3,
    world) across the object's upright plane facing the camera (the line through a back point along the object's
    horizontal forward direction, which the input camera sees from ``elevation_deg`` above: level, the camera's z),
    where a texture symmetric about that plane puts their colour: each ray meets the back farther out than the front
    (perspective), so its own pixel's colour would stretch the texture over the back. Found by ``steps``
    fixed-point steps on the front depth ``z_front`` (H, W); a point whose step leaves the object ``fg`` keeps its
    last pixel on it (at first its own, ``pixels``)."""
    h, w = fg.shape
    cam = camera.world_to_camera(means.double())[0]
    forward = torch.linalg.cross(torch.tensor(object_up(elevation_deg), dtype=cam.dtype),
                                 torch.tensor([1.0, 0.0, 0.0], dtype=cam.dtype))  # level: the camera's z
    rows, cols = pixels[:, 0].copy(), pixels[:, 1].copy()
    for _ in range(steps):
        along = (cam[:, 2] - torch.from_numpy(z_front[rows, cols])) / forward[2]  # back to the front depth there
        uv = torch.floor(camera.camera_to_pixels(cam - along[:, None] * forward)[0][0]).long().numpy()
        c, r = uv[:, 0], uv[:, 1]
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        ok = inside.copy()
        ok[inside] = fg[r[inside], c[inside]]
        rows, cols = np.where(ok, r, rows), np.where(ok, c, cols)
    return np.stack([rows, cols], 1)


def initial_scene(image: np.ndarray, mask: np.ndarray, front: tuple, back: tuple, cfg: InitConfig) -> GaussianScene:
    """Front Gaussians with their pixel's colour (composited over white: undone for partial cover) and an opacity
    following the cover; back and walls with the blurred back colours, at ``cfg.opacity``."""
    m_f, s_f, q_f, px_f = front
    m_b, s_b, q_b, px_b, px_w = back
    height = image.shape[0]
    cover_f = np.clip(mask[px_f[:, 0], px_f[:, 1]], 0.02, 1.0)[:, None]
    colors_f = torch.from_numpy(np.clip((image[px_f[:, 0], px_f[:, 1]] - (1 - cover_f)) / cover_f, 0, 1)).float()
    back_image = back_colors(image, mask > 0.5, cfg.back_blur_horizontal * height, cfg.back_blur * height)
    colors_b = torch.from_numpy(back_image[np.concatenate([px_b[:, 0], px_w[:, 0]]),
                                           np.concatenate([px_b[:, 1], px_w[:, 1]])]).float()
    opac_f = torch.from_numpy(cfg.opacity * cover_f[:, 0]).float()
    opac_b = torch.full((len(m_b),), cfg.opacity)
    n = len(m_f) + len(m_b)
    return GaussianScene(
        means=torch.cat([m_f, m_b]),
        scales=torch.cat([s_f, s_b]),
        quats=torch.cat([q_f, q_b]),
        opacities=torch.logit(torch.cat([opac_f, opac_b]).clamp(1e-4, 1 - 1e-4)),
        sh0=rgb_to_sh0(torch.cat([colors_f, colors_b]))[:, None, :],
        shN=torch.zeros(n, (cfg.sh_degree + 1) ** 2 - 1, 3),
    )


def solvable(fg: np.ndarray, partial: np.ndarray, solve_rim: int) -> np.ndarray:
    """Pixels whose front Gaussians the colour solve may change: none within ``solve_rim`` pixels of the silhouette.
    The surface is seen edge-on there (as are the back and the rim walls), and solving those Gaussians sharpened the
    anti-aliased rim by giving them near-white colours, which showed as streaks in side views. The frame's edge is
    no silhouette: a scene filling the frame is solved up to it."""
    from scipy import ndimage

    return ndimage.binary_erosion(fg, iterations=solve_rim, border_value=1) if solve_rim > 0 else fg | partial


@torch.no_grad()
def match_coverage(scene: GaussianScene, camera: Cameras, mask: np.ndarray, pixels: np.ndarray, rounds: int,
                   backend: str, max_opacity: float) -> GaussianScene:
    """Scale the front Gaussians' opacities so the rendered alpha follows the (soft) mask at their pixels.

    Neighbouring Gaussians overlap, so a rim pixel given opacity = mask would render too opaque and the silhouette
    would grow by about a pixel. Multiplicative fixed-point rounds: o <- o * mask / alpha at each Gaussian's pixel.
    """
    from splat4d.render import rasterize

    rows, cols = torch.from_numpy(pixels[:, 0]), torch.from_numpy(pixels[:, 1])
    target = torch.from_numpy(mask).float()[rows, cols]
    n_front = len(pixels)
    opacities = torch.sigmoid(scene.opacities).clone()
    for _ in range(rounds):
        alpha = rasterize(scene, camera, backend=backend, check_finite=False).alpha[0, ..., 0][rows, cols]
        ratio = target / alpha.clamp_min(1e-3)
        opacities[:n_front] = (opacities[:n_front] * ratio).clamp(1e-3, max_opacity)
        scene = GaussianScene(scene.means, scene.scales, scene.quats, torch.logit(opacities), scene.sh0, scene.shN)
    return scene


def solve_colors(scene: GaussianScene, camera: Cameras, image: np.ndarray, iterations: int,
                 backend: str, free: Tensor | None = None) -> GaussianScene:
    """Least-squares colours so the input view re-renders ``image`` (geometry fixed).

    The render is linear in the colours, ``render(c) = A c + (1 - alpha) * background``: projected CGLS (conjugate
    gradients on the normal equations, restarted whenever a step is clipped to [0, 1]) with ``A`` one forward pass
    and ``A^T`` its autograd backward. Gaussians the input view does not see get no gradient and keep their colour;
    so do those outside ``free`` (bool (N,), default all free): the solve runs on the free colours only.
    """
    from splat4d.render import rasterize

    target = torch.from_numpy(image).float()
    geometry = scene.detach()

    def render(colors: Tensor, background: float) -> Tensor:
        out = rasterize(geometry, camera, backend=backend, background=torch.full((3,), background), colors=colors,
                        check_finite=False)
        return out.rgb[0]

    with torch.no_grad():
        b = target - render(torch.zeros(len(scene), 3), 1.0)

    def A(x: Tensor) -> Tensor:
        with torch.no_grad():
            return render(x, 0.0)

    keep = None if free is None else (~free)[:, None]

    def AT(r: Tensor) -> Tensor:
        x = torch.zeros(len(scene), 3, requires_grad=True)
        (render(x, 0.0) * r).sum().backward()
        return x.grad if keep is None else x.grad.masked_fill(keep, 0.0)

    x = scene.rgb_dc().clone()
    r = b - A(x)
    s = AT(r)
    p = s.clone()
    gamma = float((s * s).sum())
    for _ in range(iterations):
        q = A(p)
        qq = float((q * q).sum())
        if qq == 0 or gamma == 0:
            break
        alpha = gamma / qq
        step = x + alpha * p
        x_new = step.clamp(0.0, 1.0)  # stay in the colour range: projected steps
        clipped = not torch.equal(x_new, step)
        x = x_new
        r = b - A(x) if clipped else r - alpha * q
        s = AT(r)
        gamma_new = float((s * s).sum())
        p = s if clipped else s + (gamma_new / gamma) * p  # restart the conjugate directions after a projection
        gamma = gamma_new
    return GaussianScene(scene.means, scene.scales, scene.quats, scene.opacities, rgb_to_sh0(x)[:, None, :],
                         scene.shN)

"""The joint warp (Toon3D steps 3-5): each image becomes a triangle mesh whose vertices are its labelled points (plus
points on its border), the vertices move in 2D and in depth until the views agree, and images, depths and masks
follow the mesh piecewise-affinely.

Unknowns: per vertex a 2D offset (border vertices stay put unless ``move_border``) and a depth offset, and every
image's camera and depth scale (``splat4d.toon.align.ViewParams``), jointly. Loss:

    point_weight * mean |P_ik - P_jk|^2 over the warped points (the alignment's term) + the alignment's regularisers
    + arap_weight * mean_t |warped_t - fit_t|^2     fit_t: the rigid (Kabsch) placement of rest triangle t onto its
                                                     warped self, held fixed (as-rigid-as-possible, Sorkine 2007)
    + area_weight * mean_t relu(min_area_fraction - A_t / A0_t)    (no flipped or collapsed triangles)
    + depth_offset_weight * mean |depth offset| + 1000 * mean relu(min_depth - depth)^2

2D coordinates inside the loss are pixels divided by half the longer image side, so the ARAP term is isotropic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from splat4d.toon.align import AlignConfig, ViewParams, lift, minimise, normalised, pair_loss, regularisers


@dataclass
class WarpConfig:
    """As-rigid-as-possible mesh warps of the views (Toon3D's second step)."""

    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    """'lbfgs' or 'adam' (Toon3D's: lr 0.01, 1000 steps)."""
    steps: int = 300
    """L-BFGS iterations or Adam steps; 0 leaves the images as they are (coarse alignment only)."""
    lr: float = 0.01
    """Adam learning rate."""
    arap_weight: float = 10.0
    """Weight of the as-rigid-as-possible term (higher: stiffer drawings, more residual left)."""
    area_weight: float = 100.0
    """Weight of the term against flipped and collapsed triangles."""
    min_area_fraction: float = 0.1
    """A triangle's area may shrink to this fraction of its rest area before the area term acts."""
    depth_offset_weight: float = 1.0
    """Weight of the mean absolute depth offset."""
    min_depth: float = 0.1
    """Warped raw depths are kept above this (Toon3D's clamp), by a penalty."""
    border_points: int = 4
    """Mesh vertices along each image side (corners included) besides the labelled points."""
    move_border: bool = False
    """Let the border vertices move too (the warped image may then leave parts of the frame empty)."""


@dataclass
class ImageMesh:
    """One image's triangle mesh over its points."""

    rest: np.ndarray
    """(M, 2) vertex positions in pixels before the warp."""
    point: np.ndarray
    """(M,) index of the correspondence each vertex is, -1 for border vertices."""
    triangles: np.ndarray
    """(T, 3) vertex indices, counter-clockwise on screen (positive area with y down)."""
    vertex_of: np.ndarray
    """(P,) the vertex each correspondence sits on (points marked at one spot share one), -1 where unmarked."""


@dataclass
class WarpResult:
    params: ViewParams
    """Cameras and depth scales after the joint optimisation."""
    meshes: list[ImageMesh]
    warped: list[np.ndarray]
    """Per image (M, 2) vertex positions after the warp, in pixels."""
    depth_offsets: list[np.ndarray]
    """Per image (M,) raw-depth offsets of the vertices."""
    xy: Tensor
    """(V, N, 2) the correspondences after the warp (pixels)."""
    z: Tensor
    """(V, N) their raw depths after the warp."""
    history: list[float] = field(default_factory=list)


def signed_areas(tri: np.ndarray | Tensor):
    """Signed areas of triangles (..., 3, 2): positive when counter-clockwise on screen (x right, y down)."""
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    return 0.5 * ((b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0]))


def border_vertices(width: int, height: int, per_side: int) -> np.ndarray:
    """(4 (per_side - 1), 2) points around the image frame, corners included."""
    t = np.linspace(0.0, 1.0, max(per_side, 2))[:-1]
    W, H = float(width), float(height)
    sides = [np.stack([t * W, np.zeros_like(t)], 1), np.stack([np.full_like(t, W), t * H], 1),
             np.stack([W - t * W, np.full_like(t, H)], 1), np.stack([np.zeros_like(t), H - t * H], 1)]
    return np.concatenate(sides)


def build_mesh(xy: np.ndarray, valid: np.ndarray, width: int, height: int, border_per_side: int) -> ImageMesh:
    """Delaunay triangulation (scipy) of an image's marked points and its border points; coincident points (closer
    than 1e-6 px) are merged into the first, whose vertex both then share (``vertex_of``)."""
    from scipy.spatial import Delaunay

    idx = np.nonzero(valid)[0]
    pts, point = [], []
    vertex_of = -np.ones(len(valid), np.int64)
    for j in idx:
        same = [k for k, p in enumerate(pts) if np.abs(xy[j] - p).max() <= 1e-6]
        if same:
            vertex_of[j] = same[0]
        else:
            vertex_of[j] = len(pts)
            pts.append(xy[j])
            point.append(j)
    border = border_vertices(width, height, border_per_side)
    border = [b for b in border if all(np.abs(b - p).max() > 1e-6 for p in pts)]
    rest = np.concatenate([np.asarray(pts, np.float64).reshape(-1, 2), np.asarray(border, np.float64).reshape(-1, 2)])
    point = np.concatenate([np.asarray(point, int), -np.ones(len(border), int)])
    tri = Delaunay(rest).simplices.astype(np.int64)
    areas = signed_areas(rest[tri])
    tri[areas < 0] = tri[areas < 0][:, [0, 2, 1]]
    tri = tri[np.abs(areas) > 1e-9]
    return ImageMesh(rest, point, tri, vertex_of)


def bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``image`` (H, W) or (H, W, C) at continuous pixel coordinates ``xy`` (..., 2) (centres at +0.5), edges
    clamped."""
    H, W = image.shape[:2]
    x = np.clip(xy[..., 0] - 0.5, 0, W - 1)
    y = np.clip(xy[..., 1] - 0.5, 0, H - 1)
    x0, y0 = np.minimum(np.floor(x).astype(int), W - 2 if W > 1 else 0), np.minimum(np.floor(y).astype(int),
                                                                                    H - 2 if H > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    fx, fy = x - x0, y - y0
    if image.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    return (image[y0, x0] * (1 - fx) * (1 - fy) + image[y0, x1] * fx * (1 - fy)
            + image[y1, x0] * (1 - fx) * fy + image[y1, x1] * fx * fy)


def _kabsch_2d(rest: Tensor, warped: Tensor) -> Tensor:
    """(T, 3, 2) the rotation of each rest triangle (T, 3, 2) about its centroid that best fits its warped self,
    placed at the warped centroid (closed form of the 2D Kabsch/SVD solution)."""
    a = rest - rest.mean(1, keepdim=True)
    cb = warped.mean(1, keepdim=True)
    b = warped - cb
    angle = torch.atan2((a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]).sum(1),
                        (a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1]).sum(1))
    c, s = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
    return torch.stack([c * a[..., 0] - s * a[..., 1], s * a[..., 0] + c * a[..., 1]], -1) + cb


def arap_loss(rest: Tensor, warped: Tensor) -> Tensor:
    """Mean squared distance of warped triangles (T, 3, 2) from their rigid fits (held fixed)."""
    with torch.no_grad():
        fit = _kabsch_2d(rest, warped)
    return ((warped - fit) ** 2).sum(-1).mean()


def optimise_warp(params: ViewParams, xy: Tensor, z_image: list[np.ndarray], valid: Tensor, width: int, height: int,
                  align_cfg: AlignConfig, cfg: WarpConfig, aspect: Tensor | None = None) -> WarpResult:
    """Warp every image's mesh (and refine cameras and depth scales) so that the views agree. ``xy`` (V, N, 2)
    correspondences in pixels, ``valid`` (V, N); ``z_image`` per image its raw depth map (H, W), sampled at the
    vertices."""
    V = valid.shape[0]
    aspect = torch.full((V,), width / height, dtype=torch.float64) if aspect is None else aspect.double()
    meshes = [build_mesh(xy[i].numpy(), valid[i].numpy(), width, height, cfg.border_points) for i in range(V)]
    joint = JointMesh.of(meshes, z_image, valid, width, height, cfg.move_border)
    unknowns = WarpUnknowns.start(joint, params, align_cfg)

    def loss_fn() -> Tensor:
        return warp_loss(joint, unknowns, valid, aspect, width, height, align_cfg, cfg)

    history = minimise(loss_fn, unknowns.trainable(), cfg.optimizer, cfg.steps, cfg.lr)
    if history and not np.isfinite(history[-1]):
        raise RuntimeError("the warp optimisation diverged (NaN/Inf loss); try a lower --warp.lr or --warp.optimizer "
                           "adam")
    return warp_result(joint, unknowns, meshes, history)


@dataclass
class JointMesh:
    """All images' mesh vertices in one array (image after image), with triangles in global vertex indices. 2D
    positions are in units of ``unit`` pixels (half the longer image side), so the ARAP term is isotropic."""

    starts: np.ndarray
    """(V + 1,) the first global vertex of every image, then the vertex count."""
    rest: Tensor
    """(M, 2) rest positions (units)."""
    rest_z: Tensor
    """(M,) raw depths at the rest positions."""
    triangles: Tensor
    """(T, 3) global vertex indices."""
    rest_tri: Tensor
    """(T, 3, 2) the rest triangles."""
    rest_area: Tensor
    """(T,) their signed areas."""
    movable: Tensor
    """(M,) bool: the vertex may move in 2D (a point's vertex; border vertices only with ``move_border``)."""
    unit: float
    """Pixels per unit."""
    marked: tuple[Tensor, Tensor]
    """(image, point) indices of every marked correspondence."""
    vertex: Tensor
    """The global vertex each marked correspondence reads."""
    grid_shape: tuple[int, int]
    """(V, N): images and correspondences."""

    @staticmethod
    def of(meshes: list[ImageMesh], z_image: list[np.ndarray], valid: Tensor, width: int, height: int,
           move_border: bool) -> "JointMesh":
        starts = np.cumsum([0] + [len(m.rest) for m in meshes])
        point_of = torch.from_numpy(np.concatenate([m.point for m in meshes]))
        rest_px = torch.from_numpy(np.concatenate([m.rest for m in meshes]))
        rest_z = torch.from_numpy(np.concatenate([bilinear(z_image[i], m.rest)
                                                  for i, m in enumerate(meshes)])).double()
        triangles = torch.from_numpy(np.concatenate([m.triangles + s for m, s in zip(meshes, starts)]))
        unit = max(width, height) / 2
        rest = rest_px / unit
        rest_tri = rest[triangles]
        pi, pj = torch.nonzero(valid, as_tuple=True)
        vertex = torch.from_numpy(np.stack([np.where(m.vertex_of >= 0, m.vertex_of + s, -1)
                                            for m, s in zip(meshes, starts[:-1])]))[pi, pj]
        return JointMesh(starts, rest, rest_z, triangles, rest_tri, signed_areas(rest_tri),
                         (point_of >= 0) | move_border, unit, (pi, pj), vertex, tuple(valid.shape))

    def positions(self, offsets: Tensor, depth_offsets: Tensor) -> tuple[Tensor, Tensor]:
        """(M, 2) warped positions (units) and (M,) warped raw depths."""
        return self.rest + offsets * self.movable[:, None], self.rest_z + depth_offsets

    def grids(self, pos: Tensor, depth: Tensor) -> tuple[Tensor, Tensor]:
        """(V, N, 2) warped correspondences in pixels and (V, N) their raw depths (0 where unmarked)."""
        V, N = self.grid_shape
        xy_w = torch.zeros(V, N, 2, dtype=torch.float64).index_put(self.marked, pos[self.vertex] * self.unit)
        z_w = torch.zeros(V, N, dtype=torch.float64).index_put(self.marked, depth[self.vertex])
        return xy_w, z_w

    def per_image(self, values: np.ndarray) -> list[np.ndarray]:
        """Per-vertex ``values`` split into one array per image."""
        return [values[a:b] for a, b in zip(self.starts[:-1], self.starts[1:])]


@dataclass
class WarpUnknowns:
    """What the joint warp optimises: vertex offsets (2D, in units, and raw depth) and the views' parameters."""

    offsets: Tensor
    depth_offsets: Tensor
    params: ViewParams

    @staticmethod
    def start(joint: JointMesh, params: ViewParams, align_cfg: AlignConfig) -> "WarpUnknowns":
        """Zero offsets and ``params`` (focal lengths frozen unless ``align_cfg.optimize_focal``)."""
        offsets = torch.zeros_like(joint.rest, requires_grad=True)
        depth_offsets = torch.zeros_like(joint.rest_z, requires_grad=True)
        params = params.detach().requires_grad_()
        if not align_cfg.optimize_focal:
            params.fx.requires_grad_(False)
            params.fy.requires_grad_(False)
        return WarpUnknowns(offsets, depth_offsets, params)

    def trainable(self) -> list[Tensor]:
        return [self.offsets, self.depth_offsets] + [t for t in self.params.tensors() if t.requires_grad]


def warp_loss(joint: JointMesh, unknowns: WarpUnknowns, valid: Tensor, aspect: Tensor, width: int, height: int,
              align_cfg: AlignConfig, cfg: WarpConfig) -> Tensor:
    """The joint warp's loss (see the module docstring)."""
    pos, depth = joint.positions(unknowns.offsets, unknowns.depth_offsets)
    xy_w, z_w = joint.grids(pos, depth)
    points = lift(unknowns.params, normalised(xy_w, width, height), z_w)
    tri = pos[joint.triangles]
    return (align_cfg.point_weight * pair_loss(points, valid) + regularisers(unknowns.params, aspect, align_cfg)
            + cfg.arap_weight * arap_loss(joint.rest_tri, tri)
            + cfg.area_weight * torch.relu(cfg.min_area_fraction - signed_areas(tri) / joint.rest_area).mean()
            + cfg.depth_offset_weight * unknowns.depth_offsets.abs().mean()
            + 1000.0 * torch.relu(cfg.min_depth - depth).pow(2).mean())


def warp_result(joint: JointMesh, unknowns: WarpUnknowns, meshes: list[ImageMesh],
                history: list[float]) -> WarpResult:
    """The optimised warp per image, in pixels."""
    with torch.no_grad():
        pos, depth = joint.positions(unknowns.offsets, unknowns.depth_offsets)
        xy_w, z_w = joint.grids(pos, depth)
    pos_px = (pos * joint.unit).numpy()
    dz = (depth - joint.rest_z).numpy()
    return WarpResult(unknowns.params.detach(), meshes, joint.per_image(pos_px), joint.per_image(dz), xy_w.detach(),
                      z_w.detach(), history)


# -- piecewise-affine image warps ----------------------------------------------------------------------------------

@dataclass
class PiecewiseAffine:
    """Where each output pixel comes from under a mesh warp: the triangle it falls in and its barycentric
    coordinates there (the same in the rest and the warped triangle)."""

    triangle: np.ndarray
    """(H, W) index of the warped triangle covering the pixel centre, -1 where none does."""
    bary: np.ndarray
    """(H, W, 3) barycentric coordinates of the pixel centre in that triangle."""

    def source(self, rest: np.ndarray, triangles: np.ndarray) -> np.ndarray:
        """(H, W, 2) source pixel coordinates (in the unwarped image) of every output pixel."""
        return self.interpolate(rest, triangles)

    def interpolate(self, values: np.ndarray, triangles: np.ndarray) -> np.ndarray:
        """Per-vertex ``values`` (M, ...) interpolated at every output pixel (0 where uncovered)."""
        tri = np.maximum(self.triangle, 0)
        corner = values[triangles[tri]]  # (H, W, 3, ...)
        bary = self.bary.reshape(self.bary.shape + (1,) * (corner.ndim - 3))
        out = (corner * bary).sum(2)
        out[self.triangle < 0] = 0
        return out

    @property
    def covered(self) -> np.ndarray:
        return self.triangle >= 0


def piecewise_affine(warped: np.ndarray, triangles: np.ndarray, width: int, height: int) -> PiecewiseAffine:
    """Rasterise the warped mesh (vertices (M, 2) in pixels) at the pixel centres of a ``width`` x ``height`` image.
    Where triangles overlap (a fold), the later one wins; a pixel centre on a shared edge belongs to either."""
    tri_index = -np.ones((height, width), np.int64)
    bary = np.zeros((height, width, 3))
    for t, (a, b, c) in enumerate(triangles):
        pa, pb, pc = warped[a], warped[b], warped[c]
        lo = np.floor(np.minimum(np.minimum(pa, pb), pc) - 0.5).astype(int)
        hi = np.ceil(np.maximum(np.maximum(pa, pb), pc) - 0.5).astype(int)
        x0, y0 = max(lo[0], 0), max(lo[1], 0)
        x1, y1 = min(hi[0], width - 1), min(hi[1], height - 1)
        if x1 < x0 or y1 < y0:
            continue
        ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
        px, py = xs + 0.5, ys + 0.5
        det = (pb[1] - pc[1]) * (pa[0] - pc[0]) + (pc[0] - pb[0]) * (pa[1] - pc[1])
        if abs(det) < 1e-12:
            continue
        l0 = ((pb[1] - pc[1]) * (px - pc[0]) + (pc[0] - pb[0]) * (py - pc[1])) / det
        l1 = ((pc[1] - pa[1]) * (px - pc[0]) + (pa[0] - pc[0]) * (py - pc[1])) / det
        l2 = 1 - l0 - l1
        inside = (l0 >= -1e-9) & (l1 >= -1e-9) & (l2 >= -1e-9)
        tri_index[ys[inside], xs[inside]] = t
        bary[ys[inside], xs[inside]] = np.stack([l0, l1, l2], -1)[inside]
    return PiecewiseAffine(tri_index, bary)


@dataclass
class WarpedView:
    image: np.ndarray
    """(H, W, 3) the warped image (background colour where the mesh does not reach)."""
    depth: np.ndarray
    """(H, W) warped raw depth (with the interpolated depth offsets) on ``objects``, 0 elsewhere."""
    usable: np.ndarray
    """(H, W) bool: covered by the warped mesh and usable in the source image."""
    objects: np.ndarray
    """(H, W) bool: usable pixels showing the scene (with a positive depth)."""


def warp_view(image: np.ndarray, depth: np.ndarray, usable: np.ndarray, objects: np.ndarray, mesh: ImageMesh,
              warped: np.ndarray, depth_offsets: np.ndarray, background: float = 1.0) -> WarpedView:
    """Warp one image, its raw depth and its masks (all H x W) from ``mesh.rest`` to ``warped`` vertex positions:
    colours and depths bilinearly, the masks by nearest neighbour; depth offsets interpolated from the vertices."""
    H, W = image.shape[:2]
    pa = piecewise_affine(warped, mesh.triangles, W, H)
    src = pa.source(mesh.rest, mesh.triangles)
    covered = pa.covered
    out_image = np.where(covered[..., None], bilinear(image.astype(np.float64), src), background)
    cols = np.clip(np.floor(src[..., 0]).astype(int), 0, W - 1)
    rows = np.clip(np.floor(src[..., 1]).astype(int), 0, H - 1)
    out_usable = covered & usable[rows, cols]
    out_depth = bilinear(depth.astype(np.float64), src) + pa.interpolate(depth_offsets, mesh.triangles)
    out_objects = out_usable & objects[rows, cols] & (out_depth > 0)
    return WarpedView(out_image.astype(np.float32), np.where(out_objects, out_depth, 0.0).astype(np.float32),
                      out_usable, out_objects)


def flipped_triangles(mesh: ImageMesh, warped: np.ndarray) -> int:
    """How many of the mesh's triangles have non-positive area after the warp."""
    return int((signed_areas(warped[mesh.triangles]) <= 0).sum())

"""A coloured triangle mesh from a Gaussian scene: render depth and colour from many views around it, fuse them in a
truncated signed distance field (TSDF), take its zero level set with marching cubes.

Steps (``scene_to_mesh``), each a function here:

1. ``mesh_bounds``: a box around the scene's opaque Gaussians (quantiles, so stray splats do not stretch it).
2. ``sphere_cameras``: ``views`` cameras on a Fibonacci sphere around the box, all looking at its centre; plus the
   cameras of a `splat4d run` folder (``run_cameras``) when one is given.
3. ``integrate``: each view's expected depth (the rasterizer's alpha-normalised depth, camera z) updates the voxels
   along its pixels' rays (projective TSDF: ``clamp((depth - z) / truncation, -1, 1)`` where the voxel is no deeper
   than ``truncation`` behind the surface); pixels the scene does not cover (alpha below ``empty_alpha``) mark their
   whole ray as empty space (+1), which carves the outline as a visual hull does. Voxels near the surface also
   average the view's colour. Voxels no view saw stay "inside" (-1): they are hidden in every view, so the surface
   is closed.
4. ``extract_mesh``: ``skimage.measure.marching_cubes`` at level 0, outward-facing triangles, vertex colours
   interpolated from the colour grid.
5. ``remove_small_components`` (islands under ``min_component`` of the largest), ``cluster_decimate`` (vertex
   clustering, only when there are more than ``max_faces`` triangles).

``write_mesh`` writes .glb, .obj or .ply through trimesh, by default turned into the y-up axes those formats (and
Blender, three.js, MeshLab) expect: (x, y, z) -> (x, -y, -z), a 180 degree turn about x of splat4d's y-down world.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from splat4d.types import Cameras, GaussianScene

MESH_SUFFIXES = (".glb", ".obj", ".ply")


@dataclass
class MeshConfig:
    """How a Gaussian scene becomes a mesh; every size defaults to a fraction of the scene's bounds."""

    views: int = 64
    """Depth/colour views rendered on a sphere around the scene (more: fewer holes in concave parts, slower)."""
    resolution: int = 192
    """Side of each rendered view in pixels."""
    fov: float = 40.0
    """Vertical field of view of the views in degrees."""
    grid_resolution: int = 160
    """Voxels along the longest side of the bounds (sets the voxel size unless --voxel-size is given)."""
    voxel_size: float | None = None
    """Voxel size in world units; default: the bounds' longest side / grid_resolution."""
    truncation: float | None = None
    """TSDF truncation distance in world units; default: 4 voxels."""
    surface_alpha: float = 0.5
    """A pixel's depth is trusted where the rendered alpha reaches this."""
    empty_alpha: float = 0.05
    """Pixels with alpha below this mark their ray as empty space (carving)."""
    angle_power: float = 6.0
    """A depth observation weighs cos(angle between ray and surface)^angle_power (0: all weigh 1); frontal views
    win because a grazing view's rendered depth leans towards the camera (splat depth is the splat centre's)."""
    bounds_quantile: float = 0.999
    """The bounds are the (1-q, q) quantile box of the opaque Gaussians' centres (stray splats stay outside)."""
    min_component: float = 0.05
    """Connected pieces with fewer triangles than this fraction of the largest piece are removed (0 keeps all)."""
    max_faces: int = 300_000
    """Decimate (vertex clustering) when the mesh has more triangles than this."""
    use_run_cameras: bool = True
    """With a run folder: also fuse its views' cameras (views/cameras.json)."""
    axes: Literal["y-up", "splat4d"] = "y-up"
    """Axes of the written mesh: 'y-up' (glTF/OBJ convention: x right, y up, the input view's front facing +z) or
    'splat4d' (the scene's own y-down OpenCV world)."""
    batch: int = 8
    """Views rendered per rasterizer call."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class TSDFVolume:
    """A voxel grid: signed distance / truncation in [-1, 1] (positive outside), its weight, and fused colour."""

    origin: np.ndarray
    """(3,) world position of voxel (0, 0, 0)'s centre."""
    voxel_size: float
    """Voxel side in world units."""
    tsdf: Tensor
    """(X, Y, Z) float32 truncated signed distance over the truncation distance; -1 where never seen."""
    weight: Tensor
    """(X, Y, Z) float32 number of observations."""
    color_sum: Tensor
    """(X, Y, Z, 3) float32 weighted colour sum of observations near the surface."""
    color_weight: Tensor
    """(X, Y, Z) float32 weight of ``color_sum``."""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.tsdf.shape)

    def axes(self) -> list[Tensor]:
        """World coordinates (float64) of the voxel centres along x, y and z."""
        return [torch.arange(n, dtype=torch.float64) * self.voxel_size + float(o)
                for n, o in zip(self.shape, self.origin)]


@dataclass
class Mesh:
    """A triangle mesh with per-vertex colours, in splat4d's world."""

    vertices: np.ndarray
    """(V, 3) float positions."""
    faces: np.ndarray
    """(F, 3) int vertex indices, counter-clockwise seen from outside."""
    colors: np.ndarray
    """(V, 3) float colours in [0, 1]."""
    info: dict = field(default_factory=dict)
    """Sizes used (voxel, truncation, bounds, views) and counts."""


# 1. Bounds and cameras ---------------------------------------------------------------------------------------------
def mesh_bounds(scene: GaussianScene, quantile: float = 0.999,
                min_opacity: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of the quantile box of the centres of Gaussians with opacity above ``min_opacity`` (all of them when
    fewer than 8 are), widened by three times the median Gaussian size."""
    means = scene.means.detach().double().cpu()
    opaque = scene.opacities_act().detach().cpu() > min_opacity
    pts = means[opaque] if int(opaque.sum()) >= 8 else means
    if len(pts) == 0:
        raise ValueError("the scene has no Gaussians to mesh")
    if len(pts) > 200_000:
        pts = pts[torch.randperm(len(pts), generator=torch.Generator().manual_seed(0))[:200_000]]
    lo = torch.quantile(pts, 1 - quantile, dim=0).numpy()
    hi = torch.quantile(pts, quantile, dim=0).numpy()
    size = 3.0 * float(scene.scales_act().detach().max(1).values.median())
    return lo - size, hi + size


def fibonacci_directions(n: int) -> np.ndarray:
    """(n, 3) unit vectors spread evenly over the sphere (golden-angle spiral)."""
    i = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * i / n)
    azimuth = math.pi * (1 + 5**0.5) * i
    return np.stack([np.sin(polar) * np.cos(azimuth), np.cos(polar), np.sin(polar) * np.sin(azimuth)], 1)


def sphere_cameras(center: np.ndarray, radius: float, n: int, resolution: int, fov_deg: float) -> Cameras:
    """``n`` cameras on a sphere around ``center`` looking at it, at the distance where a ball of ``radius`` fills
    the field of view (world up = -y, splat4d's convention)."""
    from splat4d.paths import look_at

    distance = 1.05 * radius / math.sin(math.radians(fov_deg) / 2)
    c = torch.tensor(center, dtype=torch.float64)
    eyes = c + distance * torch.from_numpy(fibonacci_directions(n))
    c2w = look_at(eyes, c.expand_as(eyes), torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))
    return Cameras.from_fov(c2w.float(), resolution, resolution, fov_deg)


def run_cameras(run_dir: Path, resolution: int) -> Cameras | None:
    """The cameras of a `splat4d run` folder's views (views/cameras.json), scaled so the longer image side is
    ``resolution``; None when the folder has none."""
    path = Path(run_dir) / "views" / "cameras.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        c2w = torch.tensor([v["c2w"] for v in data["views"]], dtype=torch.float32)
        K = torch.tensor([v["K"] for v in data["views"]], dtype=torch.float32)
        width, height = int(data["width"]), int(data["height"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a splat4d views/cameras.json ({type(err).__name__}: {err})") from err
    if len(c2w) == 0:
        return None
    scale = resolution / max(width, height)
    K = K.clone()
    K[:, :2] *= scale
    return Cameras(c2w, K, max(2, round(width * scale)), max(2, round(height * scale)))


# 2. Fusion ---------------------------------------------------------------------------------------------------------
def new_volume(lo: np.ndarray, hi: np.ndarray, voxel_size: float, max_voxels: int = 400**3) -> TSDFVolume:
    """An empty volume covering [lo, hi] (all voxels 'inside, unseen')."""
    shape = tuple(int(v) for v in np.ceil((hi - lo) / voxel_size).astype(int) + 1)
    if np.prod(shape, dtype=np.int64) > max_voxels:
        raise ValueError(f"a {shape[0]}x{shape[1]}x{shape[2]} voxel grid is too large (voxel size {voxel_size:.4g} "
                         f"for bounds {np.round(hi - lo, 3).tolist()}); use a larger --voxel-size or a smaller "
                         "--grid-resolution")
    return TSDFVolume(origin=lo.astype(np.float64), voxel_size=float(voxel_size),
                      tsdf=-torch.ones(shape), weight=torch.zeros(shape), color_sum=torch.zeros(shape + (3,)),
                      color_weight=torch.zeros(shape))


def incidence_cosine(depth: Tensor, valid: Tensor, K: Tensor) -> Tensor:
    """(H, W) |cos| of the angle between each pixel's ray and the surface normal estimated from the depth map
    (cross product of central differences of the back-projected points); 0 where a neighbour is not ``valid``."""
    h, w = depth.shape
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                          indexing="ij")
    pts = torch.stack([(u - float(K[0, 2])) / float(K[0, 0]) * depth, (v - float(K[1, 2])) / float(K[1, 1]) * depth,
                       depth], -1)
    pad = torch.nn.functional.pad(pts.permute(2, 0, 1)[None], (1, 1, 1, 1), mode="replicate")[0].permute(1, 2, 0)
    du = pad[1:-1, 2:] - pad[1:-1, :-2]
    dv = pad[2:, 1:-1] - pad[:-2, 1:-1]
    normal = torch.nn.functional.normalize(torch.linalg.cross(du, dv, dim=-1), dim=-1)
    cos = (normal * torch.nn.functional.normalize(pts, dim=-1)).sum(-1).abs()
    ok = torch.nn.functional.pad(valid.float()[None, None], (1, 1, 1, 1), value=0.0)
    ok = -torch.nn.functional.max_pool2d(-ok, 3, stride=1)[0, 0] > 0.5  # the pixel and its 8 neighbours valid
    return torch.where(ok, cos, torch.zeros_like(cos))


def integrate(volume: TSDFVolume, depth: Tensor, rgb: Tensor, alpha: Tensor, camera: Cameras, truncation: float,
              surface_alpha: float = 0.5, empty_alpha: float = 0.05, angle_power: float = 6.0) -> None:
    """Fuse one view (depth (H, W) camera z, rgb (H, W, 3) un-premultiplied, alpha (H, W)) into ``volume`` in place.

    A depth observation weighs ``cos(incidence)^angle_power``: a splat's depth is its centre's, so on surfaces seen
    at a grazing angle the rendered depth leans towards the camera by up to a splat's size; near-frontal views do
    not have that bias. Empty-space observations weigh 1.

    Whole-grid vectorised: the camera coordinates of voxel (i, j, k) are sums of three per-axis terms (the grid is
    axis-aligned), so no (N, 3) point array is ever built."""
    w2c = torch.linalg.inv(camera.c2w[0].double())
    K = camera.K[0].double()
    P = K @ w2c[:3]  # (3, 4): pixel-homogeneous (u z, v z, z) of a world point
    axes = volume.axes()
    shape = volume.shape

    def coord(c: int) -> Tensor:
        terms = [(P[c, a] * axes[a]).float().reshape([-1 if b == a else 1 for b in range(3)]) for a in range(3)]
        return terms[0] + terms[1] + (terms[2] + float(P[c, 3]))

    z = coord(2)
    u = coord(0).div_(z)
    v = coord(1).div_(z)
    h, w = depth.shape
    inside = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u = u.nan_to_num_(0.0).clamp_(0, w - 1).long()
    pix = v.nan_to_num_(0.0).clamp_(0, h - 1).long().mul_(w).add_(u).view(-1)
    del u, v
    a = alpha.reshape(-1)[pix].view(shape)
    sdf = depth.reshape(-1)[pix].view(shape).sub_(z)
    surface = inside & (a >= surface_alpha)
    empty = inside & (a < empty_alpha)
    if angle_power > 0:
        cos = incidence_cosine(depth, alpha >= surface_alpha, camera.K[0])
        obs_weight = cos.pow(angle_power).reshape(-1)[pix].view(shape)
    else:
        obs_weight = torch.ones(shape)
    update = (surface & (sdf >= -truncation)) | empty
    obs_weight = torch.where(empty, 1.0, torch.where(update, obs_weight, 0.0))
    obs = torch.where(empty, 1.0, (sdf / truncation).clamp_(-1.0, 1.0))
    weight = volume.weight
    new_weight = weight + obs_weight
    volume.tsdf.copy_(torch.where(obs_weight > 0, (volume.tsdf * weight + obs * obs_weight)
                                  / new_weight.clamp_min(1e-12), volume.tsdf))
    weight.copy_(new_weight)
    near = (surface & (sdf.abs_() < truncation)).view(-1)
    vox = near.nonzero()[:, 0]
    if len(vox):
        volume.color_sum.view(-1, 3).index_add_(0, vox, rgb.reshape(-1, 3)[pix[vox]])
        volume.color_weight.view(-1).index_add_(0, vox, torch.ones(len(vox)))


def render_views(scene: GaussianScene, cameras: Cameras, batch: int = 8, backend: str = "auto", progress=None):
    """Yield (camera, depth (H, W), rgb (H, W, 3) un-premultiplied, alpha (H, W)) for each camera, rendering
    ``batch`` at a time."""
    from splat4d.render import rasterize

    with torch.no_grad():
        for start in range(0, len(cameras), batch):
            cams = cameras[start:start + batch]
            out = rasterize(scene, cams.to(scene.device), backend=backend)
            alpha = out.alpha[..., 0].float().cpu()
            rgb = (out.rgb.float().cpu() / alpha[..., None].clamp_min(1e-6)).clamp(0, 1)
            depth = out.depth[..., 0].float().cpu()
            for i in range(len(cams)):
                yield cams[i].to("cpu", torch.float32), depth[i], rgb[i], alpha[i]
            if progress is not None:
                progress.update(len(cams))


# 3. Surface --------------------------------------------------------------------------------------------------------
def extract_mesh(volume: TSDFVolume) -> Mesh:
    """The zero level set of the TSDF (outward-facing triangles) with colours from the colour grid."""
    from scipy.ndimage import map_coordinates
    from skimage.measure import marching_cubes

    tsdf = volume.tsdf.numpy()
    if tsdf.min() >= 0 or tsdf.max() <= 0:
        raise ValueError("the fused volume has no surface (every voxel is on one side): do the views see the scene?")
    verts, faces, _, _ = marching_cubes(tsdf, level=0.0)
    faces = faces.astype(np.int64)
    # Orientation: marching cubes' winding depends on the sign convention; make normals point to +sdf (outside).
    tri = verts[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    gradient = np.stack(np.gradient(tsdf), -1)
    centre_idx = np.clip(np.round(tri.mean(1)).astype(int), 0, np.array(tsdf.shape) - 1)
    g = gradient[centre_idx[:, 0], centre_idx[:, 1], centre_idx[:, 2]]
    if (normals * g).sum() < 0:
        faces = faces[:, ::-1].copy()
    coords = verts.T
    weight = map_coordinates(volume.color_weight.numpy(), coords, order=1, mode="nearest")
    colors = np.stack([map_coordinates(volume.color_sum[..., c].numpy(), coords, order=1, mode="nearest")
                       for c in range(3)], 1)
    colors = np.where(weight[:, None] > 1e-6, colors / np.maximum(weight[:, None], 1e-6), 0.5)
    vertices = verts * volume.voxel_size + volume.origin
    return Mesh(vertices=vertices, faces=faces, colors=np.clip(colors, 0, 1))


def remove_small_components(mesh: Mesh, min_fraction: float) -> Mesh:
    """Drop connected pieces (sharing vertices) with fewer faces than ``min_fraction`` of the largest piece."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if min_fraction <= 0 or len(mesh.faces) == 0:
        return mesh
    n = len(mesh.vertices)
    f = mesh.faces
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    face_label = labels[f[:, 0]]
    counts = np.bincount(face_label)
    keep_faces = counts[face_label] >= min_fraction * counts.max()
    return _compact(mesh, f[keep_faces], info={**mesh.info, "components_kept": int((counts >= min_fraction *
                                                                                     counts.max()).sum()),
                                               "components_removed": int(((counts > 0) & (counts < min_fraction *
                                                                                          counts.max())).sum())})


def _compact(mesh: Mesh, faces: np.ndarray, info: dict | None = None) -> Mesh:
    used = np.unique(faces)
    remap = np.full(len(mesh.vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return Mesh(mesh.vertices[used], remap[faces], mesh.colors[used], info if info is not None else mesh.info)


def cluster_decimate(mesh: Mesh, max_faces: int, cell: float) -> Mesh:
    """Vertex clustering: merge vertices in cubes of side ``cell`` (growing by 1.25x until at most ``max_faces``
    triangles remain) into their mean, drop collapsed and duplicate triangles."""
    if len(mesh.faces) <= max_faces:
        return mesh
    cell *= max(1.0, math.sqrt(len(mesh.faces) / max_faces))
    for _ in range(40):
        keys = np.floor((mesh.vertices - mesh.vertices.min(0)) / cell).astype(np.int64)
        _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        verts = np.zeros((len(counts), 3))
        cols = np.zeros((len(counts), 3))
        np.add.at(verts, inverse, mesh.vertices)
        np.add.at(cols, inverse, mesh.colors)
        verts /= counts[:, None]
        cols /= counts[:, None]
        faces = inverse[mesh.faces]
        ok = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
        faces = faces[ok]
        _, first = np.unique(np.sort(faces, 1), axis=0, return_index=True)
        faces = faces[np.sort(first)]
        if len(faces) <= max_faces:
            return _compact(Mesh(verts, faces, cols, mesh.info), faces, {**mesh.info, "decimation_cell": cell})
        cell *= 1.25
    raise ValueError(f"could not decimate to {max_faces} faces")


# 4. The whole thing ------------------------------------------------------------------------------------------------
def scene_to_mesh(scene: GaussianScene, config: MeshConfig = MeshConfig(), extra_cameras: Cameras | None = None,
                  backend: str = "auto") -> Mesh:
    """A coloured mesh of ``scene`` (see the module docstring for the steps)."""
    from tqdm.auto import tqdm

    if len(scene) == 0:
        raise ValueError("the scene has no Gaussians to mesh")
    if config.views < 1 or config.resolution < 8:
        raise ValueError("mesh export needs at least 1 view of at least 8x8 pixels")
    lo, hi = mesh_bounds(scene, config.bounds_quantile)
    voxel = config.voxel_size or float((hi - lo).max()) / config.grid_resolution
    truncation = config.truncation or 4.0 * voxel
    pad = truncation + 2 * voxel
    lo, hi = lo - pad, hi + pad
    volume = new_volume(lo, hi, voxel)
    cameras = sphere_cameras((lo + hi) / 2, 0.5 * float(np.linalg.norm(hi - lo)), config.views, config.resolution,
                             config.fov)
    groups = [cameras] + ([extra_cameras] if extra_cameras is not None and len(extra_cameras) else [])
    total = sum(len(g) for g in groups)
    with tqdm(total=total, desc="mesh: render + fuse views", disable=not config.progress, unit="view") as bar:
        for group in groups:
            for cam, depth, rgb, alpha in render_views(scene, group, config.batch, backend, progress=bar):
                integrate(volume, depth, rgb, alpha, cam, truncation, config.surface_alpha, config.empty_alpha,
                          config.angle_power)
    mesh = extract_mesh(volume)
    mesh.info = {"voxel_size": voxel, "truncation": truncation, "grid": list(volume.shape),
                 "bounds": [lo.tolist(), hi.tolist()], "views": total, "faces_marching_cubes": int(len(mesh.faces))}
    mesh = remove_small_components(mesh, config.min_component)
    mesh = cluster_decimate(mesh, config.max_faces, voxel)
    mesh.info.update(vertices=int(len(mesh.vertices)), faces=int(len(mesh.faces)))
    return mesh


Y_UP = np.array([1.0, -1.0, -1.0])
"""splat4d's y-down world -> y-up (glTF, OBJ, Blender): a 180-degree turn about x (keeps triangle winding)."""


def write_mesh(mesh: Mesh, path: str | Path, axes: str = "y-up") -> Path:
    """Write ``mesh`` as .glb, .obj or .ply (by suffix) with 8-bit vertex colours."""
    import trimesh

    from splat4d.io.ply import atomic_write_bytes

    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise ValueError(f"{path}: unknown mesh format {path.suffix!r}; write one of {', '.join(MESH_SUFFIXES)}")
    vertices = mesh.vertices * (Y_UP if axes == "y-up" else 1.0)
    rgba = np.concatenate([np.round(np.clip(mesh.colors, 0, 1) * 255), np.full((len(mesh.colors), 1), 255)], 1)
    tm = trimesh.Trimesh(vertices=vertices, faces=mesh.faces, vertex_colors=rgba.astype(np.uint8), process=False)
    data = tm.export(file_type=path.suffix.lower()[1:])
    atomic_write_bytes(path, lambda f: f.write(data if isinstance(data, bytes) else data.encode()))
    return path


def load_source(source: Path) -> tuple[GaussianScene, Path | None]:
    """The scene of a scene file or of a `splat4d run` folder (its scene.ply), and the run folder if it is one."""
    from splat4d.export import read_scene

    source = Path(source)
    if source.is_dir():
        if not (source / "scene.ply").is_file():
            raise FileNotFoundError(f"{source / 'scene.ply'} not found: is {source} a `splat4d run` folder?")
        return read_scene(source / "scene.ply"), source
    return read_scene(source), None

"""`splat4d export mesh`: the mesh of Gaussians on an analytic sphere against that sphere, the written files read
back by trimesh (bounds, colours, axes), and the fusion's pieces against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from splat4d.cli import main
from splat4d.io.ply import write_ply
from splat4d.mesh import (Mesh, MeshConfig, cluster_decimate, fibonacci_directions, new_volume, integrate,
                          remove_small_components, scene_to_mesh, sphere_cameras)
from splat4d.types import Cameras, GaussianScene, rgb_to_sh0

CENTER = np.array([0.1, 0.2, 0.3])
RADIUS = 0.5
RED, BLUE = (0.9, 0.1, 0.1), (0.1, 0.2, 0.9)
FAST = MeshConfig(views=24, resolution=80, grid_resolution=56, progress=False)


def sphere_scene(n: int = 2500) -> GaussianScene:
    """Flat Gaussians tiling a sphere (radius 0.5 about CENTER): red where world y < centre (up, splat4d's y is
    down), blue below."""
    normals = torch.from_numpy(fibonacci_directions(n)).float()
    spacing = math.sqrt(4 * math.pi * RADIUS**2 / n)
    # Rotation taking local z to the normal: about z x n by the angle between them.
    z = torch.tensor([0.0, 0.0, 1.0])
    axis = torch.linalg.cross(z.expand_as(normals), normals, dim=1)
    s = axis.norm(dim=1, keepdim=True)
    angle = torch.atan2(s[:, 0], normals[:, 2])
    axis = torch.where(s > 1e-8, axis / s.clamp_min(1e-8), torch.tensor([1.0, 0.0, 0.0]))
    quats = torch.cat([torch.cos(angle / 2)[:, None], torch.sin(angle / 2)[:, None] * axis], 1)
    colors = torch.where((normals[:, 1] < 0)[:, None], torch.tensor(RED), torch.tensor(BLUE))
    return GaussianScene(
        means=torch.from_numpy(CENTER).float() + RADIUS * normals,
        scales=torch.log(torch.tensor([0.7 * spacing, 0.7 * spacing, 0.05 * spacing])).expand(n, 3).clone(),
        quats=quats, opacities=torch.full((n,), 4.0), sh0=rgb_to_sh0(colors)[:, None, :],
        shN=torch.zeros(n, 0, 3))


@pytest.fixture(scope="module")
def sphere_mesh() -> Mesh:
    return scene_to_mesh(sphere_scene(), FAST)


def test_sphere_mesh_is_close_to_the_analytic_sphere(sphere_mesh):
    mesh = sphere_mesh
    voxel = mesh.info["voxel_size"]
    # Accuracy: every vertex's distance to the sphere (exact for a sphere).
    radial = np.linalg.norm(mesh.vertices - CENTER, axis=1) - RADIUS
    # (A splat's rendered depth is its centre's, which leans towards the camera on slanted surfaces: the mesh sits
    # about half a voxel outside; frontal views are weighted up to keep it there.)
    assert np.abs(radial).mean() < 0.75 * voxel and np.abs(radial).max() < 1.5 * voxel, (radial.mean(), voxel)
    # Completeness: points spread over the sphere to their nearest vertex.
    from scipy.spatial import cKDTree

    probes = CENTER + RADIUS * fibonacci_directions(4000)
    dist, _ = cKDTree(mesh.vertices).query(probes)
    assert dist.max() < 1.5 * voxel
    chamfer = 0.5 * (np.abs(radial).mean() + dist.mean())
    assert chamfer < 0.015 * 2 * RADIUS, chamfer  # under 1.5% of the diameter (the voxel is 2%)
    # Closed, outward-facing, one piece: the enclosed volume is the ball's (4/3 pi r^3) within a few percent.
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert tm.is_watertight
    ball = lambda r: 4 / 3 * math.pi * r**3  # noqa: E731
    assert ball(RADIUS - 0.75 * voxel) < tm.volume < ball(RADIUS + 0.75 * voxel)
    assert mesh.info["components_removed"] == 0


def test_sphere_mesh_colours_follow_the_gaussians(sphere_mesh):
    up = (sphere_mesh.vertices[:, 1] - CENTER[1]) < -0.15  # clear of the red/blue border at the equator
    down = (sphere_mesh.vertices[:, 1] - CENTER[1]) > 0.15
    assert np.abs(sphere_mesh.colors[up] - RED).max(1).mean() < 0.05
    assert np.abs(sphere_mesh.colors[down] - BLUE).max(1).mean() < 0.05


def test_glb_from_the_cli_reads_back_y_up_with_the_scenes_bounds_and_colours(tmp_path, capsys):
    import trimesh

    write_ply(sphere_scene(), tmp_path / "sphere.ply")
    main(["export", "mesh", str(tmp_path / "sphere.ply"), str(tmp_path / "m.glb"), "--views", "16",
          "--resolution", "64", "--grid-resolution", "40", "--no-progress"])
    assert "wrote" in capsys.readouterr().out
    loaded = trimesh.load(tmp_path / "m.glb", force="mesh")
    # y-up: (x, y, z) -> (x, -y, -z); the sphere's bounds are its centre +- radius, to a voxel or so.
    center_up = CENTER * np.array([1, -1, -1])
    voxel = 2 * RADIUS / 40
    assert np.allclose(loaded.bounds, [center_up - RADIUS, center_up + RADIUS], atol=1.5 * voxel)
    colors = np.asarray(loaded.visual.vertex_colors)[:, :3] / 255.0
    top = loaded.vertices[:, 1] - center_up[1] > 0.15  # y up now: the red cap is at +y
    assert top.sum() > 50 and np.abs(colors[top] - RED).max(1).mean() < 0.06
    bottom = loaded.vertices[:, 1] - center_up[1] < -0.15
    assert np.abs(colors[bottom] - BLUE).max(1).mean() < 0.06


def test_obj_and_ply_keep_vertices_faces_and_colours(sphere_mesh, tmp_path, capsys):
    import trimesh

    from splat4d.mesh import write_mesh

    for suffix in (".obj", ".ply", ".glb"):
        out = write_mesh(sphere_mesh, tmp_path / f"m{suffix}", axes="splat4d")
        back = trimesh.load(out, force="mesh", process=False)
        assert len(back.faces) == len(sphere_mesh.faces)
        assert np.allclose(back.bounds, [sphere_mesh.vertices.min(0), sphere_mesh.vertices.max(0)], atol=1e-5)
        colors = np.asarray(back.visual.vertex_colors)[:, :3] / 255.0
        expected = np.round(sphere_mesh.colors * 255) / 255
        # Same vertex order in and out: each vertex keeps its 8-bit colour.
        order = np.lexsort(back.vertices.T)
        ref = np.lexsort(sphere_mesh.vertices.T)
        assert np.allclose(colors[order], expected[ref], atol=1 / 255 + 1e-6)
    with pytest.raises(ValueError, match="unknown mesh format"):
        write_mesh(sphere_mesh, tmp_path / "m.stl")
    # A mesh .ply is not a scene: reading it as one is one clear line.
    with pytest.raises(SystemExit):
        main(["info", str(tmp_path / "m.ply")])
    assert "not a Gaussian-splat PLY" in capsys.readouterr().err


def test_integrate_one_view_of_a_plane_matches_the_projective_sdf():
    """A camera looking along +z at a wall at z = 1 (depth 1 everywhere): voxels in front hold (1 - z) / trunc,
    voxels more than a truncation behind stay unseen (-1, weight 0), and a coloured wall colours the band."""
    vol = new_volume(np.array([-0.2, -0.2, 0.5]), np.array([0.2, 0.2, 1.5]), 0.05)
    cam = Cameras.from_fov(torch.eye(4), 64, 64, 90.0)
    depth = torch.ones(64, 64)
    rgb = torch.tensor([0.2, 0.4, 0.6]).expand(64, 64, 3)
    integrate(vol, depth, rgb, torch.ones(64, 64), cam, truncation=0.2)
    z = vol.axes()[2].float()
    expected = ((1 - z) / 0.2).clamp(-1, 1)
    seen = z < 1.2 - 1e-4  # no deeper than the truncation behind the wall
    column = vol.tsdf[4, 4]  # the voxel column through the middle of the view
    assert torch.allclose(column[seen], expected[seen], atol=1e-5)
    # Its weight is cos(incidence)^6: the column lands in pixel (32, 32), whose centre ray is (0.5, 0.5, 32) / |.|.
    cos = 32 / math.sqrt(32**2 + 2 * 0.5**2)
    w1 = vol.weight[4, 4].clone()
    assert torch.allclose(w1[seen], torch.tensor(cos**6), atol=1e-5)
    assert (column[~seen] == -1).all() and (vol.weight[4, 4][~seen] == 0).all()
    band = (z - 1).abs() < 0.2 - 1e-6
    assert torch.allclose(vol.color_sum[4, 4][band] / vol.color_weight[4, 4][band, None],
                          torch.tensor([0.2, 0.4, 0.6]))
    # An empty view (alpha 0) carves: every voxel it sees gets a +1 observation of weight 1.
    integrate(vol, depth, rgb, torch.zeros(64, 64), cam, truncation=0.2)
    assert torch.allclose(vol.tsdf[4, 4][seen], (expected[seen] * w1[seen] + 1) / (w1[seen] + 1), atol=1e-5)


def test_small_islands_go_and_decimation_keeps_the_shape():
    import trimesh

    big = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    small = trimesh.creation.icosphere(subdivisions=1, radius=0.05)
    small.apply_translation([3, 0, 0])
    both = trimesh.util.concatenate([big, small])
    mesh = Mesh(np.asarray(both.vertices), np.asarray(both.faces), np.full((len(both.vertices), 3), 0.5))
    kept = remove_small_components(mesh, 0.05)
    assert len(kept.faces) == len(big.faces) and np.abs(kept.vertices).max() <= 1.0 + 1e-9
    dec = cluster_decimate(kept, 1000, 0.05)
    assert len(dec.faces) <= 1000
    r = np.linalg.norm(dec.vertices, axis=1)
    assert np.abs(r - 1).max() < 0.1  # cluster means of points on the unit sphere stay close to it


def test_sphere_cameras_look_at_the_centre_and_frame_it():
    cams = sphere_cameras(CENTER, RADIUS, 12, 64, 40.0)
    uv, z = cams.project(torch.tensor(CENTER, dtype=torch.float32)[None])
    assert torch.allclose(uv, torch.full_like(uv, 32.0), atol=1e-3)  # the centre at the image centre
    distance = 1.05 * RADIUS / math.sin(math.radians(20))
    assert torch.allclose(z, torch.full_like(z, distance), rtol=1e-5)


def test_run_folder_cameras_are_read_and_scaled(tmp_path, capsys):
    from splat4d.mesh import load_source, run_cameras

    run = tmp_path / "run"
    (run / "views").mkdir(parents=True)
    write_ply(sphere_scene(200), run / "scene.ply")
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[2, 3] = -2.0
    K = [[100.0, 0.0, 64.0], [0.0, 100.0, 48.0], [0.0, 0.0, 1.0]]
    (run / "views" / "cameras.json").write_text(__import__("json").dumps(
        {"width": 128, "height": 96, "views": [{"file": "a.png", "c2w": c2w.tolist(), "K": K}]}))
    scene, run_dir = load_source(run)
    assert len(scene) == 200 and run_dir == run
    cams = run_cameras(run, 64)  # longer side 128 -> 64: intrinsics halve
    assert (cams.width, cams.height) == (64, 48)
    assert torch.allclose(cams.K[0], torch.tensor(K) / 2 * torch.tensor([1, 1, 2.0])[:, None])
    assert torch.allclose(cams.c2w[0], c2w.float())
    (run / "views" / "cameras.json").write_text('{"width": 128}')
    with pytest.raises(SystemExit):
        main(["export", "mesh", str(run), str(tmp_path / "m.glb")])
    assert "not a splat4d views/cameras.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "mesh", str(tmp_path), str(tmp_path / "m.glb")])
    assert "scene.ply not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "mesh", str(run), str(tmp_path / "m.stl")])
    assert "unknown mesh format '.stl'" in capsys.readouterr().err

"""`splat4d toon` (Toon3D): alignment against cameras that made the correspondences, the ARAP warp, the
piecewise-affine view warp against direct references, points.json checks, and the command end to end on a small
Mitsuba-rendered scene with two views distorted like drawings."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from splat4d import paths
from splat4d.toon.align import AlignConfig, align, reprojection_residual, rotation_error_deg, umeyama
from splat4d.toon.points import PointsError, ToonPoints, match_points, parse_points
from splat4d.toon.warp import (ImageMesh, WarpConfig, arap_loss, build_mesh, flipped_triangles, optimise_warp,
                               signed_areas, warp_view)
from splat4d.types import Cameras


W, H = 80, 64
FOV_Y = 45.0


def _sheet(a, b):
    """The wavy sheet z = f(x, y) the surface variant's points lie on."""
    return 0.25 * np.sin(3 * a) * np.cos(2 * b)


def synthetic_views(surface: bool = False):
    """40 points seen by 3 cameras on an orbit (world = camera 0's frame), their pixels, and raw depths
    z_raw = (z - d) / s for known depth scales s and offsets d (camera z = s z_raw + d). The points fill a cube, or
    with ``surface`` lie on a wavy sheet (a drawing's depth map is a surface); then each view's raw depth map (H, W)
    of the sheet comes too (ray casting by bisection), else None."""
    rng = np.random.default_rng(0)
    if surface:
        a, b = rng.uniform(-0.7, 0.7, (2, 40))
        X = torch.from_numpy(np.stack([a, b, _sheet(a, b)], 1))
    else:
        X = torch.from_numpy(rng.uniform(-0.6, 0.6, (40, 3)))
    path = paths.orbit(radius=3.0, elevation_deg=10, frames=8, width=W, height=H, fov_y_deg=FOV_Y)
    cams = Cameras.concat([path.cameras[i] for i in (0, 1, 7)]).to("cpu", torch.float64)
    w2c0 = torch.linalg.inv(cams.c2w[0])
    world = cams.c2w.clone()  # the orbit's world, where the sheet is z = f(x, y)
    cams = Cameras(w2c0 @ cams.c2w, cams.K, W, H)
    uv, z = cams.project(X @ w2c0[:3, :3].T + w2c0[:3, 3])
    s = torch.tensor([1.0, 0.7, 1.4], dtype=torch.float64)
    d = torch.tensor([0.0, 0.5, 0.2], dtype=torch.float64)
    maps = None
    if surface:
        rows, cols = np.mgrid[0:H, 0:W] + 0.5
        maps = []
        for i in range(3):
            K, c2w = cams.K[i].numpy(), world[i].numpy()
            ray = np.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], np.ones_like(cols)], -1)
            direction, origin = ray @ c2w[:3, :3].T, c2w[:3, 3]
            lo, hi = np.full(cols.shape, 1.0), np.full(cols.shape, 5.0)  # camera z between 1 and 5
            for _ in range(50):  # below the sheet (z < f) at lo, above at hi
                mid = (lo + hi) / 2
                p = origin + mid[..., None] * direction
                below = p[..., 2] < _sheet(p[..., 0], p[..., 1])
                lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
            maps.append(((lo + hi) / 2 - d[i].item()) / s[i].item())
    return cams, uv, (z - d[:, None]) / s[:, None], s, d, maps


def horizontal_fov(fov_y: float) -> float:
    return float(np.degrees(2 * np.arctan(np.tan(np.radians(fov_y) / 2) * W / H)))


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(20, 3))
    from scipy.spatial.transform import Rotation

    R = Rotation.from_rotvec([0.3, -0.5, 0.2]).as_matrix()
    s, R_est, t = umeyama(src, 1.7 * src @ R.T + np.array([0.1, 2.0, -1.0]))
    assert s == pytest.approx(1.7, rel=1e-12)
    np.testing.assert_allclose(R_est, R, atol=1e-12)
    np.testing.assert_allclose(t, [0.1, 2.0, -1.0], atol=1e-12)


def test_alignment_recovers_known_cameras_and_depth_scales():
    """Known focal lengths: cameras, depth scales and offsets come back (up to the world's one free scale).
    Focal lengths fitted too, from a start 10% too wide: rotations within half a degree."""
    cams, uv, z_raw, s, d, _ = synthetic_views()
    valid = torch.ones(3, 40, dtype=torch.bool)
    known = align(uv, z_raw, valid, W, H, AlignConfig(steps=100, fov_deg=horizontal_fov(FOV_Y), optimize_focal=False))
    est = known.params.cameras(W, H)
    assert rotation_error_deg(est.c2w[:, :3, :3], cams.c2w[:, :3, :3]).max() < 0.05
    world_scale = known.params.scale / s  # camera z = s z_raw + d; the fit's world is ours times world_scale
    torch.testing.assert_close(world_scale, world_scale.mean().expand(3), atol=3e-3, rtol=0)
    torch.testing.assert_close(known.params.offset[1:], d[1:] * world_scale[1:], atol=1e-2, rtol=0)
    torch.testing.assert_close(est.c2w[1:, :3, 3], cams.c2w[1:, :3, 3] * world_scale.mean(), atol=1e-2, rtol=0)
    assert reprojection_residual(known.params, uv, z_raw, valid, W, H) < 0.02

    free = align(uv, z_raw, valid, W, H, AlignConfig(steps=150, fov_deg=horizontal_fov(FOV_Y) * 1.1))
    est = free.params.cameras(W, H)
    assert rotation_error_deg(est.c2w[:, :3, :3], cams.c2w[:, :3, :3]).max() < 0.5
    assert float((est.K[:, 0, 0] / cams.K[:, 0, 0] - 1).abs().max()) < 0.12
    assert reprojection_residual(free.params, uv, z_raw, valid, W, H) < 0.2
    assert free.history[-1] < free.history[0] / 10


def test_arap_loss_is_zero_for_rigid_motion_and_grows_with_shear():
    rest = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [2.0, 1.5], [1.2, 2.0]]],
                        dtype=torch.float64)
    angle = torch.tensor(0.7, dtype=torch.float64)
    R = torch.stack([torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])])
    moved = rest @ R.T + torch.tensor([3.0, -1.0], dtype=torch.float64)
    assert float(arap_loss(rest, moved)) < 1e-20
    shear = torch.tensor([[1.0, 0.2], [0.0, 1.0]], dtype=torch.float64)
    small, large = arap_loss(rest, rest @ shear.T), arap_loss(rest, rest @ (shear * 2 - torch.eye(2)).T)
    assert 0 < float(small) < float(large)


def test_mesh_covers_the_frame_counter_clockwise():
    rng = np.random.default_rng(2)
    xy = rng.uniform(5, 60, (12, 2))
    mesh = build_mesh(xy, np.ones(12, bool), W, H, 4)
    assert (signed_areas(mesh.rest[mesh.triangles]) > 0).all()
    assert signed_areas(mesh.rest[mesh.triangles]).sum() == pytest.approx(W * H)  # the whole frame, no overlap
    assert sorted(mesh.point[mesh.point >= 0].tolist()) == list(range(12))
    assert (mesh.rest[mesh.vertex_of] == xy).all()
    # Two points marked at one spot share a vertex; an unmarked point has none.
    twice = np.concatenate([xy, xy[3:4], [[0.0, 0.0]]])
    mesh = build_mesh(twice, np.array([True] * 13 + [False]), W, H, 4)
    assert mesh.vertex_of[12] == mesh.vertex_of[3] and mesh.vertex_of[13] == -1 and (mesh.point >= 0).sum() == 12


def test_view_masks_leave_out_polygons_and_depth_jumps():
    from splat4d.toon.pipeline import view_masks

    depth = np.full((20, 30), 0.5)
    depth[:, 15:] = 0.8  # a jump between columns 14 and 15
    depth[:3] = 0.0  # no depth in the top rows
    polygon = np.array([[2.0, 10.0], [8.0, 10.0], [8.0, 16.0], [2.0, 16.0]])  # pixels 2-7 x 10-15
    usable, objects = view_masks(depth, [polygon], None, 0.05)
    assert not usable[10:16, 2:8].any() and usable[10:16, 8:12].all()
    assert not usable[5:, 13:17].any() and usable[5:, 12].all() and usable[5:, 17].all()
    assert not objects[:3].any() and (objects == usable & (depth > 0)).all()


def test_warp_reduces_residual_without_flipping_triangles():
    """View 1 redrawn with a smooth 2D distortion: after the coarse alignment some residual is left; the warp
    removes most of it and no triangle flips. On consistent views the warp hardly moves anything."""
    from splat4d.toon.warp import bilinear

    cams, uv, z_raw, _, _, maps = synthetic_views(surface=True)
    # Points hidden behind a fold of the sheet are not marked in that view.
    on_map = np.stack([bilinear(maps[i], uv[i].numpy()) for i in range(3)])
    valid = torch.from_numpy(np.abs(on_map - z_raw.numpy()) < 0.02)
    assert valid.sum() >= 110
    x, y = uv[1, :, 0], uv[1, :, 1]
    distorted = uv.clone()
    distorted[1] = torch.stack([x + 4 * torch.sin(2 * np.pi * y / H), y + 3 * torch.sin(2 * np.pi * x / W)], -1)
    cfg = AlignConfig(steps=120, fov_deg=horizontal_fov(FOV_Y), optimize_focal=False)
    for points, consistent in ((distorted, False), (uv, True)):
        # A drawing's depth map moves with its picture: sample the map where the point was before the distortion.
        z = torch.from_numpy(np.stack([bilinear(maps[i], uv[i].numpy()) for i in range(3)]))
        z_maps = maps if consistent else [maps[0], _moved_map(maps[1], uv[1].numpy(), points[1].numpy()), maps[2]]
        coarse = align(points, z, valid, W, H, cfg)
        before = reprojection_residual(coarse.params, points, z, valid, W, H)
        warp = optimise_warp(coarse.params, points, z_maps, valid, W, H, cfg, WarpConfig(steps=120))
        after = reprojection_residual(warp.params, warp.xy, warp.z, valid, W, H)
        assert all(flipped_triangles(m, w) == 0 for m, w in zip(warp.meshes, warp.warped))
        moved = max(float(np.abs(w - m.rest).max()) for m, w in zip(warp.meshes, warp.warped))
        if consistent:
            assert before < 0.1 and after < 0.1 and moved < 0.3
        else:
            assert before > 1.0 and after < 0.1 * before and moved > 2.0


def _moved_map(depth: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The depth map resampled so that what was at ``old`` points is at ``new`` (a thin-plate-spline warp)."""
    from scipy.interpolate import RBFInterpolator

    from splat4d.toon.warp import bilinear

    rows, cols = np.mgrid[0:H, 0:W] + 0.5
    back = RBFInterpolator(new, old - new, kernel="thin_plate_spline")(np.stack([cols, rows], -1).reshape(-1, 2))
    source = np.stack([cols, rows], -1).reshape(-1, 2) + back
    return bilinear(depth, source).reshape(H, W)


def _texture(h: int, w: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(3)
    return cv2.GaussianBlur(rng.uniform(0, 1, (h, w, 3)).astype(np.float32), (0, 0), 1.5)


def test_piecewise_affine_warp_equals_an_affine_warp_when_the_mesh_moves_affinely():
    import cv2

    image = _texture(H, W)
    rng = np.random.default_rng(4)
    mesh = build_mesh(rng.uniform(8, 56, (10, 2)), np.ones(10, bool), W, H, 3)
    A = np.array([[0.9, 0.08, 4.0], [-0.05, 0.95, 2.5]])
    warped = mesh.rest @ A[:, :2].T + A[:, 2]
    view = warp_view(image, np.ones((H, W)), np.ones((H, W), bool), np.ones((H, W), bool), mesh, warped,
                     np.zeros(len(mesh.rest)))
    # cv2 puts pixel centres at integers: the same map in those coordinates has t' = t + (A - I) 0.5.
    A_cv = A.copy()
    A_cv[:, 2] += (A[:, :2] - np.eye(2)) @ np.array([0.5, 0.5])
    reference = cv2.warpAffine(image, A_cv, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = view.usable.copy()
    inside[:2], inside[-2:], inside[:, :2], inside[:, -2:] = False, False, False, False
    assert inside.sum() > 0.6 * W * H
    np.testing.assert_allclose(view.image[inside], reference[inside], atol=2e-3)


def test_piecewise_affine_warp_matches_scikit_image_on_a_non_affine_mesh():
    from scipy.spatial import Delaunay
    from skimage.transform import PiecewiseAffineTransform, warp

    image = _texture(H, W)
    rng = np.random.default_rng(5)
    rest = np.concatenate([rng.uniform(10, 54, (8, 2)), [[0, 0], [W, 0], [W, H], [0, H]]])
    warped = rest.copy()
    warped[:8] += rng.uniform(-2.5, 2.5, (8, 2))
    tri = Delaunay(warped).simplices  # scikit-image triangulates the output positions
    tri[signed_areas(warped[tri]) < 0] = tri[signed_areas(warped[tri]) < 0][:, [0, 2, 1]]
    assert (signed_areas(rest[tri]) > 0).all()
    mesh = ImageMesh(rest, np.arange(len(rest)), tri, np.arange(len(rest)))
    view = warp_view(image, np.ones((H, W)), np.ones((H, W), bool), np.ones((H, W), bool), mesh, warped,
                     np.zeros(len(rest)))
    # Output -> input positions, pixel centres at integers (scikit-image's convention).
    if hasattr(PiecewiseAffineTransform, "from_estimate"):
        transform = PiecewiseAffineTransform.from_estimate(warped - 0.5, rest - 0.5)
    else:
        transform = PiecewiseAffineTransform()
        assert transform.estimate(warped - 0.5, rest - 0.5)
    reference = warp(image, transform, order=1, mode="edge")
    inside = np.zeros((H, W), bool)
    inside[2:-2, 2:-2] = True
    np.testing.assert_allclose(view.image[inside], reference[inside], atol=2e-3)


def test_parse_points_accepts_the_labeler_layout_and_refuses_malformed_files():
    data = {"points": [[{"x": 1, "y": 2}, {"x": 3, "y": 4}], [{"x": 5, "y": 6}, {"x": 0, "y": 0}]],
            "validPoints": [[True, True], [True, False]], "validImages": [True, True],
            "polygons": [[[{"x": 0, "y": 0}, {"x": 5, "y": 0}, {"x": 5, "y": 5}]], []]}
    points = parse_points(data, [(10, 10), (10, 10)])
    assert points.xy[1, 0].tolist() == [5, 6] and points.valid.tolist() == [[True, True], [True, False]]
    assert points.polygons[0][0].shape == (3, 2) and points.to_json() == {
        **data, "points": [[{"x": 1.0, "y": 2.0}, {"x": 3.0, "y": 4.0}], [{"x": 5.0, "y": 6.0}, {"x": 0.0, "y": 0.0}]],
        "polygons": [[[{"x": 0.0, "y": 0.0}, {"x": 5.0, "y": 0.0}, {"x": 5.0, "y": 5.0}]], []]}
    for bad, message in [({"pts": []}, "expected an object with a 'points' list"),
                         ({"points": [[{"x": 1, "y": 2}]]}, "'points' has 1 entries but images/ holds 2"),
                         ({"points": [[{"x": 1, "y": 2}], []]}, "same number of points"),
                         ({"points": [[{"x": "a", "y": 2}], [{"x": 1, "y": 2}]]}, "must be numbers"),
                         ({"points": [[{"x": 11, "y": 2}], [{"x": 1, "y": 2}]]}, "outside the 10x10 image"),
                         ({**data, "validPoints": [[True], [True]]}, "validPoints must be 2x2")]:
        with pytest.raises(PointsError, match=message):
            parse_points(bad, [(10, 10), (10, 10)])


def test_feature_matching_finds_a_known_shift():
    image = _texture(96, 96)
    shifted = np.roll(image, (5, 3), axis=(0, 1))  # 3 px right, 5 px down
    points = match_points([image, shifted], max_points=100)
    both = points.valid.all(0)
    inner = both & (points.xy[0] > 8).all(1) & (points.xy[0] < 85).all(1)
    assert inner.sum() >= 10
    np.testing.assert_allclose(points.xy[1, inner] - points.xy[0, inner], np.tile([3.0, 5.0], (inner.sum(), 1)),
                               atol=0.6)


def test_interpolated_cameras_slerp_between_the_inputs():
    from splat4d.toon.fit import camera_path_through, interpolate_cameras

    cams, *_ = synthetic_views()
    for t, expected in ((0.0, cams[0]), (1.0, cams[1])):
        got = interpolate_cameras(cams, 0, 1, t)
        torch.testing.assert_close(got.c2w, expected.c2w, atol=1e-12, rtol=0)
        torch.testing.assert_close(got.K, expected.K)
    half = interpolate_cameras(cams, 0, 1, 0.5)
    to_a, to_b = (rotation_error_deg(half.c2w[:, :3, :3], cams.c2w[i:i + 1, :3, :3]) for i in (0, 1))
    whole = rotation_error_deg(cams.c2w[:1, :3, :3], cams.c2w[1:2, :3, :3])
    torch.testing.assert_close(to_a, whole / 2)
    torch.testing.assert_close(to_b, whole / 2)
    torch.testing.assert_close(half.centers(), (cams.centers()[:1] + cams.centers()[1:2]) / 2)
    path = camera_path_through(cams, 4)
    assert len(path) == 2 * 4 + 1
    torch.testing.assert_close(path.c2w[[0, 4, 8]], cams.c2w, atol=1e-12, rtol=0)


def test_weak_images_are_dropped_with_a_message():
    from splat4d.toon.pipeline import usable_images

    valid = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], bool)
    points = ToonPoints(np.zeros((4, 4, 2)), valid, np.array([True, True, True, False]))
    keep, messages = usable_images(points, ["a.png", "b.png", "c.png", "d.png"])
    assert keep.tolist() == [0, 1]
    assert messages == ["dropping d.png: marked unusable in the points file",
                        "dropping c.png: it shares 2 point(s) with the other images, at least 3 are needed"]


# -- the command --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def toon_data(tmp_path_factory):
    """A tiny Mitsuba-rendered set (64 px, 4 views, 2 distorted; tools/make_toon_data.py)."""
    pytest.importorskip("mitsuba")
    from make_toon_data import make_toon_data

    return make_toon_data(tmp_path_factory.mktemp("toon") / "scene", res=64, spp=4, num_points=30)


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.strip().splitlines() if line]


def test_toon_command_end_to_end(toon_data, tmp_path):
    from splat4d.cli import main
    from splat4d.io.ply import read_ply
    from splat4d.io.video import read_video
    from splat4d.nerfstudio.export import read_view_cameras

    out = tmp_path / "out"
    result = main(["toon", str(toon_data), "--out", str(out), "--align.steps", "100", "--warp.steps", "100",
                   "--fit.iterations", "24", "--video-frames", "2", "--no-progress", "--device", "cpu"])
    m = result.metrics
    assert m["images"] == ["00000.png", "00001.png", "00002.png", "00003.png"] and m["dropped"] == []
    assert m["residual_before_px"] > 0.3 and m["residual_after_px"] < 0.5 * m["residual_before_px"]
    assert m["flipped_triangles"] == [0, 0, 0, 0]
    scene = read_ply(out / "scene.ply").validate()
    assert len(scene) == m["gaussians"] > 500
    assert min(m["view_psnr"]) > 18.0
    assert len(read_video(out / "interp.mp4")) == 3 * 2 + 1
    assert json.loads((out / "metrics.json").read_text())["residual_after_px"] == m["residual_after_px"]
    assert (out / "config.yaml").is_file() and (out / "scene.splat").is_file()
    # The cameras against the truth: relative rotations to the first view (the world is camera 0's frame).
    cameras, views = read_view_cameras(out / "views" / "cameras.json")
    assert [v["file"] for v in views] == [f"warped_{i:03d}.png" for i in range(4)]
    truth = json.loads((toon_data / "truth.json").read_text())
    R_true = torch.tensor([t["c2w"] for t in truth["inputs"]], dtype=torch.float64)[:, :3, :3]
    R_true = R_true[0].T @ R_true
    errors = rotation_error_deg(cameras.c2w[:, :3, :3], R_true)
    # The distorted views (1, 3) have no true camera; the undistorted one is pulled by them, a few degrees at 64 px
    # (tools/bench_toon.py measures it at 96 px).
    assert float(errors[2]) < 8.0 and float(errors.max()) < 20.0
    # The run folder exports to nerfstudio like a `splat4d run` folder: the warped views with the aligned cameras.
    main(["export", "nerfstudio", str(out), str(tmp_path / "ns")])
    frames = json.loads((tmp_path / "ns" / "transforms.json").read_text())["frames"]
    assert len(frames) == 4 and all((tmp_path / "ns" / f["file_path"]).is_file() for f in frames)


def test_toon_command_without_points_or_depths(toon_data, tmp_path):
    """No points.json, no depths/: features are matched and the offline depth backend estimates depth."""
    import shutil

    from splat4d.cli import main
    from splat4d.io.ply import read_ply

    bare = tmp_path / "bare"
    shutil.copytree(toon_data / "images", bare / "images")
    result = main(["toon", str(bare), "--out", str(tmp_path / "out"), "--align.steps", "60", "--warp.steps", "60",
                   "--fit.iterations", "4", "--video-frames", "1", "--no-progress", "--device", "cpu"])
    m = result.metrics
    assert m["correspondences"]["source"] == "feature matching" and m["correspondences"]["points"] >= 8
    assert m["residual_after_px"] < m["residual_before_px"]
    assert len(read_ply(tmp_path / "out" / "scene.ply").validate()) == m["gaussians"] > 0


def test_learned_depth_is_used_when_its_weights_are_here(monkeypatch):
    import splat4d.hub
    from splat4d.config import DepthConfig
    from splat4d.depth.marigold import DEFAULT_MODEL as MARIGOLD
    from splat4d.toon.pipeline import depth_config

    present = set()
    monkeypatch.setattr(splat4d.hub, "weights_present", lambda model: (model in present, "here"))
    assert depth_config(DepthConfig(), True).backend == "geometric"  # nothing here: the offline backend
    present.add(MARIGOLD)
    assert (depth_config(DepthConfig(), True).backend, depth_config(DepthConfig(), True).model) == ("marigold",
                                                                                                   MARIGOLD)
    assert depth_config(DepthConfig(), False).backend == "geometric"  # --no-learned-depth
    assert depth_config(DepthConfig(backend="shape-prior"), True).backend == "shape-prior"  # an explicit choice


def test_bad_inputs_give_one_clear_line(toon_data, tmp_path, capsys):
    import shutil

    from splat4d.cli import main

    def refuse(folder: Path) -> list[str]:
        with pytest.raises(SystemExit) as exit_:
            main(["toon", str(folder), "--out", str(tmp_path / "never"), "--no-progress"])
        assert exit_.value.code == 2
        return _error_lines(capsys)

    one = tmp_path / "one"
    (one / "images").mkdir(parents=True)
    shutil.copy(toon_data / "images" / "00000.png", one / "images")
    lines = refuse(one)
    assert len(lines) == 1 and lines[0].startswith("error:") and "splat4d run" in lines[0]

    broken = tmp_path / "broken"
    shutil.copytree(toon_data / "images", broken / "images")
    (broken / "points.json").write_text('{"points": [[{"x": 1, "y": 2}], ')
    lines = refuse(broken)
    assert len(lines) == 1 and "is not valid JSON" in lines[0]

    (broken / "points.json").write_text(json.dumps({"points": [[{"x": 1, "y": 2}]] * 3}))
    lines = refuse(broken)
    assert len(lines) == 1 and "'points' has 3 entries but images/ holds 4 images" in lines[0]

    # Two images, one sharing only 2 points: dropped with a message, then one image is too few.
    weak = tmp_path / "weak"
    (weak / "images").mkdir(parents=True)
    for name in ("00000.png", "00002.png"):
        shutil.copy(toon_data / "images" / name, weak / "images")
    data = json.loads((toon_data / "points.json").read_text())
    keep = [0, 2]
    shared = [j for j in range(len(data["points"][0])) if data["validPoints"][0][j] and data["validPoints"][2][j]]
    valid = [[j in shared[:2] for j in range(len(data["points"][0]))] for _ in keep]
    (weak / "points.json").write_text(json.dumps({"points": [data["points"][i] for i in keep], "validPoints": valid}))
    lines = refuse(weak)
    assert "dropping" in lines[0] and "shares 2 point(s)" in lines[0]
    assert lines[-1].startswith("error: only 0 of 2 images share at least 3 points")
    assert not (tmp_path / "never").exists()

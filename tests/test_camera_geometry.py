"""``Cameras`` geometry (project, unproject, frames) against a naive reference written out here with explicit 4x4 and
3x3 matrices per camera and per point, against gsplat's pure-torch projection of means, and the atomic JSON writes
of the nerfstudio export."""

import json
import math

import numpy as np
import pytest
import torch

from splat4d.types import Cameras

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.requires_cuda)]


def _random_cameras(n: int, seed: int = 0, width: int = 64, height: int = 48) -> Cameras:
    """n cameras at random poses (proper rotations), each with its own fx != fy and off-centre principal point."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=torch.float64))
    rot = q * torch.linalg.det(q).sign()[:, None, None]
    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    c2w[:, :3, :3] = rot
    c2w[:, :3, 3] = torch.randn(n, 3, generator=g, dtype=torch.float64)
    K = torch.zeros(n, 3, 3, dtype=torch.float64)
    K[:, 0, 0] = 50 + 20 * torch.rand(n, generator=g, dtype=torch.float64)
    K[:, 1, 1] = 45 + 20 * torch.rand(n, generator=g, dtype=torch.float64)
    K[:, 0, 2] = width / 2 + 3 * torch.randn(n, generator=g, dtype=torch.float64)
    K[:, 1, 2] = height / 2 + 3 * torch.randn(n, generator=g, dtype=torch.float64)
    K[:, 2, 2] = 1
    return Cameras(c2w, K, width, height)


def _points_in_front(cameras: Cameras, n: int, seed: int = 1) -> torch.Tensor:
    """(C, n, 3) world points 0.5-4 units in front of each camera, within about its field of view."""
    g = torch.Generator().manual_seed(seed)
    cam = torch.rand(len(cameras), n, 3, generator=g, dtype=torch.float64) * 2 - 1
    cam[..., 2] = 0.5 + 3.5 * (cam[..., 2] + 1) / 2
    cam[..., :2] *= cam[..., 2:] * 0.6
    return torch.einsum("cij,cnj->cni", cameras.c2w[:, :3, :3], cam) + cameras.c2w[:, None, :3, 3]


def _reference_project(c2w: np.ndarray, K: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, float]:
    """One camera, one point: homogeneous world point through inv(c2w), then K, then the perspective divide."""
    cam = np.linalg.inv(c2w) @ np.append(point, 1.0)
    pix = K @ cam[:3]
    return pix[:2] / pix[2], float(cam[2])


def _reference_unproject(c2w: np.ndarray, K: np.ndarray, uv: np.ndarray, depth: float) -> np.ndarray:
    """One camera, one pixel: the ray inv(K) (u, v, 1) scaled to camera z = depth, then c2w."""
    ray = np.linalg.inv(K) @ np.array([uv[0], uv[1], 1.0])
    return (c2w @ np.append(ray * depth / ray[2], 1.0))[:3]


@pytest.mark.parametrize("device", DEVICES)
def test_project_matches_the_naive_reference_for_shared_points(device):
    cameras = _random_cameras(3).to(device)
    points = _points_in_front(cameras, 20)[1]  # (N, 3): seen by camera 1, anywhere for the others
    uv, z = cameras.project(points.to(device))
    assert uv.shape == (3, 20, 2) and z.shape == (3, 20)
    for c in range(3):
        for n in range(20):
            ref_uv, ref_z = _reference_project(cameras.c2w[c].cpu().numpy(), cameras.K[c].cpu().numpy(),
                                               points[n].numpy())
            np.testing.assert_allclose(uv[c, n].cpu().numpy(), ref_uv, rtol=1e-9, atol=1e-9)
            assert z[c, n].item() == pytest.approx(ref_z, rel=1e-12, abs=1e-12)


def test_unproject_matches_the_naive_reference_and_inverts_project():
    cameras = _random_cameras(4, seed=3)
    points = _points_in_front(cameras, 30, seed=4)  # (C, N, 3): one set per camera
    uv, z = cameras.project(points)
    assert (z > 0).all()
    back = cameras.unproject(uv, z)
    torch.testing.assert_close(back, points, rtol=0, atol=1e-10)
    for c in range(4):
        for n in range(0, 30, 7):
            ref = _reference_unproject(cameras.c2w[c].numpy(), cameras.K[c].numpy(), uv[c, n].numpy(),
                                       z[c, n].item())
            np.testing.assert_allclose(back[c, n].numpy(), ref, rtol=0, atol=1e-10)
    # And the other way round: pixels at depths, out to the world and back.
    uv2, z2 = cameras.project(cameras.unproject(uv[0], z[0]))  # (N, 2), (N,) shared by all cameras
    torch.testing.assert_close(uv2, uv[:1].expand(4, -1, -1), rtol=0, atol=1e-9)
    torch.testing.assert_close(z2, z[:1].expand(4, -1), rtol=0, atol=1e-12)


def test_batched_cameras_equal_one_camera_at_a_time():
    cameras = _random_cameras(5, seed=5)
    per_camera = _points_in_front(cameras, 12, seed=6)
    uv, z = cameras.project(per_camera)
    world = cameras.unproject(uv, z)
    cam_frame = cameras.world_to_camera(per_camera)
    for c in range(5):
        uv_c, z_c = cameras[c].project(per_camera[c])
        torch.testing.assert_close(uv_c[0], uv[c], rtol=0, atol=0)
        torch.testing.assert_close(z_c[0], z[c], rtol=0, atol=0)
        torch.testing.assert_close(cameras[c].unproject(uv[c], z[c])[0], world[c], rtol=0, atol=0)
        torch.testing.assert_close(cameras[c].world_to_camera(per_camera[c])[0], cam_frame[c], rtol=0, atol=0)
    torch.testing.assert_close(cameras.camera_to_world(cam_frame), per_camera, rtol=0, atol=1e-12)


def test_pixel_centres_and_footprint():
    cameras = Cameras.from_fov(torch.eye(4, dtype=torch.float64), 8, 6, 60.0)
    rows, cols = np.mgrid[0:6, 0:8]
    centres = Cameras.pixel_centers(rows, cols)
    assert centres.shape == (6, 8, 2)
    assert centres[2, 5].tolist() == [5.5, 2.5]
    depth = torch.full((48,), 2.0, dtype=torch.float64)
    points = cameras.unproject(centres.reshape(-1, 2), depth)
    uv, z = cameras.project(points)
    assert torch.equal(uv[0].floor().long(), torch.from_numpy(np.stack([cols, rows], -1).reshape(-1, 2)))
    assert cameras.in_image(uv, z).all()
    # The optical axis lands on the principal point (the image centre from from_fov): the corner of 4 pixels.
    uv_axis, _ = cameras.project(torch.tensor([[0.0, 0.0, 3.0]], dtype=torch.float64))
    assert uv_axis[0, 0].tolist() == [4.0, 3.0]
    # Neighbouring pixel centres at depth d are d / fx apart.
    step = (points.reshape(6, 8, 3)[3, 4] - points.reshape(6, 8, 3)[3, 3]).norm()
    focal = 0.5 * 6 / math.tan(math.radians(30.0))
    assert step.item() == pytest.approx(2.0 / focal, rel=1e-12)
    assert cameras.pixel_footprint(depth)[0, 0].item() == pytest.approx(2.0 / focal, rel=1e-12)


def test_points_behind_the_camera_and_on_its_plane_are_not_in_the_image():
    cameras = Cameras.from_fov(torch.eye(4), 32, 32, 60.0)
    points = torch.tensor([[0.1, 0.1, 2.0], [0.1, 0.1, -2.0], [0.1, 0.1, 0.0], [0.0, 0.0, 1e-3], [5.0, 0.0, 1.0]])
    uv, z = cameras.project(points)
    assert z[0].tolist() == pytest.approx([2.0, -2.0, 0.0, 1e-3, 1.0])
    # Behind the camera the pinhole mirrors the point: (-0.1, -0.1) at z = 2, which lands in the image.
    assert (uv[0, 1] >= 0).all() and (uv[0, 1] < 32).all()
    assert cameras.in_image(uv, z)[0].tolist() == [True, False, False, True, False]
    assert not torch.isfinite(uv[0, 2]).all()  # on the camera plane: no pixel, and no exception either


def test_dtypes_promote_and_cameras_convert_before_inverting():
    cameras = _random_cameras(2, seed=7)
    points = _points_in_front(cameras, 10, seed=8)
    single = Cameras(cameras.c2w.float(), cameras.K.float(), cameras.width, cameras.height)
    uv32, z32 = single.project(points.float())
    assert uv32.dtype == torch.float32
    uv64, z64 = single.project(points)  # float32 cameras, float64 points: float64, inverted in float64
    assert uv64.dtype == torch.float64
    expected = Cameras(single.c2w.double(), single.K.double(), cameras.width, cameras.height).project(points)
    torch.testing.assert_close((uv64, z64), expected, rtol=0, atol=0)
    torch.testing.assert_close(uv32, uv64.float(), rtol=1e-4, atol=1e-3)


def test_project_gradients():
    cameras = _random_cameras(2, seed=9)
    points = _points_in_front(cameras, 3, seed=10).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: cameras.project(p)[0], (points,))
    uv, z = cameras.project(points.detach())
    depth = z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: cameras.unproject(uv, d), (depth,))


def test_agrees_with_gsplat_torch_projection_of_means():
    from gsplat.cuda import _torch_impl as gs_torch  # pure torch; never gsplat.cuda._wrapper (the CUDA build)

    cameras = _random_cameras(3, seed=11)
    means = _points_in_front(cameras, 40, seed=12)[0]  # in front of camera 0, anywhere for the others
    covars = torch.eye(3, dtype=torch.float64).expand(len(means), 3, 3) * 1e-4
    means_c, covars_c = gs_torch._world_to_cam(means, covars, cameras.viewmats())
    means2d, _ = gs_torch._persp_proj(means_c, covars_c, cameras.K, cameras.width, cameras.height)
    uv, z = cameras.project(means)
    torch.testing.assert_close(cameras.world_to_camera(means), means_c, rtol=0, atol=1e-12)
    torch.testing.assert_close(z, means_c[..., 2], rtol=0, atol=1e-12)
    front = z > 0.1  # gsplat's divide (K p) / z and ours (p / z) round differently; compare away from z = 0
    torch.testing.assert_close(uv[front], means2d[front], rtol=1e-9, atol=1e-9)


def test_view_cameras_and_transforms_json_are_written_atomically(tmp_path):
    from splat4d.nerfstudio.export import read_view_cameras, write_view_cameras

    cameras = _random_cameras(2)
    path = tmp_path / "cameras.json"
    write_view_cameras(path, cameras, ["a.png", "b.png"], [None, "b_mask.png"], [1.0, 0.5])
    first = path.read_bytes()
    back, views = read_view_cameras(path)
    torch.testing.assert_close(back.c2w, cameras.c2w)
    assert [v["mask"] for v in views] == [None, "b_mask.png"]
    with pytest.raises(TypeError):  # not JSON-serialisable: fails half-way through the write
        write_view_cameras(path, cameras, ["a.png", "b.png"], [object(), None], [1.0, 0.5])
    assert path.read_bytes() == first  # the old file stays whole
    assert [p.name for p in tmp_path.iterdir()] == ["cameras.json"]  # and no temporary file is left behind
    json.loads(first)

"""Camera paths: orbits look at their centre and close the loop; nerfstudio camera_path.json round trip."""

import json
import math

import pytest
import torch

from splat4d import paths
from splat4d.io.conventions import nerfstudio_c2w_to_opencv, opencv_c2w_to_nerfstudio


def project(cams, point):
    pc = (torch.linalg.inv(cams.c2w) @ torch.cat([point, torch.ones(1, dtype=point.dtype)]))[:, :3]
    uv = (cams.K @ pc[..., None])[..., 0]
    return uv[:, :2] / uv[:, 2:3], pc[:, 2]


@pytest.mark.parametrize("make", [paths.orbit, paths.spiral, paths.swing])
def test_paths_look_at_centre_from_the_radius(make):
    center = torch.tensor([0.3, -0.2, 1.5], dtype=torch.float64)
    path = make(center=center, radius=2.5, frames=37, width=64, height=48)
    cams = path.cameras
    uv, z = project(cams, center)
    torch.testing.assert_close(uv, torch.tensor([32.0, 24.0], dtype=torch.float64).expand(37, 2))
    torch.testing.assert_close(z, torch.full((37,), 2.5, dtype=torch.float64))
    R = cams.c2w[:, :3, :3]
    torch.testing.assert_close(R.transpose(1, 2) @ R, torch.eye(3, dtype=torch.float64).expand(37, 3, 3))
    assert torch.allclose(torch.linalg.det(R), torch.ones(37, dtype=torch.float64))
    # No roll: the camera's x axis stays horizontal (perpendicular to world up).
    assert (R[:, :, 0] @ torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)).abs().max() < 1e-12


def test_orbit_is_a_full_closed_turn():
    path = paths.orbit(radius=2.0, elevation_deg=30.0, frames=24)
    eyes = path.cameras.centers()
    heights = -eyes[:, 1]  # up is -y
    torch.testing.assert_close(heights, torch.full((24,), 2.0 * math.sin(math.radians(30)), dtype=torch.float64))
    step = (eyes[1:] - eyes[:-1]).norm(dim=1)
    closing = (eyes[0] - eyes[-1]).norm()
    torch.testing.assert_close(step, torch.full((23,), float(closing), dtype=torch.float64))  # uniform, loop closes
    az = torch.atan2(eyes[:, 0], -eyes[:, 2])
    steps = torch.remainder(torch.diff(torch.cat([az, az[:1]])), 2 * math.pi)  # 24 steps, the last one closing
    torch.testing.assert_close(steps, torch.full((24,), 2 * math.pi / 24, dtype=torch.float64))
    # Frame 0 is the front view (the input camera side, -z) and positive azimuth moves towards +x.
    assert eyes[0, 2] < 0 and abs(eyes[0, 0]) < 1e-12 and eyes[1, 0] > 0


def test_spiral_and_swing_ranges():
    sp = paths.spiral(radius=1.0, elevation_deg=10, elevation_amplitude_deg=20, frames=100)
    el = torch.rad2deg(torch.asin(-sp.cameras.centers()[:, 1]))
    assert abs(el.max() - 30) < 0.1 and abs(el.min() + 10) < 0.1
    sw = paths.swing(radius=1.0, elevation_deg=0, amplitude_deg=20, frames=100)
    az = torch.rad2deg(torch.atan2(sw.cameras.centers()[:, 0], -sw.cameras.centers()[:, 2]))
    assert abs(az.max() - 20) < 0.1 and abs(az.min() + 20) < 0.1


def test_conventions_invert_and_map_axes():
    path = paths.orbit(frames=5, elevation_deg=20)
    c2w = path.cameras.c2w
    ns = opencv_c2w_to_nerfstudio(c2w)
    torch.testing.assert_close(nerfstudio_c2w_to_opencv(ns), c2w)
    # OpenGL camera looks along -z: the scene centre (origin) is in front, i.e. at negative camera z.
    origin_cam = torch.linalg.inv(ns) @ torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    assert (origin_cam[:, 2] < 0).all()
    # Cameras above the object (elevation 20) are at positive nerfstudio Z (+Z up).
    assert (ns[:, 2, 3] > 0).all()


def test_camera_path_json_round_trip(tmp_path):
    path = paths.spiral(center=(0.1, 0.2, 0.3), radius=1.7, frames=9, width=80, height=60, fov_y_deg=35.0, fps=24)
    paths.write_nerfstudio_camera_path(path, tmp_path / "camera_path.json")
    data = json.loads((tmp_path / "camera_path.json").read_text())
    assert data["render_width"] == 80 and len(data["camera_path"][0]["camera_to_world"]) == 16
    back = paths.read_nerfstudio_camera_path(tmp_path / "camera_path.json")
    torch.testing.assert_close(back.cameras.c2w, path.cameras.c2w)
    torch.testing.assert_close(back.cameras.K, path.cameras.K)
    assert (back.cameras.width, back.cameras.height, back.fps) == (80, 60, 24)


def test_camera_path_bad_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a nerfstudio camera_path.json"):
        paths.read_nerfstudio_camera_path(tmp_path / "bad.json")


def test_frame_scene_ignores_stray_splats():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(10000, 3, generator=g) * 0.1 + torch.tensor([1.0, 2.0, 3.0])
    pts[:20] = 100.0  # a few far floaters
    center, dist = paths.frame_scene(pts, fov_y_deg=40)
    assert (center - torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).norm() < 0.02
    assert 0.5 < dist < 2.0

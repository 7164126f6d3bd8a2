"""Whole-scene similarity transforms: the moved scene seen from the moved cameras is the same picture (SH colour
rotation included), checked by rendering; quaternion helpers against rotation matrices."""

from __future__ import annotations

import pytest
import torch

from splat4d import paths
from splat4d.synthetic import random_scene
from splat4d.render import rasterize
from splat4d.render.reference import quat_to_rotmat
from splat4d.transform import quat_multiply, rotmat_to_quat, sh_rotation, transform_scene
from splat4d.types import Cameras


def _random_rotation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    return Q if torch.det(Q) > 0 else -Q


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rotmat_quat_round_trip_and_product(seed):
    R1, R2 = _random_rotation(seed), _random_rotation(seed + 10)
    q1, q2 = rotmat_to_quat(R1), rotmat_to_quat(R2)
    torch.testing.assert_close(quat_to_rotmat(q1[None])[0], R1, atol=1e-12, rtol=0)
    torch.testing.assert_close(quat_to_rotmat(quat_multiply(q1, q2)[None])[0], R1 @ R2, atol=1e-12, rtol=0)
    # A 180-degree turn (trace -1) goes through the other branch of Shepperd's method.
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(quat_to_rotmat(rotmat_to_quat(flip)[None])[0], flip, atol=1e-12, rtol=0)


def test_sh_rotation_is_orthogonal_block_diagonal():
    D = sh_rotation(_random_rotation(3), 3)
    torch.testing.assert_close(D @ D.T, torch.eye(16, dtype=torch.float64), atol=1e-9, rtol=0)
    assert D[0, 0] == pytest.approx(1.0) and D[0, 1:].abs().max() == 0  # DC untouched
    assert D[1:4, 4:].abs().max() == 0  # degrees never mix


def test_transformed_scene_from_transformed_cameras_renders_the_same():
    scene = random_scene(300, sh_degree=3, seed=1)
    R, t, s = _random_rotation(5), torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64), 1.7
    moved = transform_scene(scene, R, t, s)
    cams = paths.orbit(radius=3.0, frames=3, width=64, height=48, elevation_deg=25).cameras
    c2w = cams.c2w.double().clone()
    c2w[:, :3, :3] = R @ c2w[:, :3, :3]
    c2w[:, :3, 3] = s * c2w[:, :3, 3] @ R.T + t
    moved_cams = Cameras(c2w.float(), cams.K, cams.width, cams.height)
    a = rasterize(scene, cams, backend="cpu")
    b = rasterize(moved, moved_cams, backend="cpu")
    assert a.alpha.mean() > 0.05
    assert (a.rgb - b.rgb).abs().max() < 1e-4 and (a.alpha - b.alpha).abs().max() < 1e-4
    torch.testing.assert_close(b.depth, s * a.depth, atol=1e-3, rtol=1e-3)
    # Without the SH rotation the view-dependent colour is wrong: the check above can fail.
    unrotated = transform_scene(scene, R, t, s)
    unrotated.shN = scene.shN
    assert (rasterize(unrotated, moved_cams, backend="cpu").rgb - a.rgb).abs().max() > 0.05


def test_transform_rejects_reflections():
    with pytest.raises(ValueError, match="proper rotation"):
        transform_scene(random_scene(5, seed=0), torch.diag(torch.tensor([1.0, 1.0, -1.0])))

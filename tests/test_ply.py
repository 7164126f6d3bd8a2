"""INRIA .ply and .splat I/O: bit-exact round trips, files from gsplat and other tools, bad files."""

import numpy as np
import pytest
import torch

from splat4d.synthetic import random_scene
from splat4d.io.ply import PlyFormatError, read_ply, read_splat, write_ply, write_splat


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_ply_round_trip_bit_exact(tmp_path, degree):
    scene = random_scene(257, sh_degree=degree, seed=degree)
    write_ply(scene, tmp_path / "s.ply")
    back = read_ply(tmp_path / "s.ply")
    for key, value in scene.items():
        assert torch.equal(getattr(back, key), value), key
    assert back.sh_degree == degree


def test_ply_layout_matches_inria(tmp_path):
    scene = random_scene(5, sh_degree=1, seed=1)
    write_ply(scene, tmp_path / "s.ply")
    raw = (tmp_path / "s.ply").read_bytes()
    header, body = raw.split(b"end_header\n", 1)
    names = [line.split()[-1].decode() for line in header.splitlines() if line.startswith(b"property")]
    assert names == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(9)] + [
        "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert b"format binary_little_endian 1.0" in header
    rows = np.frombuffer(body, dtype="<f4").reshape(5, len(names))
    # f_rest is channel-major: f_rest[c*K + k] = coefficient k+1 of channel c (K = 3 at degree 1).
    assert np.array_equal(rows[:, 9 + 1 * 3 + 2], scene.shN[:, 2, 1].numpy())
    assert np.array_equal(rows[:, names.index("rot_0")], scene.quats[:, 0].numpy())  # w first
    assert np.array_equal(rows[:, names.index("opacity")], scene.opacities.numpy())  # logit, as stored


@pytest.mark.parametrize("degree", [0, 3])
def test_reads_gsplat_export(tmp_path, degree):
    from gsplat import export_splats

    scene = random_scene(100, sh_degree=degree, seed=5)
    export_splats(scene.means, scene.scales, scene.quats, scene.opacities, scene.sh0, scene.shN, format="ply",
                  save_to=str(tmp_path / "g.ply"))
    back = read_ply(tmp_path / "g.ply")  # gsplat's ply has no normals
    for key, value in scene.items():
        assert torch.equal(getattr(back, key), value), key


def test_reads_other_property_order_and_extras(tmp_path):
    from plyfile import PlyData, PlyElement

    scene = random_scene(20, seed=2)
    names = ["rot_3", "rot_2", "rot_1", "rot_0", "opacity", "red", "z", "y", "x", "scale_2", "scale_1", "scale_0",
             "f_dc_2", "f_dc_1", "f_dc_0"]
    data = np.zeros(20, dtype=[(n, "f4") for n in names])
    for i, n in enumerate(["x", "y", "z"]):
        data[n] = scene.means[:, i].numpy()
        data[f"scale_{i}"] = scene.scales[:, i].numpy()
        data[f"f_dc_{i}"] = scene.sh0[:, 0, i].numpy()
    for i in range(4):
        data[f"rot_{i}"] = scene.quats[:, i].numpy()
    data["opacity"] = scene.opacities.numpy()
    PlyData([PlyElement.describe(data, "vertex")], text=True).write(str(tmp_path / "ascii.ply"))
    back = read_ply(tmp_path / "ascii.ply")
    torch.testing.assert_close(back.means, scene.means)
    torch.testing.assert_close(back.quats, scene.quats)


def test_bad_files_give_clear_errors(tmp_path):
    not_ply = tmp_path / "x.ply"
    not_ply.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(PlyFormatError, match="not a PLY file"):
        read_ply(not_ply)
    with pytest.raises(FileNotFoundError):
        read_ply(tmp_path / "missing.ply")

    write_ply(random_scene(50, seed=1), tmp_path / "good.ply")
    raw = (tmp_path / "good.ply").read_bytes()
    (tmp_path / "trunc.ply").write_bytes(raw[: len(raw) - 100])
    with pytest.raises(PlyFormatError, match="truncated"):
        read_ply(tmp_path / "trunc.ply")

    mesh = tmp_path / "mesh.ply"
    mesh.write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
                    "end_header\n0 0 0\n")
    with pytest.raises(PlyFormatError, match="not a Gaussian-splat PLY: missing properties"):
        read_ply(mesh)


def test_nan_scene_is_not_written_and_old_file_survives(tmp_path):
    good = random_scene(10, seed=1)
    write_ply(good, tmp_path / "s.ply")
    before = (tmp_path / "s.ply").read_bytes()
    bad = random_scene(10, seed=2)
    bad.scales[4, 0] = float("inf")
    with pytest.raises(ValueError, match="scales"):
        write_ply(bad, tmp_path / "s.ply")
    assert (tmp_path / "s.ply").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.ply"]  # no temp files left behind


def test_splat_format(tmp_path):
    scene = random_scene(64, seed=3)
    write_splat(scene, tmp_path / "s.splat")
    raw = (tmp_path / "s.splat").read_bytes()
    assert len(raw) == 32 * 64
    back = read_splat(tmp_path / "s.splat")
    # Sorted by -(volume * opacity); match rows by position (float32 exact).
    order = [int((scene.means == m).all(1).nonzero()[0]) for m in back.means]
    assert sorted(order) == list(range(64))
    volume_opacity = torch.exp(scene.scales).prod(1) * torch.sigmoid(scene.opacities)
    assert (volume_opacity[order][:-1] >= volume_opacity[order][1:]).all()
    ref = scene.select(torch.tensor(order))
    torch.testing.assert_close(torch.exp(back.scales), torch.exp(ref.scales))
    torch.testing.assert_close(back.rgb_dc(), ref.rgb_dc(), atol=1 / 255 + 1e-6, rtol=0)
    torch.testing.assert_close(torch.sigmoid(back.opacities), torch.sigmoid(ref.opacities), atol=1 / 255 + 1e-4, rtol=0)
    q_ref = torch.nn.functional.normalize(ref.quats, dim=1)
    q_back = torch.nn.functional.normalize(back.quats, dim=1)
    assert ((q_ref * q_back).sum(1).abs() > 0.99).all()

""".spz (Niantic v3) and PlayCanvas compressed .ply: writers and readers against the formats' layouts and their
quantisation steps, axis conventions checked by rendering, and their errors through the CLI."""

import gzip
import math
import struct

import numpy as np
import pytest
import torch

from splat4d.cli import main
from splat4d.export import read_scene
from splat4d.io.compressed_ply import (CHUNK_PROPERTIES, CHUNK_SIZE, VERTEX_PROPERTIES, is_compressed_ply,
                                       morton_order, read_compressed_ply, write_compressed_ply)
from splat4d.io.ply import write_ply
from splat4d.io.spz import (COLOR_SCALE, SH_SIGNS_RDF_TO_RUB, SQRT1_2, decode_spz, encode_spz, read_spz, write_spz)
from splat4d.render import rasterize
from splat4d.synthetic import random_scene
from splat4d.types import SH_C0, Cameras, GaussianScene

ASSET = __import__("splat4d").__path__[0] + "/assets/example_scene.ply"


def bounded_scene(n: int = 700, degree: int = 3, seed: int = 1) -> GaussianScene:
    """A random scene inside every field's representable range (spz: |f_dc| < 3.3, |SH| < 0.9, log scale > -10)."""
    s = random_scene(n, sh_degree=degree, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    return GaussianScene(means=s.means * 1.7, scales=s.scales, quats=s.quats, opacities=s.opacities * 2,
                         sh0=(torch.rand(n, 1, 3, generator=g) * 2 - 1) * 3.0,
                         shN=(torch.rand(n, s.shN.shape[1], 3, generator=g) * 2 - 1) * 0.9)


def aligned_quats(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit quaternions with b's sign chosen to match a (q and -q are one rotation)."""
    a, b = torch.nn.functional.normalize(a.double(), dim=1), torch.nn.functional.normalize(b.double(), dim=1)
    return a, b * torch.sign((a * b).sum(1, keepdim=True))


def smallest_three_bounds(q: torch.Tensor, half_step: float) -> torch.Tensor:
    """Per-component error bound of a smallest-three code: ``half_step`` on the three stored components; the
    rebuilt largest one, sqrt(1 - sum), moves by at most sum(|2 q_i| h + h^2) / (|q_L| + |q_L'|) <= that / |q_L|."""
    mags = q.abs()
    largest = mags.max(1).values
    stored = mags.sum(1) - largest
    bound_largest = (2 * stored * half_step + 3 * half_step**2) / largest
    return torch.where(mags == largest[:, None], bound_largest[:, None], torch.full_like(q, half_step)) + 1e-6


# .spz --------------------------------------------------------------------------------------------------------------
def test_spz_round_trip_within_each_fields_quantisation_step(tmp_path):
    scene = bounded_scene()
    write_spz(scene, tmp_path / "s.spz")
    back = read_spz(tmp_path / "s.spz")
    assert len(back) == len(scene) and back.sh_degree == 3
    # The writer stores Gaussians in Morton order (of the RUB positions): undo it to compare one by one.
    order = torch.from_numpy(morton_order(scene.means.double().numpy() * np.array([1.0, -1.0, -1.0])))
    ref = scene.select(order)
    bits = 12
    assert (back.means - ref.means).abs().max() <= 0.5 / 2**bits + 1e-6  # 24-bit fixed point, 12 fractional bits
    assert (back.scales - ref.scales).abs().max() <= 0.5 / 16 + 1e-5  # (log s + 10) * 16 in 8 bits
    assert (back.opacities_act() - ref.opacities_act()).abs().max() <= 0.5 / 255 + 1e-6  # sigmoid in 8 bits
    assert (back.sh0 - ref.sh0).abs().max() <= 0.5 / (COLOR_SCALE * 255) + 1e-5  # f_dc * 0.15 * 255 + 127.5
    a, b = aligned_quats(ref.quats, back.quats)
    assert ((a - b).abs() <= smallest_three_bounds(a, 0.5 * SQRT1_2 / 511)).all()  # 9-bit magnitudes
    # SH: round(v * 128) snapped to 8-steps (degree 1: 5 bits) or 16-steps (degrees 2-3: 4 bits), over 128.
    err = (back.shN - ref.shN).abs()
    assert err[:, :3].max() <= (4 + 0.5) / 128 + 1e-6
    assert err[:, 3:].max() <= (8 + 0.5) / 128 + 1e-6
    assert err[:, :3].max() > 2 / 128  # it really is quantised that coarsely (the bounds are not loose by 4x)


def test_spz_header_and_one_gaussian_byte_by_byte(tmp_path):
    one = GaussianScene(means=torch.tensor([[1.0, 0.5, -0.25]]), scales=torch.full((1, 3), -4.0),
                        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]), opacities=torch.zeros(1),
                        sh0=torch.zeros(1, 1, 3), shN=torch.zeros(1, 3, 3))
    write_spz(one, tmp_path / "one.spz")
    raw = (tmp_path / "one.spz").read_bytes()
    assert raw[:2] == b"\x1f\x8b"  # one gzip stream
    data = gzip.decompress(raw)
    assert data[0:4] == bytes([0x4E, 0x47, 0x53, 0x50])  # magic 0x5053474e little endian: "NGSP"
    assert data[4:8] == bytes([3, 0, 0, 0])  # version 3
    assert data[8:12] == bytes([1, 0, 0, 0])  # one point
    assert data[12] == 1 and data[13] == 12 and data[14] == 0 and data[15] == 0  # degree, 12 fractional bits, flags
    body = data[16:]
    # RUB axes: (1, 0.5, -0.25) -> (1, -0.5, 0.25) -> 4096, -2048, 1024 as 24-bit little-endian two's complement.
    assert body[0:9] == bytes([0x00, 0x10, 0x00, 0x00, 0xF8, 0xFF, 0x00, 0x04, 0x00])
    assert body[9] == 128  # alpha: round(0.5 * 255) (halves away from zero, as std::round)
    assert body[10:13] == bytes([128, 128, 128])  # colour: f_dc 0 -> 127.5 -> 128
    assert body[13:16] == bytes([96, 96, 96])  # scale: (-4 + 10) * 16
    assert body[16:20] == bytes([0x00, 0x00, 0x00, 0xC0])  # identity: largest is w (index 3 of x,y,z,w), rest 0
    assert body[20:29] == bytes([128] * 9) and len(body) == 29  # 3 degree-1 coefficients x 3 channels


def test_spz_axes_are_rub_rendering_agrees_after_the_turn_about_x():
    """The file's RUB scene seen by the camera turned the same way renders the same image as the original: checks
    positions, rotations and SH signs together (an axis slip in any of them changes the picture)."""
    scene = bounded_scene(60, degree=3, seed=3)
    scene = GaussianScene(**{**scene.params(), "scales": scene.scales + 1.5, "shN": scene.shN * 0.5})
    rub = decode_spz(encode_spz(scene), to_splat4d_axes=False)
    order = torch.from_numpy(morton_order(scene.means.double().numpy() * np.array([1.0, -1.0, -1.0])))
    assert torch.allclose(rub.means, scene.select(order).means * torch.tensor([1.0, -1.0, -1.0]), atol=2e-4)
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([0.3, -0.2, -4.0])
    turn = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))
    cam = Cameras.from_fov(c2w, 48, 40, 45.0)
    cam_rub = Cameras.from_fov(turn @ c2w, 48, 40, 45.0)
    a = rasterize(scene.select(order), cam, backend="reference").rgb
    b = rasterize(rub, cam_rub, backend="reference").rgb
    c = rasterize(decode_spz(encode_spz(scene)), cam, backend="reference").rgb  # and back in splat4d's axes
    assert (a - b).abs().max() < 0.06 and (a - c).abs().max() < 0.06  # quantisation only
    assert (a - b).abs().mean() < 0.01
    wrong = rasterize(rub, cam, backend="reference").rgb  # the RUB scene in the unturned camera: a different image
    assert (a - wrong).abs().mean() > 0.05


def test_sh_sign_table_is_the_turn_about_x():
    from splat4d.render.reference import eval_sh

    g = torch.Generator().manual_seed(0)
    coeffs = torch.randn(5, 16, 3, generator=g, dtype=torch.float64)
    dirs = torch.nn.functional.normalize(torch.randn(5, 3, generator=g, dtype=torch.float64), dim=1)
    flipped = coeffs.clone()
    flipped[:, 1:] *= torch.from_numpy(SH_SIGNS_RDF_TO_RUB)[:, None]
    turn = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    assert torch.allclose(eval_sh(3, coeffs, dirs), eval_sh(3, flipped, dirs * turn), atol=1e-12)


def test_spz_is_much_smaller_than_the_ply(tmp_path):
    scene = read_scene(ASSET)  # the bundled example: 16,000 Gaussians, SH degree 0, written with normals
    write_spz(scene, tmp_path / "ex.spz")
    ply_size = __import__("os").path.getsize(ASSET)
    ratio0 = ply_size / (tmp_path / "ex.spz").stat().st_size
    # Degree 0 leaves 20 bytes a Gaussian before gzip (68 in the .ply); positions and rotations are most of it.
    assert ratio0 >= 6.5, ratio0
    # The same scene at SH degree 3 (what trained captures carry; the use case of .spz), its 45 higher-order
    # coefficients i.i.d. N(0, 0.1^2) -- spatially uncorrelated, so no easier for gzip than a trained scene's.
    g = torch.Generator().manual_seed(0)
    deg3 = GaussianScene(**{**scene.params(), "shN": 0.1 * torch.randn(len(scene), 15, 3, generator=g)})
    write_ply(deg3, tmp_path / "d3.ply")
    write_spz(deg3, tmp_path / "d3.spz")
    ratio3 = (tmp_path / "d3.ply").stat().st_size / (tmp_path / "d3.spz").stat().st_size
    assert ratio3 >= 8.0, ratio3


# Compressed .ply ---------------------------------------------------------------------------------------------------
def test_compressed_ply_round_trip_within_each_chunks_quantisation_step(tmp_path):
    scene = bounded_scene(CHUNK_SIZE * 3 + 77, degree=2, seed=5)  # a partial last chunk
    path = tmp_path / "c.ply"
    write_compressed_ply(scene, path)
    assert is_compressed_ply(path) and not is_compressed_ply(ASSET)
    back = read_scene(path)  # detected by its header, not its suffix
    assert len(back) == len(scene) and back.sh_degree == 2
    ref = scene.select(torch.from_numpy(morton_order(scene.means.double().numpy())))

    from plyfile import PlyData

    ply = PlyData.read(str(path))
    assert [e.name for e in ply.elements] == ["chunk", "vertex", "sh"]
    assert list(ply["chunk"].data.dtype.names) == list(CHUNK_PROPERTIES)
    assert all(t == "<f4" for t, _ in [(ply["chunk"].data.dtype[p].str, p) for p in CHUNK_PROPERTIES])
    assert list(ply["vertex"].data.dtype.names) == list(VERTEX_PROPERTIES)
    assert all(ply["vertex"].data.dtype[p].str == "<u4" for p in VERTEX_PROPERTIES)
    assert list(ply["sh"].data.dtype.names) == [f"f_rest_{i}" for i in range(24)]
    chunk = {p: torch.from_numpy(np.asarray(ply["chunk"].data[p], np.float64))[torch.arange(len(scene)) // 256]
             for p in CHUNK_PROPERTIES}
    # Chunk bounds hold their Gaussians.
    for axis, name in enumerate("xyz"):
        assert (ref.means[:, axis] >= chunk[f"min_{name}"] - 1e-6).all()
        assert (ref.means[:, axis] <= chunk[f"max_{name}"] + 1e-6).all()

    def span(lo, hi, names):
        return torch.stack([chunk[f"{hi}{a}"] - chunk[f"{lo}{a}"] for a in names], 1)

    steps = torch.tensor([2047.0, 1023.0, 2047.0])  # 11, 10, 11 bits
    pos_err = (back.means.double() - ref.means.double()).abs()
    assert (pos_err <= span("min_", "max_", "xyz") / steps / 2 + 1e-6).all()
    scale_err = (back.scales.double() - ref.scales.double()).abs()
    assert (scale_err <= span("min_scale_", "max_scale_", "xyz") / steps / 2 + 1e-5).all()
    rgb = lambda s: s.sh0[:, 0].double() * SH_C0 + 0.5  # noqa: E731
    assert ((rgb(back) - rgb(ref)).abs() <= span("min_", "max_", "rgb") / 255 / 2 + 1e-6).all()
    assert (back.opacities_act() - ref.opacities_act()).abs().max() <= 0.5 / 255 + 1e-6
    a, b = aligned_quats(ref.quats, back.quats)
    assert ((a - b).abs() <= smallest_three_bounds(a, 0.5 / 1023 / (math.sqrt(2) / 2))).all()  # 10-bit unorms
    assert (back.shN - ref.shN).abs().max() <= 8 / 256 / 2 + 1e-6  # 256 steps over [-4, 4], bucket centres


def test_compressed_ply_is_smaller_and_info_reads_every_written_format(tmp_path, capsys):
    scene = random_scene(600, sh_degree=1, seed=2)
    write_ply(scene, tmp_path / "a.ply")
    for fmt, name in (("spz", "a.spz"), ("compressed-ply", "a.compressed.ply"), ("splat", "a.splat"),
                      ("ply", "b.ply")):
        main(["export", fmt, str(tmp_path / "a.ply"), str(tmp_path / name)])
        summary = main(["info", str(tmp_path / name)])
        assert summary["gaussians"] == 600
        ref_min = scene.means.min(0).values
        assert np.allclose(summary["bounds_min"], ref_min.tolist(), atol=2e-3)  # each within its position step
    assert "wrote" in capsys.readouterr().out
    ply_size = (tmp_path / "a.ply").stat().st_size
    assert (tmp_path / "a.compressed.ply").stat().st_size < ply_size / 3  # 16 + 9 bytes vs 80 a Gaussian


# Errors through the CLI --------------------------------------------------------------------------------------------
def one_line_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_malformed_spz_and_non_gaussian_ply_give_one_clear_line(tmp_path, capsys):
    good = tmp_path / "g.spz"
    write_spz(random_scene(50, seed=1), good)
    raw = good.read_bytes()
    truncated = tmp_path / "t.spz"
    truncated.write_bytes(raw[: len(raw) // 2])
    assert "truncated" in one_line_error(capsys, ["info", str(truncated)])
    short_payload = tmp_path / "p.spz"  # valid gzip, payload cut short
    short_payload.write_bytes(gzip.compress(gzip.decompress(raw)[:-10]))
    assert "expected" in one_line_error(capsys, ["export", "ply", str(short_payload), str(tmp_path / "x.ply")])
    bad_magic = tmp_path / "m.spz"
    bad_magic.write_bytes(gzip.compress(struct.pack("<IIIBBBB", 0x12345678, 3, 0, 0, 12, 0, 0)))
    assert "bad magic" in one_line_error(capsys, ["info", str(bad_magic)])
    v4 = tmp_path / "v4.spz"
    v4.write_bytes(struct.pack("<IIIBBBB", 0x5053474E, 4, 0, 0, 12, 0, 0) + bytes(16))
    assert "not gzip" in one_line_error(capsys, ["info", str(v4)])
    mesh_ply = tmp_path / "mesh.ply"
    mesh_ply.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                         b"property float z\nend_header\n0 0 0\n")
    assert "not a Gaussian-splat PLY" in one_line_error(capsys, ["info", str(mesh_ply)])
    cut = tmp_path / "cut.ply"  # a compressed .ply cut short
    write_compressed_ply(random_scene(300, seed=1), cut)
    cut.write_bytes(cut.read_bytes()[:-100])
    assert "truncated" in one_line_error(capsys, ["info", str(cut)])
    assert not (tmp_path / "x.ply").exists()


def test_compressed_ply_without_colour_ranges_reads_absolute_colours(tmp_path):
    """Early SuperSplat files have 12 chunk floats (no min_r..max_b): their packed colours are absolute in [0, 1]."""
    from plyfile import PlyData, PlyElement

    scene = bounded_scene(300, degree=0, seed=4)
    full = tmp_path / "full.ply"
    write_compressed_ply(scene, full)
    ply = PlyData.read(str(full))
    chunk = ply["chunk"].data
    old_chunk = np.empty(len(chunk), dtype=[(p, "<f4") for p in CHUNK_PROPERTIES[:12]])
    for p in CHUNK_PROPERTIES[:12]:
        old_chunk[p] = chunk[p]
    vertex = ply["vertex"].data.copy()
    rgb = np.array([0.2, 0.5, 0.9])
    q = np.round(rgb * 255).astype(np.uint32)
    vertex["packed_color"] = (q[0] << 24) | (q[1] << 16) | (q[2] << 8) | (vertex["packed_color"] & 0xFF)
    old = tmp_path / "old.ply"
    PlyData([PlyElement.describe(old_chunk, "chunk"), PlyElement.describe(vertex, "vertex")]).write(str(old))
    back = read_scene(old)
    assert torch.allclose(back.rgb_dc(), torch.tensor(q / 255.0, dtype=torch.float32).expand(300, 3), atol=1e-6)
    assert torch.equal(back.means, read_scene(full).means)

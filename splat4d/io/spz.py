"""Niantic ``.spz`` (version 3, the version every web reader takes): one gzip stream holding a 16-byte header and
per-attribute arrays, about 10x smaller than the INRIA .ply.

Layout after gunzip (little endian), as nianticlabs/spz's ``load-spz.cc`` writes and reads it:

* header, 16 bytes: ``u32 magic 0x5053474e`` ("NGSP"), ``u32 version`` (3), ``u32 numPoints``, ``u8 shDegree``
  (0..3), ``u8 fractionalBits``, ``u8 flags`` (0x1 antialiased, 0x2 extensions follow: not written, refused on
  read), ``u8 reserved`` (0);
* positions: 3 x 24-bit two's-complement fixed point a point (x, y, z, each 3 bytes LE), value / 2^fractionalBits;
* alphas: u8 = round(sigmoid(opacity) * 255);
* colours: 3 x u8 = round(f_dc * 0.15 * 255 + 127.5) (the DC SH coefficient, not the colour; 0.15 < SH_C0 leaves
  room for colours outside [0, 1]);
* scales: 3 x u8 = round((log scale + 10) * 16);
* rotations: 4 bytes a point, "smallest three" of the unit quaternion in x, y, z, w order: a u32 LE whose top 2 bits
  are the index of the largest-magnitude component (left out; the quaternion is negated so it is positive), then the
  other three in index order, 10 bits each (highest bits first): a sign bit and a 9-bit magnitude
  round(|v| / sqrt(1/2) * 511);
* SH: per point, per coefficient (degree-1 ones first), per channel (r, g, b), u8 = round(v * 128) + 128 snapped to
  multiples of 8 for degree 1 (5 bits) and of 16 for degrees 2-3 (4 bits), read back as (u8 - 128) / 128.

Axes: .spz files are RUB (x right, y up, z back, OpenGL/three.js). splat4d's world is OpenCV-like (x right, y down,
z forward), so the writer maps (x, y, z) -> (x, -y, -z), a 180 degree rotation about x: quaternion (w, x, y, z) ->
(w, x, -y, -z), SH coefficients change sign where their basis polynomial is odd in y + z (``SH_SIGNS_RDF_TO_RUB``);
the reader maps back. Gaussians are written in Morton order (gzip then finds the repeated high bytes of nearby
positions); the order carries no meaning in a splat file.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from splat4d.io.ply import atomic_write_bytes
from splat4d.types import GaussianScene, num_sh_bases

SPZ_MAGIC = 0x5053474E
SPZ_VERSION = 3
HEADER = struct.Struct("<IIIBBBB")
COLOR_SCALE = 0.15
FLAG_ANTIALIASED = 0x1
FLAG_EXTENSIONS = 0x2
MAX_FRACTIONAL_BITS = 12
"""The reference writer's fixed choice (~0.24 mm steps in a metre-scale world); fewer when the scene is too large
for 24 bits at that precision."""
SQRT1_2 = float(np.sqrt(0.5))
SH_SIGNS_RDF_TO_RUB = np.array([
    -1, -1, 1,                  # degree 1: y, z, x
    -1, 1, 1, -1, 1,            # degree 2: xy, yz, 3z^2-1, xz, x^2-y^2
    -1, 1, -1, -1, 1, -1, 1,    # degree 3: y(3x^2-y^2), xyz, y(5z^2-1), z(5z^2-3), x(5z^2-1), z(x^2-y^2), x(x^2-3y^2)
], dtype=np.float64)
"""Sign of each higher-order real SH basis function (gsplat/INRIA order) under (x, y, z) -> (x, -y, -z): (-1) to the
power of its degree in y plus its degree in z."""
POSITION_SIGNS_RDF_TO_RUB = np.array([1.0, -1.0, -1.0])


class SpzFormatError(ValueError):
    """The file is not an .spz we can read."""


def sh_bits(coefficient: int) -> int:
    """Bits kept for higher-order SH coefficient ``coefficient`` (0-based, degree-1 ones first): 5 for degree 1,
    4 above (the reference writer's defaults)."""
    return 5 if coefficient < 3 else 4


def round_half_away(x: np.ndarray) -> np.ndarray:
    """C's ``std::round`` (halves away from zero; numpy's ``round`` takes halves to even), as the reference writer."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(round_half_away(x), 0, 255).astype(np.uint8)


def fractional_bits_for(means: np.ndarray) -> int:
    """The most fractional bits (<= 12) whose 24-bit fixed point holds every coordinate; ValueError if none does."""
    extent = float(np.abs(means).max()) if means.size else 0.0
    for bits in range(MAX_FRACTIONAL_BITS, -1, -1):
        if round(extent * 2**bits) <= 2**23 - 1:
            return bits
    raise ValueError(f"coordinates up to {extent:.3g} do not fit .spz's 24-bit fixed point")


def pack_quaternions(quats_xyzw: np.ndarray) -> np.ndarray:
    """(N, 4) quaternions in x, y, z, w order -> (N, 4) bytes of v3's smallest-three encoding."""
    q = quats_xyzw / np.linalg.norm(quats_xyzw, axis=1, keepdims=True)
    n = len(q)
    largest = np.abs(q).argmax(1)
    negate = q[np.arange(n), largest] < 0
    others = np.array([[j for j in range(4) if j != i] for i in range(4)])[largest]  # (N, 3) in index order
    vals = np.take_along_axis(q, others, 1)
    negbit = ((vals < 0) ^ negate[:, None]).astype(np.uint32)
    mag = np.minimum(np.floor(511.0 * np.abs(vals) / SQRT1_2 + 0.5), 511).astype(np.uint32)
    fields = (negbit << 9) | mag
    comp = (largest.astype(np.uint32) << 30) | (fields[:, 0] << 20) | (fields[:, 1] << 10) | fields[:, 2]
    return comp.astype("<u4").view(np.uint8).reshape(n, 4)


def unpack_quaternions(packed: np.ndarray) -> np.ndarray:
    """(N, 4) bytes of v3's smallest-three encoding -> (N, 4) unit quaternions in x, y, z, w order."""
    comp = np.ascontiguousarray(packed).view("<u4")[:, 0].astype(np.uint32)
    n = len(comp)
    largest = (comp >> 30).astype(np.int64)
    fields = np.stack([(comp >> 20) & 0x3FF, (comp >> 10) & 0x3FF, comp & 0x3FF], 1)
    vals = SQRT1_2 * (fields & 0x1FF) / 511.0 * np.where((fields >> 9) & 1, -1.0, 1.0)
    q = np.empty((n, 4))
    others = np.array([[j for j in range(4) if j != i] for i in range(4)])[largest]
    np.put_along_axis(q, others, vals, 1)
    q[np.arange(n), largest] = np.sqrt(np.clip(1.0 - (vals**2).sum(1), 0.0, None))
    return q


def quantise_sh(values: np.ndarray) -> np.ndarray:
    """(N, K, 3) SH rest coefficients -> u8 as the v3 writer stores them (bucketed per coefficient's bits)."""
    q = round_half_away(values * 128.0) + 128.0
    bucket = np.array([2 ** (8 - sh_bits(k)) for k in range(values.shape[1])], dtype=np.float64)[None, :, None]
    q = np.floor((q + bucket // 2) / bucket) * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def encode_spz(scene: GaussianScene, sort: bool = True) -> bytes:
    """The uncompressed .spz v3 payload (header + arrays) of ``scene``; gzip it to get the file."""
    from splat4d.io.compressed_ply import morton_order

    scene.validate()
    s = scene.detach().to("cpu")
    n, degree = len(s), s.sh_degree
    means = s.means.double().numpy() * POSITION_SIGNS_RDF_TO_RUB
    order = morton_order(means) if sort else np.arange(n)
    means = means[order]
    bits = fractional_bits_for(means)
    fixed = round_half_away(means * 2**bits).astype("<i4")
    positions = fixed.view(np.uint8).reshape(n, 3, 4)[:, :, :3]  # low three bytes of each little-endian int32
    alphas = _to_uint8(torch.sigmoid(s.opacities.double()).numpy()[order] * 255.0)
    colors = _to_uint8(s.sh0[:, 0].double().numpy()[order] * (COLOR_SCALE * 255.0) + 0.5 * 255.0)
    scales = _to_uint8((s.scales.double().numpy()[order] + 10.0) * 16.0)
    wxyz = s.quats.double().numpy()[order]
    xyzw = np.concatenate([wxyz[:, 1:] * POSITION_SIGNS_RDF_TO_RUB, wxyz[:, :1]], 1)
    rotations = pack_quaternions(xyzw)
    k = s.shN.shape[1]
    sh = quantise_sh(s.shN.double().numpy()[order] * SH_SIGNS_RDF_TO_RUB[:k, None]) if k else np.zeros((n, 0, 3))
    header = HEADER.pack(SPZ_MAGIC, SPZ_VERSION, n, degree, bits, 0, 0)
    return b"".join([header, positions.tobytes(), alphas.tobytes(), colors.tobytes(), scales.tobytes(),
                     rotations.tobytes(), sh.astype(np.uint8).tobytes()])


def write_spz(scene: GaussianScene, path: str | Path) -> None:
    """Write ``scene`` as a gzipped .spz v3 file (atomically; Morton-ordered)."""
    payload = gzip.compress(encode_spz(scene), compresslevel=9, mtime=0)
    atomic_write_bytes(path, lambda f: f.write(payload))


def decode_spz(data: bytes, name: str = ".spz", to_splat4d_axes: bool = True) -> GaussianScene:
    """A float32 ``GaussianScene`` from an uncompressed .spz payload (versions 1-3), in splat4d's world (or, with
    ``to_splat4d_axes=False``, in the file's own RUB axes)."""
    if len(data) < HEADER.size:
        raise SpzFormatError(f"{name}: {len(data)} bytes after gunzip, shorter than the 16-byte .spz header")
    magic, version, n, degree, bits, flags, _ = HEADER.unpack_from(data)
    if magic != SPZ_MAGIC:
        raise SpzFormatError(f"{name}: bad magic 0x{magic:08x} (an .spz starts with 0x{SPZ_MAGIC:08x}, 'NGSP')")
    if not 1 <= version <= 3:
        raise SpzFormatError(f"{name}: .spz version {version} is not supported (splat4d reads versions 1-3; "
                             "re-save it as version 3)")
    if degree > 3:
        raise SpzFormatError(f"{name}: SH degree {degree} is not supported (0-3)")
    if flags & FLAG_EXTENSIONS:
        raise SpzFormatError(f"{name}: .spz extensions (flag 0x2) are not supported")
    k = num_sh_bases(degree) - 1
    pos_bytes = 6 if version == 1 else 9
    rot_bytes = 4 if version >= 3 else 3
    sizes = [n * pos_bytes, n, 3 * n, 3 * n, n * rot_bytes, n * 3 * k]
    expected = HEADER.size + sum(sizes)
    if len(data) != expected:
        raise SpzFormatError(f"{name}: {len(data)} bytes after gunzip, expected {expected} for {n} points of SH "
                             f"degree {degree} (version {version}); the file is truncated or not an .spz")
    offsets = np.cumsum([HEADER.size] + sizes)
    raw = [np.frombuffer(data, np.uint8, size, int(offset)) for offset, size in zip(offsets[:-1], sizes)]
    pos, alphas, colors, scales, rots, sh = raw

    if version == 1:  # float16 positions (never released by Niantic, read for completeness)
        means = pos.view("<f2").reshape(n, 3).astype(np.float64)
    else:
        b = pos.reshape(n, 3, 3).astype(np.int32)
        fixed = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
        fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
        means = fixed.astype(np.float64) / 2**bits
    alpha = np.clip(alphas.astype(np.float64) / 255.0, 1e-6, 1 - 1e-6)
    f_dc = (colors.reshape(n, 3).astype(np.float64) / 255.0 - 0.5) / COLOR_SCALE
    log_scales = scales.reshape(n, 3).astype(np.float64) / 16.0 - 10.0
    if version >= 3:
        xyzw = unpack_quaternions(rots.reshape(n, 4))
    else:
        xyz = rots.reshape(n, 3).astype(np.float64) / 127.5 - 1.0
        xyzw = np.concatenate([xyz, np.sqrt(np.clip(1 - (xyz**2).sum(1, keepdims=True), 0, None))], 1)
    rest = (sh.reshape(n, k, 3).astype(np.float64) - 128.0) / 128.0
    wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], 1)
    if to_splat4d_axes:  # RUB -> splat4d's RDF: the same 180-degree turn about x (its own inverse)
        means = means * POSITION_SIGNS_RDF_TO_RUB
        wxyz[:, 1:] *= POSITION_SIGNS_RDF_TO_RUB
        rest = rest * SH_SIGNS_RDF_TO_RUB[:k, None]
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return GaussianScene(means=f32(means), scales=f32(log_scales), quats=f32(wxyz),
                         opacities=f32(np.log(alpha / (1 - alpha))), sh0=f32(f_dc)[:, None, :],
                         shN=f32(rest)).validate()


def read_spz(path: str | Path) -> GaussianScene:
    """Read a Niantic .spz file (gzip, versions 1-3) into splat4d's world (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such .spz file: {path}")
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        raise SpzFormatError(f"{path} is not an .spz file (not gzip-compressed: a v3 .spz is one gzip stream; "
                             "version 4 files are not supported)")
    try:
        data = gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise SpzFormatError(f"{path}: cannot gunzip ({err}); the file is truncated or corrupt") from err
    return decode_spz(data, str(path))

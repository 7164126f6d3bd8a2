"""PlayCanvas / SuperSplat "compressed .ply": 16 bytes a Gaussian (plus 72 bytes per 256) instead of 56-248.

Layout (binary little endian, three elements, what SuperSplat, the PlayCanvas engine and ``splat-transform`` read):

* ``element chunk`` (one per 256 Gaussians), 18 floats: ``min_x min_y min_z max_x max_y max_z``, ``min_scale_x..z
  max_scale_x..z`` (log scales, clamped to [-20, 20]), ``min_r min_g min_b max_r max_g max_b`` (DC colour
  ``0.5 + SH_C0 * f_dc``, not clamped).
* ``element vertex``, 4 uint32 a Gaussian: ``packed_position`` and ``packed_scale`` = 11/10/11 bits (x in the high
  bits) of the value normalised to its chunk's [min, max]; ``packed_rotation`` = 2 bits (which of rot_0..rot_3, i.e.
  w, x, y, z, is largest in magnitude; the quaternion is negated so it is positive and is left out) then the other
  three in order, 10 bits each, as ``v * sqrt(2)/2 + 0.5`` (|v| <= 1/sqrt(2)); ``packed_color`` = RGBA 8 bits each
  (R in the high byte), RGB normalised to the chunk's colour range, A = sigmoid(opacity).
  Unorm packing is ``floor(v * (2^bits - 1) + 0.5)``, unpacking ``q / (2^bits - 1)``.
* optional ``element sh`` (same count), uchar ``f_rest_0..f_rest_{3K-1}`` in INRIA's channel-major order, quantised
  as ``trunc((v / 8 + 0.5) * 256)`` clamped to [0, 255]; read back as ``((q + 0.5) / 256 - 0.5) * 8`` (q = 0 and
  255 map to -4 and +4).

Gaussians are written in Morton order (so a chunk is a small box and its ranges are tight); the world frame is the
same as the INRIA .ply's (splat4d's y-down OpenCV world), no axis change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from splat4d.io.ply import PlyFormatError, atomic_write_bytes
from splat4d.types import SH_C0, GaussianScene, sh_degree_from_bases

CHUNK_SIZE = 256
CHUNK_PROPERTIES = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                    "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z",
                    "min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
VERTEX_PROPERTIES = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
SCALE_CLAMP = 20.0
SH_RANGE = 8.0
"""SH rest coefficients are stored over [-SH_RANGE/2, SH_RANGE/2] in 256 steps."""


def morton_order(means: np.ndarray, bits: int = 10) -> np.ndarray:
    """Indices sorting points (N, 3) along a 3D Morton (Z-order) curve over their bounding box, ``bits`` per axis;
    stable, so equal codes keep their input order."""
    means = np.asarray(means, dtype=np.float64)
    if len(means) == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = means.min(0), means.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    cells = np.clip(((means - lo) / span * (2**bits - 1)).round(), 0, 2**bits - 1).astype(np.uint64)
    code = np.zeros(len(means), dtype=np.uint64)
    for bit in range(bits):
        for axis in range(3):
            code |= ((cells[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + (2 - axis))
    return np.argsort(code, kind="stable")


def pack_unorm(values: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return np.clip(np.floor(values * top + 0.5), 0, top).astype(np.uint32)


def unpack_unorm(packed: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return (packed & top).astype(np.float64) / top


def pack_111011(v: np.ndarray) -> np.ndarray:
    """(N, 3) values in [0, 1] as 11/10/11-bit unorms in one uint32 (first value in the high bits)."""
    return (pack_unorm(v[:, 0], 11) << 21) | (pack_unorm(v[:, 1], 10) << 11) | pack_unorm(v[:, 2], 11)


def unpack_111011(p: np.ndarray) -> np.ndarray:
    return np.stack([unpack_unorm(p >> 21, 11), unpack_unorm(p >> 11, 10), unpack_unorm(p, 11)], 1)


_OTHERS = np.array([[j for j in range(4) if j != i] for i in range(4)])
"""_OTHERS[i]: the three quaternion slots other than slot i, in order."""


def pack_rotation(quats: np.ndarray) -> np.ndarray:
    """(N, 4) quaternions (any scale; slot order kept) as 2+10+10+10 smallest-three uint32s."""
    q = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    largest = np.abs(q).argmax(1)
    q = np.where(q[np.arange(len(q)), largest][:, None] < 0, -q, q)
    others = np.take_along_axis(q, _OTHERS[largest], 1)
    packed = pack_unorm(others * (np.sqrt(2) / 2) + 0.5, 10)
    return (largest.astype(np.uint32) << 30) | (packed[:, 0] << 20) | (packed[:, 1] << 10) | packed[:, 2]


def unpack_rotation(p: np.ndarray) -> np.ndarray:
    others = (np.stack([unpack_unorm(p >> 20, 10), unpack_unorm(p >> 10, 10), unpack_unorm(p, 10)], 1) - 0.5) \
        / (np.sqrt(2) / 2)
    largest = (p >> 30).astype(np.int64)
    q = np.empty((len(p), 4))
    np.put_along_axis(q, _OTHERS[largest], others, 1)
    q[np.arange(len(p)), largest] = np.sqrt(np.clip(1.0 - (others**2).sum(1), 0.0, None))
    return q


def _chunk_ranges(values: np.ndarray, n_chunks: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-chunk (min, max) of (N, C) values (the last chunk may be partial)."""
    pad = n_chunks * CHUNK_SIZE - len(values)
    padded = np.concatenate([values, np.repeat(values[-1:], pad, 0)]) if pad else values
    blocks = padded.reshape(n_chunks, CHUNK_SIZE, -1)
    return blocks.min(1), blocks.max(1)


def _normalise(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(v - lo) / (hi - lo) per chunk row, 0 where the range is empty (as the reference writer does)."""
    rows = np.arange(len(values)) // CHUNK_SIZE
    lo, hi = lo[rows], hi[rows]
    span = hi - lo
    return np.where(span < 1e-5, 0.0, (np.clip(values, lo, hi) - lo) / np.where(span < 1e-5, 1.0, span))


def write_compressed_ply(scene: GaussianScene, path: str | Path) -> None:
    """Write ``scene`` as a PlayCanvas compressed .ply (Morton-ordered; atomically)."""
    scene.validate()
    s = scene.detach().to("cpu")
    n = len(s)
    if n == 0:
        raise ValueError(f"{path}: a compressed .ply needs at least one Gaussian")
    order = morton_order(s.means.double().numpy())
    means = s.means.double().numpy()[order]
    log_scales = s.scales.double().numpy()[order]
    quats = s.quats.double().numpy()[order]
    opacity = torch.sigmoid(s.opacities.double()).numpy()[order]
    rgb = (s.sh0[:, 0].double().numpy() * SH_C0 + 0.5)[order]
    k = s.shN.shape[1]
    rest = s.shN.transpose(1, 2).reshape(n, 3 * k).double().numpy()[order]  # channel-major, as f_rest_*

    n_chunks = -(-n // CHUNK_SIZE)
    pos_lo, pos_hi = _chunk_ranges(means, n_chunks)
    scale_lo, scale_hi = (np.clip(r, -SCALE_CLAMP, SCALE_CLAMP) for r in _chunk_ranges(log_scales, n_chunks))
    col_lo, col_hi = _chunk_ranges(rgb, n_chunks)
    chunks = np.concatenate([pos_lo, pos_hi, scale_lo, scale_hi, col_lo, col_hi], 1).astype("<f4")

    vertex = np.empty((n, 4), dtype="<u4")
    vertex[:, 0] = pack_111011(_normalise(means, pos_lo, pos_hi))
    vertex[:, 1] = pack_rotation(quats)
    vertex[:, 2] = pack_111011(_normalise(log_scales, scale_lo, scale_hi))
    c = _normalise(rgb, col_lo, col_hi)
    vertex[:, 3] = (pack_unorm(c[:, 0], 8) << 24) | (pack_unorm(c[:, 1], 8) << 16) | (pack_unorm(c[:, 2], 8) << 8) \
        | pack_unorm(opacity, 8)
    sh = np.clip(np.trunc((rest / SH_RANGE + 0.5) * 256), 0, 255).astype(np.uint8)

    lines = ["ply", "format binary_little_endian 1.0", "comment splat4d compressed ply (PlayCanvas layout)",
             f"element chunk {n_chunks}", *[f"property float {p}" for p in CHUNK_PROPERTIES],
             f"element vertex {n}", *[f"property uint {p}" for p in VERTEX_PROPERTIES]]
    if k:
        lines += [f"element sh {n}", *[f"property uchar f_rest_{i}" for i in range(3 * k)]]
    header = ("\n".join(lines + ["end_header"]) + "\n").encode("ascii")

    def write(f):
        f.write(header)
        f.write(chunks.tobytes())
        f.write(vertex.tobytes())
        if k:
            f.write(sh.tobytes())

    atomic_write_bytes(path, write)


def ply_header_elements(path: str | Path) -> dict[str, list[str]] | None:
    """{element name: property names} from a PLY file's header, or None when the file is not a PLY."""
    with Path(path).open("rb") as f:
        if f.read(3) != b"ply":
            return None
        f.seek(0)
        elements: dict[str, list[str]] = {}
        current = None
        for _ in range(10000):
            line = f.readline(4096)
            if not line:
                return elements
            words = line.decode("ascii", errors="replace").split()
            if not words:
                continue
            if words[0] == "end_header":
                return elements
            if words[0] == "element" and len(words) >= 2:
                current = words[1]
                elements[current] = []
            elif words[0] == "property" and current is not None and len(words) >= 3:
                elements[current].append(words[-1])
    return elements


def is_compressed_ply(path: str | Path) -> bool:
    """True when the PLY's header has PlayCanvas's ``chunk`` element and ``packed_*`` vertex properties."""
    elements = ply_header_elements(path) or {}
    return "chunk" in elements and set(VERTEX_PROPERTIES) <= set(elements.get("vertex", ()))


def read_compressed_ply(path: str | Path) -> GaussianScene:
    """Read a PlayCanvas compressed .ply into a float32 ``GaussianScene`` (in the file's order)."""
    path = Path(path)
    ply = _parse_ply(path)
    chunk, vertex = _checked_elements(ply, path)
    n = len(vertex)
    ranges = _chunk_ranges_per_gaussian(chunk, n)
    packed = {p: np.asarray(vertex[p], dtype=np.uint32) for p in VERTEX_PROPERTIES}
    means = _lerp(ranges, "min_", "max_", "xyz", unpack_111011(packed["packed_position"]))
    log_scales = _lerp(ranges, "min_scale_", "max_scale_", "xyz", unpack_111011(packed["packed_scale"]))
    col = packed["packed_color"]
    rgb = _lerp(ranges, "min_", "max_", "rgb", np.stack([unpack_unorm(col >> 24, 8), unpack_unorm(col >> 16, 8),
                                                         unpack_unorm(col >> 8, 8)], 1))
    alpha = np.clip(unpack_unorm(col, 8), 1e-6, 1 - 1e-6)
    quats = unpack_rotation(packed["packed_rotation"])
    rest = _read_sh_rest(ply, path, n)
    k = rest.shape[1] // 3
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return GaussianScene(
        means=f32(means), scales=f32(log_scales), quats=f32(quats),
        opacities=f32(np.log(alpha / (1 - alpha))), sh0=f32((rgb - 0.5) / SH_C0)[:, None, :],
        shN=f32(rest).reshape(n, 3, k).transpose(1, 2).contiguous(),
    ).validate()


def _parse_ply(path: Path):
    from plyfile import PlyData

    if not path.is_file():
        raise FileNotFoundError(f"no such PLY file: {path}")
    try:
        return PlyData.read(str(path))
    except Exception as err:
        raise PlyFormatError(f"{path}: cannot parse PLY ({type(err).__name__}: {err}); is the file truncated?") from err


def _checked_elements(ply, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``chunk`` and ``vertex`` rows, after checking they hold the properties and chunks the Gaussians need."""
    names = [e.name for e in ply.elements]
    if "chunk" not in names or "vertex" not in names:
        raise PlyFormatError(f"{path} is not a compressed .ply (needs 'chunk' and 'vertex' elements, has {names})")
    chunk, vertex = ply["chunk"].data, ply["vertex"].data
    missing = [p for p in CHUNK_PROPERTIES[:12] if p not in chunk.dtype.names] + \
              [p for p in VERTEX_PROPERTIES if p not in vertex.dtype.names]
    if missing:
        raise PlyFormatError(f"{path}: compressed .ply lacks properties {missing}")
    if len(chunk) * CHUNK_SIZE < len(vertex):
        raise PlyFormatError(f"{path}: {len(chunk)} chunks cannot hold {len(vertex)} Gaussians ({CHUNK_SIZE} a "
                             "chunk)")
    return chunk, vertex


def _chunk_ranges_per_gaussian(chunk: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """{chunk property: (n,) its value in each Gaussian's chunk}. The colour ranges are absent from early SuperSplat
    files, whose colours are absolute: then [0, 1]."""
    rows = np.arange(n) // CHUNK_SIZE
    ranges = {p: np.asarray(chunk[p], dtype=np.float64)[rows] for p in CHUNK_PROPERTIES if p in chunk.dtype.names}
    for p in CHUNK_PROPERTIES[12:]:
        ranges.setdefault(p, np.full(n, 0.0 if p.startswith("min") else 1.0))
    return ranges


def _lerp(ranges: dict[str, np.ndarray], prefix_lo: str, prefix_hi: str, axes: str, t: np.ndarray) -> np.ndarray:
    """(n, len(axes)) values a fraction ``t`` of the way through their chunk's ranges ``{prefix}{axis}``."""
    lo = np.stack([ranges[f"{prefix_lo}{a}"] for a in axes], 1)
    hi = np.stack([ranges[f"{prefix_hi}{a}"] for a in axes], 1)
    return lo * (1 - t) + hi * t


def _read_sh_rest(ply, path: Path, n: int) -> np.ndarray:
    """(n, 3K) the ``sh`` element's f_rest_* values (channel-major, as INRIA's), (n, 0) without one; K must be the
    coefficient count of an SH degree."""
    if "sh" in [e.name for e in ply.elements]:
        sh_el = ply["sh"].data
        rest_names = [f"f_rest_{i}" for i in range(len(sh_el.dtype.names))]
        if list(sh_el.dtype.names) != rest_names or len(sh_el) != n:
            raise PlyFormatError(f"{path}: the 'sh' element must hold {n} rows of f_rest_0..f_rest_{{3K-1}}")
        q = np.stack([np.asarray(sh_el[r], dtype=np.float64) for r in rest_names], 1)
        v = np.where(q == 0, 0.0, np.where(q == 255, 1.0, (q + 0.5) / 256))
        rest = (v - 0.5) * SH_RANGE
    else:
        rest = np.zeros((n, 0))
    if rest.shape[1] % 3:
        raise PlyFormatError(f"{path}: {rest.shape[1]} f_rest values is not a multiple of 3")
    try:
        sh_degree_from_bases(rest.shape[1] // 3)
    except ValueError as err:
        raise PlyFormatError(f"{path}: {err}") from err
    return rest

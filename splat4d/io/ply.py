"""Gaussian splat files: INRIA 3DGS ``.ply`` (read and write) and antimatter15 ``.splat`` (write, read for tests).

INRIA layout (binary little endian, one ``vertex`` element, float32, in this order):
``x y z nx ny nz f_dc_0..2 f_rest_0..f_rest_{3K-1} opacity scale_0..2 rot_0..3`` with K = (degree+1)^2 - 1,
``f_rest`` channel-major (``f_rest[c*K + k]`` is coefficient k+1 of channel c), opacity a logit, scales logs and
``rot`` = w, x, y, z. The reader goes by property name, so files from other tools (no normals, other property order,
degree 0..3, extra properties) load too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from splat4d.types import GaussianScene, sh_degree_from_bases


class PlyFormatError(ValueError):
    """The file is not a Gaussian-splat PLY we can read."""


def atomic_write_json(path: str | Path, data) -> None:
    """``data`` as indented JSON, written atomically."""
    import json

    text = json.dumps(data, indent=2)
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def atomic_write_bytes(path: str | Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file next to ``path`` and move it into place when it succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ply_property_names(num_rest_per_channel: int) -> list[str]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * num_rest_per_channel)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def scene_to_ply_array(scene: GaussianScene) -> np.ndarray:
    """Structured float32 array in INRIA layout (normals zero)."""
    scene.validate()
    n, k = len(scene), scene.shN.shape[1]
    names = ply_property_names(k)
    data = np.empty(n, dtype=[(name, "<f4") for name in names])
    cols = torch.cat(
        [
            scene.means,
            torch.zeros(n, 3, dtype=scene.means.dtype, device=scene.device),
            scene.sh0[:, 0, :],
            scene.shN.transpose(1, 2).reshape(n, 3 * k),  # channel-major
            scene.opacities[:, None],
            scene.scales,
            scene.quats,
        ],
        dim=1,
    ).detach().cpu().to(torch.float32).numpy()
    for i, name in enumerate(names):
        data[name] = cols[:, i]
    return data


def _ply_header(n: int, names: list[str]) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    lines += [f"property float {name}" for name in names]
    lines += ["end_header"]
    return ("\n".join(lines) + "\n").encode("ascii")


def write_ply(scene: GaussianScene, path: str | Path) -> None:
    """Write ``scene`` as an INRIA 3DGS ``.ply`` (atomically: a failed write leaves any old file intact)."""
    data = scene_to_ply_array(scene)
    header = _ply_header(len(data), list(data.dtype.names))

    def write(f):
        f.write(header)
        f.write(data.tobytes())

    atomic_write_bytes(path, write)


def read_ply(path: str | Path) -> GaussianScene:
    """Read a Gaussian-splat ``.ply`` (INRIA layout by property name) into a float32 ``GaussianScene``."""
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such PLY file: {path}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic[:3] != b"ply":
        raise PlyFormatError(f"{path} is not a PLY file (it does not start with 'ply')")
    try:
        ply = PlyData.read(str(path))
    except Exception as err:  # plyfile raises several types for malformed/truncated data
        raise PlyFormatError(f"{path}: cannot parse PLY ({type(err).__name__}: {err}); is the file truncated?") from err
    if "vertex" not in ply:
        raise PlyFormatError(f"{path} has no 'vertex' element")
    vertex = ply["vertex"].data
    names = set(vertex.dtype.names or ())
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [name for name in required if name not in names]
    if missing:
        raise PlyFormatError(
            f"{path} is a PLY but not a Gaussian-splat PLY: missing properties {missing} "
            "(expected the INRIA 3DGS layout: x y z f_dc_* f_rest_* opacity scale_* rot_*)"
        )
    rest_names = sorted((name for name in names if name.startswith("f_rest_")), key=lambda s: int(s[7:]))
    if len(rest_names) % 3:
        raise PlyFormatError(f"{path}: {len(rest_names)} f_rest properties is not a multiple of 3")
    k = len(rest_names) // 3
    try:
        sh_degree_from_bases(k)
    except ValueError as err:
        raise PlyFormatError(f"{path}: {err}") from err
    if [int(s[7:]) for s in rest_names] != list(range(3 * k)):
        raise PlyFormatError(f"{path}: f_rest properties are not numbered 0..{3 * k - 1}")

    def cols(keys: list[str]) -> torch.Tensor:
        if not keys:
            return torch.zeros(len(vertex), 0)
        return torch.from_numpy(np.stack([np.asarray(vertex[key], dtype=np.float32) for key in keys], axis=1))

    n = len(vertex)
    scene = GaussianScene(
        means=cols(["x", "y", "z"]),
        scales=cols(["scale_0", "scale_1", "scale_2"]),
        quats=cols(["rot_0", "rot_1", "rot_2", "rot_3"]),
        opacities=cols(["opacity"])[:, 0],
        sh0=cols(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :],
        shN=cols(rest_names).reshape(n, 3, k).transpose(1, 2).contiguous(),
    )
    try:
        return scene.validate()
    except ValueError as err:
        raise PlyFormatError(f"{path}: {err}") from err


# .splat (antimatter15) ------------------------------------------------------------------------------------------------

SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


def scene_to_splat_array(scene: GaussianScene) -> np.ndarray:
    """32 bytes per splat, sorted by -(scale volume * opacity) like antimatter15's converter; DC colour only."""
    scene.validate()
    s = scene.detach().to("cpu")
    scales = torch.exp(s.scales)
    opacity = torch.sigmoid(s.opacities)
    order = torch.argsort(-(scales.prod(dim=1) * opacity), stable=True)
    s = s.select(order)
    scales, opacity = scales[order], opacity[order]
    rgb = s.rgb_dc()
    rgba = torch.cat([rgb, opacity[:, None]], dim=1)
    quats = torch.nn.functional.normalize(s.quats, dim=1)
    out = np.empty(len(s), dtype=SPLAT_DTYPE)
    out["position"] = s.means.float().numpy()
    out["scale"] = scales.float().numpy()
    out["rgba"] = torch.clamp(torch.round(rgba * 255.0), 0, 255).to(torch.uint8).numpy()
    out["rot"] = torch.clamp(torch.round(quats * 128.0 + 128.0), 0, 255).to(torch.uint8).numpy()
    return out


def write_splat(scene: GaussianScene, path: str | Path) -> None:
    data = scene_to_splat_array(scene)
    atomic_write_bytes(path, lambda f: f.write(data.tobytes()))


def read_splat(path: str | Path) -> GaussianScene:
    """Read a ``.splat`` file (lossy format: 8-bit colour, opacity and rotation; DC colour only)."""
    raw = Path(path).read_bytes()
    if len(raw) % SPLAT_DTYPE.itemsize:
        raise ValueError(f"{path}: size {len(raw)} is not a multiple of 32 bytes; not a .splat file")
    data = np.frombuffer(raw, dtype=SPLAT_DTYPE)
    rgba = torch.from_numpy(data["rgba"].astype(np.float32) / 255.0)
    quats = torch.from_numpy((data["rot"].astype(np.float32) - 128.0) / 128.0)
    return GaussianScene.from_activated(
        means=torch.from_numpy(data["position"].copy()),
        scales=torch.from_numpy(data["scale"].copy()),
        rgb=rgba[:, :3],
        opacities=rgba[:, 3],
        quats=quats,
    )

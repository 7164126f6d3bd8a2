"""nerfstudio dataset export: ``transforms.json`` (OpenGL camera-to-world in a +Z-up world), images, masks and an
initial point cloud, so ``ns-train splatfacto --data OUT_DIR`` continues from splat4d's views and points."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from splat4d.io.conventions import nerfstudio_c2w_to_opencv, opencv_c2w_to_nerfstudio, points_to_nerfstudio
from splat4d.io.ply import atomic_write_bytes, read_ply
from splat4d.types import Cameras

CAMERAS_FILE = "cameras.json"
"""Written by every run into ``views/``: OpenCV c2w and K of each view image, in splat4d's world."""


def write_view_cameras(path: Path, cameras: Cameras, files: list[str], mask_files: list[str | None],
                       weights: list[float]) -> None:
    data = {
        "convention": "splat4d: OpenCV c2w (x right, y down, z forward), world y down",
        "width": cameras.width,
        "height": cameras.height,
        "views": [{"file": f, "mask": m, "weight": float(w), "c2w": cameras.c2w[i].double().tolist(),
                   "K": cameras.K[i].double().tolist()} for i, (f, m, w) in enumerate(zip(files, mask_files, weights))],
    }
    _write_json(path, data, indent=1)


def read_view_cameras(path: Path) -> tuple[Cameras, list[dict]]:
    data = json.loads(Path(path).read_text())
    views = data["views"]
    c2w = torch.tensor([v["c2w"] for v in views], dtype=torch.float64)
    K = torch.tensor([v["K"] for v in views], dtype=torch.float64)
    return Cameras(c2w, K, int(data["width"]), int(data["height"])), views


def transforms_dict(cameras: Cameras, image_files: list[str], mask_files: list[str | None] | None = None,
                    ply_file: str | None = None) -> dict:
    """nerfstudio ``transforms.json`` content for cameras sharing one image size."""
    K = cameras.K.double()
    shared = bool(torch.allclose(K, K[:1].expand_as(K)))
    c2w_ns = opencv_c2w_to_nerfstudio(cameras.c2w.double())
    meta: dict = {"camera_model": "OPENCV", "orientation_override": "none"}
    if shared:
        meta.update(fl_x=float(K[0, 0, 0]), fl_y=float(K[0, 1, 1]), cx=float(K[0, 0, 2]), cy=float(K[0, 1, 2]))
    meta.update(w=cameras.width, h=cameras.height, k1=0.0, k2=0.0, p1=0.0, p2=0.0)
    frames = []
    for i, name in enumerate(image_files):
        frame = {"file_path": name, "transform_matrix": c2w_ns[i].tolist()}
        if not shared:
            frame.update(fl_x=float(K[i, 0, 0]), fl_y=float(K[i, 1, 1]), cx=float(K[i, 0, 2]), cy=float(K[i, 1, 2]))
        if mask_files and mask_files[i]:
            frame["mask_path"] = mask_files[i]
        frames.append(frame)
    meta["frames"] = frames
    if ply_file:
        meta["ply_file_path"] = ply_file
    return meta


def read_transforms(path: Path) -> Cameras:
    """Cameras (splat4d convention) from a nerfstudio ``transforms.json`` (pinhole intrinsics)."""
    meta = json.loads(Path(path).read_text())
    frames = meta["frames"]

    def get(frame: dict, key: str) -> float:
        return float(frame[key] if key in frame else meta[key])

    c2w = nerfstudio_c2w_to_opencv(torch.tensor([f["transform_matrix"] for f in frames], dtype=torch.float64))
    K = torch.zeros(len(frames), 3, 3, dtype=torch.float64)
    for i, f in enumerate(frames):
        K[i] = torch.tensor([[get(f, "fl_x"), 0, get(f, "cx")], [0, get(f, "fl_y"), get(f, "cy")], [0, 0, 1]])
    return Cameras(c2w, K, int(get(frames[0], "w")), int(get(frames[0], "h")))


def write_point_cloud(path: Path, points: np.ndarray, colors: np.ndarray) -> None:
    """Binary PLY point cloud with uchar colours (what nerfstudio reads through open3d for ``ply_file_path``)."""
    from plyfile import PlyData, PlyElement

    data = np.empty(len(points), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                                        ("blue", "u1")])
    data["x"], data["y"], data["z"] = points[:, 0], points[:, 1], points[:, 2]
    rgb = np.clip(np.round(colors * 255), 0, 255).astype(np.uint8)
    data["red"], data["green"], data["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    PlyData([PlyElement.describe(data, "vertex")]).write(str(path))


def export_nerfstudio(run_dir: Path, out_dir: Path, max_points: int = 100_000) -> Path:
    """Turn a ``splat4d run`` folder into a nerfstudio dataset folder; returns the transforms.json path."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    cams_file = run_dir / "views" / CAMERAS_FILE
    if not cams_file.is_file():
        raise FileNotFoundError(f"{cams_file} not found: is {run_dir} the output folder of `splat4d run`?")
    cameras, views = read_view_cameras(cams_file)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(exist_ok=True)
    images, masks = [], []
    for i, view in enumerate(views):
        image_name = f"images/frame_{i + 1:05d}.png"
        shutil.copyfile(run_dir / "views" / view["file"], out_dir / image_name)
        images.append(image_name)
        if view.get("mask"):
            mask_name = f"masks/mask_{i + 1:05d}.png"
            _write_mask(run_dir / "views" / view["mask"], out_dir / mask_name)
            masks.append(mask_name)
        else:
            masks.append(None)
    ply_name = None
    if (run_dir / "scene.ply").is_file():
        scene = read_ply(run_dir / "scene.ply")
        keep = scene.opacities_act() > 0.1
        scene = scene.select(keep)
        if len(scene) > max_points:
            scene = scene.select(torch.randperm(len(scene), generator=torch.Generator().manual_seed(0))[:max_points])
        ply_name = "sparse_pc.ply"
        write_point_cloud(out_dir / ply_name, points_to_nerfstudio(scene.means.double()).numpy(),
                          scene.rgb_dc().numpy())
    meta = transforms_dict(cameras, images, masks, ply_name)
    path = out_dir / "transforms.json"
    _write_json(path, meta, indent=2)
    return path


def _write_json(path: Path, data: dict, indent: int) -> None:
    """Atomically (a temporary file moved into place): an interrupted run leaves the old file or none, never half
    of one."""
    atomic_write_bytes(path, lambda f: f.write(json.dumps(data, indent=indent).encode()))


def _write_mask(src: Path, dst: Path) -> None:
    """nerfstudio masks: single channel, 0 = ignore."""
    from PIL import Image

    with Image.open(src) as im:
        grey = np.asarray(im.convert("L"))
    Image.fromarray(np.where(grey > 127, 255, 0).astype(np.uint8), "L").save(dst)


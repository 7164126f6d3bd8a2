"""Optical-flow images: Middlebury ``.flo`` (the format of Sintel, FlyingChairs, RAFT's outputs) and ``.npy``
arrays (H, W, 2), in pixels (x right, y down)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FLO_MAGIC = 202021.25


def read_flow(path: Path) -> np.ndarray:
    """(H, W, 2) float32 flow from a .flo or .npy file; a clear ValueError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"flow file not found: {path}")
    if path.suffix.lower() == ".npy":
        flow = np.load(path, allow_pickle=False)
        if flow.ndim != 3 or flow.shape[2] != 2:
            raise ValueError(f"{path}: a flow array must be (H, W, 2), got {flow.shape}")
        return flow.astype(np.float32)
    if path.suffix.lower() == ".flo":
        data = path.read_bytes()
        if len(data) < 12 or np.frombuffer(data[:4], "<f4")[0] != FLO_MAGIC:
            raise ValueError(f"{path} is not a Middlebury .flo file (bad magic number)")
        w, h = (int(x) for x in np.frombuffer(data[4:12], "<i4"))
        if w <= 0 or h <= 0 or len(data) != 12 + 8 * w * h:
            raise ValueError(f"{path}: header says {w}x{h} but the file holds {len(data) - 12} bytes of flow")
        return np.frombuffer(data[12:], "<f4").reshape(h, w, 2).copy()
    raise ValueError(f"{path}: flow must be a .flo (Middlebury) or .npy (H, W, 2) file")


def write_flow(flow: np.ndarray, path: Path) -> None:
    """Middlebury .flo."""
    flow = np.asarray(flow, "<f4")
    h, w, _ = flow.shape
    Path(path).write_bytes(np.array([FLO_MAGIC], "<f4").tobytes() + np.array([w, h], "<i4").tobytes()
                           + flow.tobytes())


def resize_flow(flow: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resample a flow to (height, width), scaling the vectors with the image."""
    import cv2

    h, w = flow.shape[:2]
    out = cv2.resize(flow.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return out * np.array([width / w, height / h], np.float32)

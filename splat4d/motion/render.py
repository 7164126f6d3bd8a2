"""Bullet-time rendering of a motion scene: the camera moves along a path while time runs (or stands still)."""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from splat4d.motion import MotionScene
from splat4d.render import rasterize
from splat4d.types import CameraPath


def frame_times(path: CameraPath, num_frames: int, frozen_at: float | None = None) -> Tensor:
    """Scene time (in frames) for each camera of ``path``: ``path.times`` in [0, 1] if set, else time runs once
    from the first to the last frame; ``frozen_at`` freezes it (the classic bullet-time shot)."""
    n = len(path)
    if frozen_at is not None:
        return torch.full((n,), float(frozen_at))
    u = path.times if path.times is not None else torch.linspace(0, 1, n)
    return u.double() * (num_frames - 1)


@torch.no_grad()
def bullet_time_frames(motion: MotionScene, path: CameraPath, frozen_at: float | None = None,
                       background: Tensor | None = None, progress: bool = True) -> Iterator[Tensor]:
    from tqdm.auto import tqdm

    times = frame_times(path, motion.num_frames, frozen_at)
    bg = torch.ones(3) if background is None else background
    cams = path.cameras.to("cpu", torch.float32)
    for i in tqdm(range(len(path)), desc="bullet time", unit="frame", disable=not progress, leave=False):
        out = rasterize(motion.at(float(times[i])), cams[i], background=bg, check_finite=False)
        yield out.rgb[0].clamp(0, 1)

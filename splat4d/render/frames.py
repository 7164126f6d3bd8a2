"""Render a scene along a camera path, frame by frame (bounded memory), with a progress bar."""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from splat4d.render import Backend, backend_for, rasterize
from splat4d.types import CameraPath, GaussianScene


@torch.no_grad()
def render_frames(scene: GaussianScene, path: CameraPath, *, backend: Backend = "auto",
                  background: Tensor | None = None, sh_degree: int | None = None, progress: bool = True,
                  desc: str = "render") -> Iterator[Tensor]:
    """Yield (H, W, 3) float frames in [0, 1], one per camera of ``path``."""
    from tqdm.auto import tqdm

    scene = scene.detach()
    scene.validate()  # once, not per frame
    if background is None:
        background = torch.ones(3)
    dtype = scene.means.dtype
    cameras = path.cameras.to(scene.device, dtype)
    background = background.to(scene.device, dtype)
    if (backend if backend != "auto" else backend_for(scene.device)) == "cpu" and scene.device.type == "cpu":
        # Forward only: no autograd, activations once, the image composited and clamped in the tile kernel.
        from splat4d.render import _check_inputs
        from splat4d.render.cpu import FrameRenderer

        _check_inputs(scene, cameras, background, "cpu", check_finite=False)
        renderer = FrameRenderer(scene, cameras.width, cameras.height, sh_degree=sh_degree, background=background)
        for i in tqdm(range(len(cameras)), desc=desc, unit="frame", disable=not progress, leave=False):
            yield renderer.render(cameras[i])
        return
    for i in tqdm(range(len(cameras)), desc=desc, unit="frame", disable=not progress, leave=False):
        out = rasterize(scene, cameras[i], backend=backend, background=background, sh_degree=sh_degree,
                        check_finite=False)
        yield out.rgb[0].clamp(0.0, 1.0).cpu()

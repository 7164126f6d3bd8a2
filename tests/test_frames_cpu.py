"""The forward-only CPU frame path of videos (render_frames -> FrameRenderer, kernel render_rgb) against the
differentiable rasterizer it replaces there and against the brute-force reference."""

import pytest
import torch

from splat4d import paths
from splat4d.render import rasterize
from splat4d.render.cpu import FrameRenderer
from splat4d.render.frames import render_frames
from splat4d.synthetic import random_scene
from splat4d.types import CameraPath, GaussianScene


def _scene(degree, dtype=torch.float32, n=3000, seed=0):
    s = random_scene(n, sh_degree=degree, seed=seed, dtype=torch.float64, scale_range=(0.005, 0.06))
    s.shN.data = torch.randn(s.shN.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.3
    return GaussianScene(**{k: v.detach().to(dtype) for k, v in s.items()})


@pytest.mark.parametrize("degree,dtype,size", [(0, torch.float32, (64, 48)), (3, torch.float32, (61, 45)),
                                               (1, torch.float64, (37, 29))])
def test_frames_equal_the_differentiable_path(degree, dtype, size):
    scene = _scene(degree, dtype)
    width, height = size
    path = paths.orbit(radius=2.5, frames=5, width=width, height=height, elevation_deg=20.0)
    bg = torch.tensor([0.9, 0.4, 0.1])
    frames = list(render_frames(scene, path, background=bg, progress=False))
    cams = path.cameras.to("cpu", dtype)
    assert len(frames) == 5
    for i, frame in enumerate(frames):
        old = rasterize(scene, cams[i], backend="cpu", background=bg.to(dtype), check_finite=False)
        expected = old.rgb[0].clamp(0.0, 1.0)
        assert frame.shape == (height, width, 3) and frame.dtype == dtype
        assert old.alpha.max() > 0.5  # the scene is in view
        assert (frame - expected).abs().max() < (1e-6 if dtype == torch.float32 else 1e-12)


def test_frames_match_reference_renderer_and_sh_degree_cap():
    scene = _scene(2, torch.float64, n=300, seed=3)
    path = paths.orbit(radius=2.5, frames=3, width=40, height=32)
    cams = path.cameras.to("cpu", torch.float64)
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    for degree in (None, 1):
        renderer = FrameRenderer(scene, 40, 32, sh_degree=degree, background=bg)
        for i in range(3):
            ref = rasterize(scene, cams[i], backend="reference", background=bg, sh_degree=degree)
            assert (renderer.render(cams[i]) - ref.rgb[0].clamp(0, 1)).abs().max() < 1e-8


def test_frames_of_an_invisible_scene_are_the_background():
    scene = _scene(0, n=200)
    scene.means.data[:] = torch.tensor([0.0, 0.0, 50.0])  # far behind every orbit camera's near side
    path = paths.orbit(radius=2.5, frames=2, width=16, height=16)
    path = CameraPath(path.cameras, fps=path.fps)
    scene.opacities.data[:] = -10.0  # sigmoid(-10) < 1/255: nothing reaches the alpha threshold
    for frame in render_frames(scene, path, background=torch.tensor([0.1, 0.2, 1.5]), progress=False):
        torch.testing.assert_close(frame, torch.tensor([0.1, 0.2, 1.0]).expand(16, 16, 3))


def test_frames_reject_non_finite_cameras():
    scene = _scene(0, n=50)
    path = paths.orbit(radius=2.5, frames=2, width=16, height=16)
    path.cameras.c2w[1, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        list(render_frames(scene, path, progress=False))

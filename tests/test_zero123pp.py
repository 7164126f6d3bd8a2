"""Zero123++ prior: the real loading path (DiffusionPipeline.from_pretrained with a custom pipeline) with a tiny
stand-in pipeline written here, grid splitting, background removal and camera registration."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="pip install splat4d[diffusion]")

from splat4d.config import PriorConfig  # noqa: E402
from splat4d.init import input_camera  # noqa: E402
from splat4d.hub import ModelNotFoundError  # noqa: E402
from splat4d.prior.zero123pp import AZIMUTHS, ELEVATIONS, Zero123PlusPrior, split_grid  # noqa: E402
from splat4d.types import Views  # noqa: E402

FAKE_PIPELINE = '''
import numpy as np
import torch
from PIL import Image
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput


class FakeZero123Plus(DiffusionPipeline):
    """Stands in for Zero123++: a 2x3 grid of 320 px tiles, tile k = a disc of colour k on grey."""

    def __init__(self, scheduler):
        super().__init__()
        self.register_modules(scheduler=scheduler)

    @torch.no_grad()
    def __call__(self, image, num_inference_steps=2, generator=None):
        rng = torch.rand(1, generator=generator).item()  # honours the seed
        yy, xx = np.mgrid[0:320, 0:320] + 0.5
        disc = np.hypot(xx - 160, yy - 160) < 90
        grid = np.full((960, 640, 3), 128, np.uint8)
        for k in range(6):
            r, c = divmod(k, 2)
            tile = grid[r * 320:(r + 1) * 320, c * 320:(c + 1) * 320]
            tile[disc] = (40 * k, 255 - 40 * k, int(255 * rng))
        return BaseOutput(images=[Image.fromarray(grid)])
'''


@pytest.fixture(scope="module")
def fake_model(tmp_path_factory):
    from diffusers import DDIMScheduler

    root = tmp_path_factory.mktemp("z123")
    code = root / "code"
    code.mkdir()
    (code / "pipeline.py").write_text(FAKE_PIPELINE)
    import importlib.util

    spec = importlib.util.spec_from_file_location("fake_z123", code / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.FakeZero123Plus(scheduler=DDIMScheduler()).save_pretrained(root / "model")
    return root / "model", code


def test_grid_split_order():
    grid = np.zeros((6, 4, 3))
    for k in range(6):
        r, c = divmod(k, 2)
        grid[r * 2:(r + 1) * 2, c * 2:(c + 1) * 2] = k
    assert [int(t[0, 0, 0]) for t in split_grid(grid)] == [0, 1, 2, 3, 4, 5]


def test_zero123pp_views_registered_at_fixed_poses(fake_model):
    model, code = fake_model
    cfg = PriorConfig(backend="zero123pp", zero123_model=str(model), zero123_pipeline=str(code), steps=1)
    cam = input_camera(64, 40.0, 2.5)
    view = Views(torch.ones(1, 64, 64, 3), torch.zeros(1, 64, 64), cam)
    prior = Zero123PlusPrior(cfg, device="cpu", seed=1)
    views = prior(view, None, cam)
    assert views.images.shape == (6, 64, 64, 3) and views.masks.shape == (6, 64, 64)
    # Tile k carries colour k; its mask is the disc (radius 90/320 of the tile), background white.
    for k in range(6):
        centre = views.images[k, 32, 32]
        assert abs(float(centre[0]) - 40 * k / 255) < 0.02
        assert abs(float(views.masks[k].mean()) - math.pi * (90 / 320) ** 2) < 0.03
        assert torch.allclose(views.images[k, 0, 0], torch.ones(3))
    # Cameras: azimuth/elevation of Zero123++'s layout, looking at the origin, FoV 30 degrees.
    eyes = views.cameras.centers()
    az = torch.rad2deg(torch.atan2(eyes[:, 0], -eyes[:, 2])) % 360
    el = torch.rad2deg(torch.asin(-eyes[:, 1] / eyes.norm(dim=1)))
    torch.testing.assert_close(az, torch.tensor(AZIMUTHS, dtype=az.dtype), atol=1e-4, rtol=0)
    torch.testing.assert_close(el, torch.tensor(ELEVATIONS, dtype=el.dtype), atol=1e-4, rtol=0)
    torch.testing.assert_close(views.cameras.fov_y_deg(), torch.full((6,), 30.0, dtype=az.dtype))
    forward = views.cameras.c2w[:, :3, 2]
    torch.testing.assert_close((forward * -eyes).sum(1) / eyes.norm(dim=1), torch.ones(6, dtype=az.dtype))


def test_zero123pp_missing_weights():
    with pytest.raises(ModelNotFoundError, match="zero123-model"):
        Zero123PlusPrior(PriorConfig(backend="zero123pp", zero123_model="nobody/zero123-missing"), device="cpu")

"""Real checkpoints, opt-in: SPLAT4D_REAL_MODELS=1 python -m pytest tests/test_real_models.py

Needs the weights in the Hugging Face cache (`splat4d models` lists them and how to fetch them) and is meant for a
machine with a GPU; each test also skips when its weights are missing."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.real_models,
    pytest.mark.skipif(os.environ.get("SPLAT4D_REAL_MODELS") != "1",
                       reason="real-weight tests are opt-in: set SPLAT4D_REAL_MODELS=1"),
]

ASSETS = Path(__file__).resolve().parents[1] / "splat4d" / "assets"


def need(model: str) -> None:
    from splat4d.hub import weights_present

    if not weights_present(model)[0]:
        pytest.skip(f"{model} is not in the Hugging Face cache (huggingface-cli download {model})")


def working_image(resolution=256):
    from splat4d.config import SegmentConfig
    from splat4d.load import load_image
    from splat4d.segment import segment

    seg = segment(load_image(ASSETS / "coffee.jpg"), SegmentConfig(), resolution)
    return seg.image, seg.mask


@pytest.mark.parametrize("backend,model", [("transformers", "depth-anything/Depth-Anything-V2-Small-hf"),
                                           ("transformers", "apple/DepthPro-hf"),
                                           ("marigold", "prs-eth/marigold-depth-lcm-v1-0")])
def test_real_depth_models(backend, model):
    from splat4d.config import DepthConfig
    from splat4d.depth import make_depth_estimator
    from splat4d.init import align_depth

    need(model)
    image, mask = working_image()
    depth = make_depth_estimator(DepthConfig(backend=backend, model=model))(image, mask)
    fg = mask > 0.5
    assert torch.isfinite(depth.depth).all() and float(depth.depth[torch.from_numpy(fg)].std()) > 0
    z = align_depth(depth, mask, focal=351.7, distance=2.5)
    assert (z[fg] > 0).all()


def test_real_sd_inpaint_and_zero123pp():
    from splat4d.config import PriorConfig, RunConfig
    from splat4d.depth import make_depth_estimator
    from splat4d.init import init_scene
    from splat4d.prior import make_view_generator, target_cameras
    from splat4d.types import Views

    image, mask = working_image()
    cfg = RunConfig()
    depth = make_depth_estimator(cfg.depth)(image, mask)
    init = init_scene(image, mask, depth, cfg.init)
    view = Views(torch.from_numpy(image)[None], torch.from_numpy(mask)[None], init.camera)
    for prior in (PriorConfig(backend="sd-inpaint", ring_views=2, top_view=False),
                  PriorConfig(backend="zero123pp")):
        need(prior.model if prior.backend == "sd-inpaint" else prior.zero123_model)
        views = make_view_generator(prior)(view, init.scene, target_cameras(prior, init.camera, 2.5))
        coverage = views.masks.mean(dim=(1, 2))
        assert ((coverage > 0.05) & (coverage < 0.95)).all()
        assert np.isfinite(views.images.numpy()).all()

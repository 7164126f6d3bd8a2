"""The Stable Diffusion inpainting view prior through diffusers' real loading code, with a tiny random pipeline the
test builds (tiny UNet, VAE, CLIP text model and a tokenizer written here) and saves with save_pretrained."""

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="pip install splat4d[diffusion]")
pytest.importorskip("transformers", reason="pip install splat4d[diffusion]")

from splat4d.config import DepthConfig, InitConfig, PriorConfig  # noqa: E402
from splat4d.depth.geometric import GeometricDepth  # noqa: E402
from splat4d.init import init_scene  # noqa: E402
from splat4d.hub import ModelNotFoundError  # noqa: E402
from splat4d.prior import target_cameras  # noqa: E402
from splat4d.prior.sd_inpaint import SDInpaintPrior  # noqa: E402
from splat4d.render import rasterize  # noqa: E402
from splat4d.types import Views  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "splat4d" / "assets"


def tiny_inpaint_pipeline(folder: Path) -> Path:
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline

    from tests.helpers import tiny_diffusion_parts

    unet, vae, text, tokenizer = tiny_diffusion_parts(folder, unet_in_channels=9)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                          scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.save_pretrained(folder / "pipeline")
    return folder / "pipeline"


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    return tiny_inpaint_pipeline(tmp_path_factory.mktemp("tiny_sd"))


def disc_setup(res=48):
    yy, xx = np.mgrid[:res, :res] + 0.5
    inside = np.hypot(xx - res / 2, yy - res / 2) < res * 0.35
    image = np.where(inside[..., None], np.array([0.8, 0.3, 0.2], np.float32), np.float32(1.0)).astype(np.float32)
    mask = inside.astype(np.float32)
    depth = GeometricDepth(DepthConfig())(image, mask)
    # Front surface only: every other view has real disocclusions for the model to fill.
    init = init_scene(image, mask, depth, InitConfig(closed=False, solve_colors=0))
    view = Views(torch.from_numpy(image)[None], torch.from_numpy(mask)[None], init.camera)
    return init, view


def prior_config(model: Path, **kw) -> PriorConfig:
    return PriorConfig(backend="sd-inpaint", model=str(model), ring_views=3, top_view=False, steps=2,
                       sd_resolution=64, **kw)


def test_inpaints_only_holes_progressively_and_reproducibly(tiny_pipeline):
    init, view = disc_setup()
    cfg = prior_config(tiny_pipeline)
    targets = target_cameras(cfg, init.camera, 2.5)
    prior = SDInpaintPrior(cfg, device="cpu", seed=3)
    views = prior(view, init.scene, targets)
    assert views.images.shape == (3, 48, 48, 3) and views.images.dtype == torch.float32
    assert views.images.min() >= 0 and views.images.max() <= 1
    assert views.masks.shape == (3, 48, 48) and views.weights.shape == (3,)
    # The view nearest the input is rendered from the initial scene: outside the holes it is exactly that render.
    forward = init.camera.c2w[0, :3, 2]
    first = max(range(3), key=lambda i: float(torch.dot(forward, targets.c2w[i, :3, 2])))
    plain = rasterize(init.scene, targets[first], background=torch.ones(3)).rgb[0].clamp(0, 1)
    holes = views.confidence[first] < 1
    assert holes.any(), "a front-only scene seen from the side must have holes to fill"
    assert torch.equal(views.images[first][~holes], plain[~holes])
    assert not torch.allclose(views.images[first][holes], plain[holes])
    # Progressive: filled pixels were lifted into the scene for the next views.
    assert len(prior.final_scene) > len(init.scene)
    again = SDInpaintPrior(cfg, device="cpu", seed=3)(view, init.scene, targets)
    assert torch.equal(again.images, views.images)


def test_pipeline_end_to_end_with_sd_prior(tiny_pipeline, tmp_path):
    from splat4d.config import FitConfig, LoadConfig, RunConfig, VideoConfig
    from splat4d.pipeline import run

    cfg = RunConfig(input=ASSETS / "coffee.jpg", out=tmp_path / "run", progress=False, device="cpu",
                    load=LoadConfig(resolution=48), prior=prior_config(tiny_pipeline),
                    fit=FitConfig(iterations=8, densify=False), video=VideoConfig(frames=2, size=32))
    result = run(cfg)
    assert result.metrics["generated_views"] == 3 and (tmp_path / "run" / "scene.ply").is_file()


def test_missing_inpainting_weights(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        SDInpaintPrior(PriorConfig(backend="sd-inpaint", model="someone/missing-inpainting"), device="cpu")
    message = str(info.value)
    assert "someone/missing-inpainting" in message and "huggingface-cli download" in message
    assert "--prior.backend warp" in message and "--prior.download" in message

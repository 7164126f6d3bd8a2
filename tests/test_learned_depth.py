"""The transformers depth backend through its real loading code, with tiny random models the tests build."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="pip install splat4d[diffusion]")

from splat4d.depth.transformers_depth import TransformersDepth  # noqa: E402
from splat4d.hub import ModelNotFoundError  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "splat4d" / "assets"


def tiny_depth_anything(folder: Path, estimation_type: str = "relative") -> Path:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            image_size=56, patch_size=14, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, patch_size=14,
                                 depth_estimation_type=estimation_type, max_depth=10)
    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():  # random init gives ~0 through the final ReLU: bias the head so outputs vary
        model.head.conv3.bias.fill_(0.5)
    model.save_pretrained(folder)
    DPTImageProcessor(do_resize=True, size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny_depth_anything(tmp_path_factory.mktemp("tiny_da"))


def test_relative_model_gives_masked_disparity(tiny_model):
    g = np.random.default_rng(0)
    image = g.random((40, 52, 3)).astype(np.float32)
    mask = np.zeros((40, 52), np.float32)
    mask[8:30, 10:40] = 1.0
    depth = TransformersDepth(str(tiny_model), device="cpu")(image, mask)
    assert depth.kind == "disparity" and depth.depth.shape == (40, 52) and depth.depth.dtype == torch.float32
    assert torch.isfinite(depth.depth).all()
    assert (depth.depth[mask == 0] == 0).all() and depth.depth[mask == 1].abs().sum() > 0
    assert torch.equal(depth.confidence, torch.from_numpy(mask))


def test_metric_model_is_scaled_to_the_camera_distance(tmp_path):
    folder = tiny_depth_anything(tmp_path / "metric", "metric")
    image = np.random.default_rng(1).random((32, 32, 3)).astype(np.float32)
    mask = np.ones((32, 32), np.float32)
    depth = TransformersDepth(str(folder), device="cpu", distance=2.5)(image, mask)
    assert depth.kind == "metric"
    assert float(depth.depth.median()) == pytest.approx(2.5, rel=0.05)


def test_pipeline_runs_with_the_learned_backend(tiny_model, tmp_path):
    from splat4d.config import DepthConfig, FitConfig, LoadConfig, PriorConfig, RunConfig, VideoConfig
    from splat4d.io.ply import read_ply
    from splat4d.pipeline import run

    cfg = RunConfig(input=ASSETS / "coffee.jpg", out=tmp_path / "run", progress=False, device="cpu",
                    load=LoadConfig(resolution=48), depth=DepthConfig(backend="transformers", model=str(tiny_model)),
                    prior=PriorConfig(ring_views=2), fit=FitConfig(iterations=10, densify=False),
                    video=VideoConfig(frames=2, size=32))
    result = run(cfg)
    assert len(read_ply(tmp_path / "run" / "scene.ply")) == result.metrics["gaussians_final"] > 500
    assert result.metrics["input_psnr"] > 25


def test_missing_weights_give_one_clear_paragraph(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        TransformersDepth("depth-anything/Depth-Anything-V2-Small-hf-not-here", device="cpu")
    message = str(info.value)
    assert "Depth-Anything-V2-Small-hf-not-here" in message and "huggingface-cli download" in message
    assert "--depth.backend geometric" in message and "--depth.download" in message and "\n" not in message
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        TransformersDepth(str(tmp_path / "nothing"), device="cpu")
    res = subprocess.run([sys.executable, "-m", "splat4d", "run", str(ASSETS / "coffee.jpg"), "--out",
                          str(tmp_path / "cli"), "--depth.backend", "transformers", "--depth.model", "nobody/none",
                          "--no-progress"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "nobody/none" in res.stderr
    assert not (tmp_path / "cli" / "scene.ply").exists()


def test_models_command_reports_presence(tiny_model, capsys):
    from splat4d.cli import main

    rows = main(["models", "--depth-model", str(tiny_model)])
    by_model = {r["model"]: r for r in rows}
    assert by_model[str(tiny_model)]["present"] is True
    assert by_model["(built in)"]["present"] is True
    out = capsys.readouterr().out
    assert "geometric" in out
    # every packaged network the default depth stage may run is listed, hash-checked, with its part
    from splat4d.shape.network import CHECK_WEIGHTS_PATH, FRAME_WEIGHTS_PATH, STEEP_WEIGHTS_PATH, WEIGHTS_PATH

    for path in (WEIGHTS_PATH, FRAME_WEIGHTS_PATH, STEEP_WEIGHTS_PATH, CHECK_WEIGHTS_PATH):
        row = by_model[f"(packaged) {path.name}"]
        assert row["present"] is True and row["where"] == str(path) and row["note"], row
        assert f"(packaged) {path.name}" in out
    if not all(r["present"] for r in rows):  # the default hub models are not cached on this machine
        assert "huggingface-cli download" in out


def tiny_marigold(folder: Path) -> Path:
    pytest.importorskip("diffusers")
    from diffusers import LCMScheduler, MarigoldDepthPipeline

    from tests.helpers import tiny_diffusion_parts

    unet, vae, text, tokenizer = tiny_diffusion_parts(folder, unet_in_channels=8)
    scheduler = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                             set_alpha_to_one=False, steps_offset=1, timestep_spacing="trailing")
    pipe = MarigoldDepthPipeline(unet=unet, vae=vae, scheduler=scheduler, text_encoder=text, tokenizer=tokenizer,
                                 prediction_type="depth", scale_invariant=True, shift_invariant=True,
                                 default_denoising_steps=1, default_processing_resolution=32)
    pipe.save_pretrained(folder / "marigold")
    return folder / "marigold"


def test_marigold_backend_with_a_tiny_pipeline(tmp_path):
    from splat4d.config import DepthConfig
    from splat4d.depth import make_depth_estimator

    folder = tiny_marigold(tmp_path)
    estimator = make_depth_estimator(DepthConfig(backend="marigold", model=str(folder), steps=1), device="cpu")
    image = np.random.default_rng(2).random((40, 36, 3)).astype(np.float32)
    mask = np.zeros((40, 36), np.float32)
    mask[5:35, 6:30] = 1
    depth = estimator(image, mask)
    assert depth.kind == "relative" and depth.depth.shape == (40, 36) and torch.isfinite(depth.depth).all()
    inside = depth.depth[mask == 1]
    assert (depth.depth[mask == 0] == 0).all() and inside.min() >= 0 and inside.max() <= 1 and inside.std() > 0
    again = make_depth_estimator(DepthConfig(backend="marigold", model=str(folder), steps=1), device="cpu")
    assert torch.equal(again(image, mask).depth, depth.depth)  # seeded


def tiny_depth_pro(folder: Path) -> Path:
    import json

    from transformers import DepthProConfig, DepthProForDepthEstimation, Dinov2Config

    def backbone():
        return Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            image_size=32, patch_size=8)

    config = DepthProConfig(fusion_hidden_size=16, patch_size=32, intermediate_hook_ids=[1, 0],
                            intermediate_feature_dims=[16, 16], scaled_images_ratios=[0.5, 1.0],
                            scaled_images_overlap_ratios=[0.0, 0.25], scaled_images_feature_dims=[16, 16],
                            use_fov_model=True, num_fov_head_layers=1, image_model_config=backbone(),
                            patch_model_config=backbone(), fov_model_config=backbone())
    torch.manual_seed(0)
    model = DepthProForDepthEstimation(config).eval()
    with torch.no_grad():  # a plausible field of view from the random head: ~60 degrees
        model.fov_model.head.layers[2].weight.zero_()
        model.fov_model.head.layers[2].bias.fill_(60.0)
    model.save_pretrained(folder)
    # Depth Pro's processor needs torchvision; its config is all the fallback processor reads.
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "DepthProImageProcessor", "size": {"height": 64, "width": 64}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    return folder


def test_depth_pro_metric_depth_and_field_of_view(tmp_path):
    from splat4d.config import InitConfig
    from splat4d.init import init_scene

    folder = tiny_depth_pro(tmp_path / "depth_pro")
    image = np.random.default_rng(3).random((48, 48, 3)).astype(np.float32)
    mask = np.zeros((48, 48), np.float32)
    mask[8:40, 10:38] = 1
    depth = TransformersDepth(str(folder), device="cpu", distance=2.5)(image, mask)
    assert depth.kind == "metric" and depth.fov_deg == pytest.approx(60.0, rel=1e-4)
    assert float(depth.depth[mask == 1].median()) == pytest.approx(2.5, rel=0.05)
    init = init_scene(image, mask, depth, InitConfig(solve_colors=0))
    assert float(init.camera.fov_y_deg()[0]) == pytest.approx(depth.fov_deg, rel=1e-4)
    fixed = init_scene(image, mask, depth, InitConfig(solve_colors=0, use_depth_fov=False, fov_deg=40.0))
    assert float(fixed.camera.fov_y_deg()[0]) == pytest.approx(40.0, rel=1e-4)

"""The nerfstudio plug-in, run through nerfstudio itself: entry points discovered, our config.yml + checkpoint loaded
by ``eval_setup`` (what ns-viewer / ns-render do), and the Gaussians it holds, seen from the cameras its dataparser
produced, render the same images as our scene from our cameras.

nerfstudio 1.1.5 pins gsplat 1.4.0 / viser 0.2.7 and needs torchvision, so it lives in its own environment
(`make test-nerfstudio`, see the README); everywhere else these tests skip. Two CPU-only adjustments: splatfacto's
seed-point init calls ``.cuda()``, so the loaded config uses random init (the checkpoint replaces every parameter
anyway), and torchmetrics' LPIPS downloads AlexNet weights on construction, which an offline machine cannot: it is
replaced by an empty module (a metric, never used here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

nerfstudio = pytest.importorskip(
    "nerfstudio", reason="nerfstudio is not installed: it pins gsplat 1.4.0 / viser 0.2.7 and needs torchvision, so "
    "it gets its own environment (make test-nerfstudio)")


def _run_folder(tmp_path: Path):
    """A `splat4d run`-shaped folder (scene.ply, views/ + cameras.json) of a random SH-degree-2 scene."""
    from PIL import Image

    from splat4d import paths
    from splat4d.synthetic import random_scene
    from splat4d.io.ply import read_ply, write_ply
    from splat4d.nerfstudio.export import write_view_cameras
    from splat4d.render import rasterize

    run = tmp_path / "run"
    (run / "views").mkdir(parents=True)
    write_ply(random_scene(200, sh_degree=2, seed=0), run / "scene.ply")
    scene = read_ply(run / "scene.ply")
    cams = paths.orbit(radius=3.0, frames=4, width=40, height=32, elevation_deg=20).cameras
    ours = rasterize(scene, cams, backend="cpu", background=torch.ones(3))
    files = [f"view_{i}.png" for i in range(len(cams))]
    for i, name in enumerate(files):
        Image.fromarray((ours.rgb[i].numpy() * 255).round().astype(np.uint8)).save(run / "views" / name)
    write_view_cameras(run / "views" / "cameras.json", cams, files, [None] * len(files), [1.0] * len(files))
    return run, scene, cams, ours


def _offline_cpu(monkeypatch):
    import torchmetrics.image.lpip as lpip

    class NoLPIPS(torch.nn.Module):
        def __init__(self, **kwargs):
            super().__init__()

    monkeypatch.setattr(lpip, "LearnedPerceptualImagePatchSimilarity", NoLPIPS)

    def cpu_init(config):
        config.pipeline.model.random_init = True
        config.pipeline.model.num_random = 10
        return config

    return cpu_init


def test_entry_points_register_method_and_dataparser():
    from nerfstudio.configs.dataparser_configs import all_dataparsers
    from nerfstudio.configs.method_configs import all_descriptions, all_methods

    assert "splat4d" in all_methods and "splat4d" in all_descriptions["splat4d"]
    config = all_methods["splat4d"]
    assert config.pipeline.model.background_color == "white"
    parser = all_dataparsers["splat4d-data"]
    assert (parser.orientation_method, parser.center_method, parser.auto_scale_poses) == ("none", "none", False)


def test_viewer_config_loads_and_renders_our_scene(tmp_path, monkeypatch):
    from nerfstudio.utils.eval_utils import eval_setup

    from splat4d.nerfstudio.checkpoint import scene_from_splatfacto_state
    from splat4d.cli import main
    from splat4d.render import rasterize
    from splat4d.types import Cameras

    run, scene, cams, ours = _run_folder(tmp_path)
    main(["export-nerfstudio", str(run), str(tmp_path / "ns"), "--model"])
    config_path = tmp_path / "ns" / "outputs" / "ns" / "splat4d" / "export" / "config.yml"
    config, pipeline, ckpt, step = eval_setup(config_path, test_mode="inference",
                                              update_config_callback=_offline_cpu(monkeypatch))
    assert ckpt.name == "step-000000000.ckpt" and step == 0 and config.method_name == "splat4d"
    params = {"_model.gauss_params." + k: v.detach().cpu() for k, v in pipeline.model.gauss_params.items()}
    loaded = scene_from_splatfacto_state(params)
    assert len(loaded) == len(scene) and loaded.sh_degree == 2
    # nerfstudio's cameras for our images (its dataparser ran on our transforms.json): OpenGL c2w in its world.
    ns = pipeline.datamanager.train_dataset.cameras
    c2w = torch.eye(4, dtype=torch.float64).repeat(len(ns), 1, 1)
    c2w[:, :3, :] = ns.camera_to_worlds.double()
    c2w = c2w @ torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))  # OpenGL -> OpenCV camera
    K = torch.zeros(len(ns), 3, 3)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = ns.fx[:, 0], ns.fy[:, 0], ns.cx[:, 0], ns.cy[:, 0], 1
    theirs = rasterize(loaded, Cameras(c2w.float(), K, int(ns.width[0]), int(ns.height[0])), backend="cpu",
                       background=torch.ones(3))
    # Same pictures (view-dependent colour included: the SH were rotated with the world).
    assert (theirs.rgb - ours.rgb).abs().max() < 1e-4
    assert (theirs.alpha - ours.alpha).abs().max() < 1e-4
    # The world is nerfstudio's +Z up: splat4d's "up" (-y) became +Z.
    torch.testing.assert_close(loaded.means[:, 2], -scene.means[:, 1], atol=1e-6, rtol=0)


def test_nerfstudio_dataparser_reads_splat4d_export_unchanged(tmp_path):
    from splat4d.nerfstudio.dataparser_spec import splat4d_dataparser_config
    from splat4d.nerfstudio.export import read_transforms

    from splat4d.nerfstudio.export import export_nerfstudio

    run, _, cams, _ = _run_folder(tmp_path)
    export_nerfstudio(run, tmp_path / "ns")
    outputs = splat4d_dataparser_config(data=tmp_path / "ns").setup().get_dataparser_outputs("train")
    assert len(outputs.image_filenames) == len(cams)  # eval_mode 'all': every view trains
    torch.testing.assert_close(outputs.dataparser_transform, torch.eye(4)[:3])
    assert outputs.dataparser_scale == 1.0
    ours = read_transforms(tmp_path / "ns" / "transforms.json")
    torch.testing.assert_close(ours.c2w, cams.c2w.double(), atol=1e-6, rtol=0)
    assert outputs.metadata["points3D_xyz"].shape[1] == 3 and len(outputs.metadata["points3D_xyz"]) > 50

"""Browser viewer (viser in headless Chromium) against our renderer; nerfstudio dataset export and checkpoints."""

import json
import shutil
import socket
import subprocess
import tempfile
import time

import numpy as np
import pytest
import torch

from splat4d.synthetic import toy_scene
from splat4d.losses import mask_iou
from splat4d.render import rasterize
from splat4d.types import Cameras

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                  "--disable-background-networking", "--no-first-run", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install -y chromium)")
def test_viewer_in_headless_chromium_matches_our_render(tmp_path):
    """`splat4d view` on a loopback port, opened in headless Chromium: the browser's frame from a camera we choose
    matches our CPU render from the same camera."""
    import logging

    from splat4d.cli import serve
    from splat4d.io.ply import write_ply
    from splat4d.viewer import initial_camera, rotation_to_wxyz

    logging.getLogger("websockets").setLevel(logging.CRITICAL)  # browser probes before the real connection
    scene = toy_scene(n_sphere=3000, n_torus=1500, n_cone=500)
    write_ply(scene, tmp_path / "toy.ply")
    port = free_port()
    server = serve(tmp_path / "toy.ply", "127.0.0.1", port, 40.0, block=False)
    c2w = initial_camera(scene)
    profile = tempfile.mkdtemp()
    browser = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=640,480",
                                f"http://127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while not server.get_clients() and time.time() < deadline:
            time.sleep(0.2)
        assert server.get_clients(), "the browser never connected to the viser server"
        client = next(iter(server.get_clients().values()))
        time.sleep(1.0)  # let the splats arrive and sort
        # The browser renders with its canvas aspect ratio: ask for an image of that shape.
        height = 96
        width = int(round(height * client.camera.aspect))
        frame = client.get_render(height, width, wxyz=rotation_to_wxyz(c2w[:3, :3]), position=c2w[:3, 3],
                                  fov=float(np.radians(40.0)), transport_format="png", timeout=60)
    finally:
        browser.kill()
        server.stop()
        shutil.rmtree(profile, ignore_errors=True)
    assert frame.shape[:2] == (height, width) and frame.shape[2] == 4
    ours = rasterize(scene, Cameras.from_fov(torch.tensor(c2w, dtype=torch.float32), width, height, 40.0))
    browser_alpha = torch.from_numpy(frame[..., 3].astype(np.float32) / 255.0)
    assert mask_iou(browser_alpha, ours.alpha[0, ..., 0]) >= 0.8
    both = (browser_alpha > 0.5) & (ours.alpha[0, ..., 0] > 0.5)
    browser_rgb = torch.from_numpy(frame[..., :3].astype(np.float32) / 255.0)[both]
    our_rgb = (ours.rgb[0] / ours.alpha[0].clamp_min(1e-6))[both]  # un-premultiplied, like the browser's colour
    assert (browser_rgb.mean(0) - our_rgb.mean(0)).abs().max() < 0.06


def test_transforms_json_round_trip_and_axes(tmp_path):
    from splat4d import paths
    from splat4d.nerfstudio.export import read_transforms, transforms_dict

    cams = paths.spiral(center=(0.1, -0.2, 0.3), radius=2.0, frames=7, width=80, height=60).cameras
    names = [f"images/frame_{i:05d}.png" for i in range(7)]
    (tmp_path / "transforms.json").write_text(json.dumps(transforms_dict(cams, names)))
    back = read_transforms(tmp_path / "transforms.json")
    torch.testing.assert_close(back.c2w, cams.c2w.double())
    torch.testing.assert_close(back.K, cams.K.double())
    meta = json.loads((tmp_path / "transforms.json").read_text())
    # nerfstudio's world is +Z up: Z = -y (splat4d's y points down), so a camera's height above the centre
    # (y = -0.2) is radius * sin(elevation).
    z = torch.tensor([f["transform_matrix"][2][3] for f in meta["frames"]], dtype=torch.float64)
    u = torch.arange(7, dtype=torch.float64) / 7
    elevation = torch.deg2rad(15.0 + 20.0 * torch.sin(2 * torch.pi * u))  # spiral's defaults
    torch.testing.assert_close(z - 0.2, 2.0 * torch.sin(elevation))


def test_export_from_a_run_folder(tmp_path):
    from pathlib import Path

    from splat4d.config import FitConfig, LoadConfig, PriorConfig, RunConfig, VideoConfig
    from splat4d.nerfstudio.export import read_transforms, read_view_cameras
    from splat4d.pipeline import run

    assets = Path(__file__).resolve().parents[1] / "splat4d" / "assets"
    cfg = RunConfig(input=assets / "coffee.jpg", out=tmp_path / "run", progress=False,
                    load=LoadConfig(resolution=48), prior=PriorConfig(ring_views=3),
                    fit=FitConfig(iterations=5, densify=False), video=VideoConfig(frames=2, size=32))
    result = run(cfg)
    ns = result.files["nerfstudio"]
    meta = json.loads((ns / "transforms.json").read_text())
    assert len(meta["frames"]) == 1 + 3 + 1 and meta["ply_file_path"] == "sparse_pc.ply"
    for frame in meta["frames"]:
        assert (ns / frame["file_path"]).is_file() and (ns / frame["mask_path"]).is_file()
    ours, _ = read_view_cameras(tmp_path / "run" / "views" / "cameras.json")
    torch.testing.assert_close(read_transforms(ns / "transforms.json").c2w, ours.c2w)
    from plyfile import PlyData

    pts = PlyData.read(str(ns / "sparse_pc.ply"))["vertex"]
    assert len(pts) > 100 and {"red", "green", "blue"} <= set(pts.data.dtype.names)
    # Points are in the nerfstudio world (+Z up): the object's top (world -y in splat4d) has the largest Z.
    assert np.ptp(np.asarray(pts["z"])) > 0.1


def test_nerfstudio_dataparser_loads_export(tmp_path):
    pytest.importorskip("nerfstudio", reason="nerfstudio is not installed (optional extra: it pins gsplat 1.4.0)")
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    from splat4d import paths
    from splat4d.nerfstudio.export import transforms_dict

    cams = paths.orbit(radius=2.5, frames=4, width=32, height=32).cameras
    (tmp_path / "images").mkdir()
    from PIL import Image

    names = []
    for i in range(4):
        Image.new("RGB", (32, 32), (i * 40, 100, 100)).save(tmp_path / f"images/frame_{i:05d}.png")
        names.append(f"images/frame_{i:05d}.png")
    (tmp_path / "transforms.json").write_text(json.dumps(transforms_dict(cams, names)))
    parser = NerfstudioDataParserConfig(data=tmp_path, eval_mode="all", downscale_factor=1).setup()
    outputs = parser.get_dataparser_outputs("train")
    assert len(outputs.image_filenames) == 4


def test_splatfacto_checkpoint_layout(tmp_path):
    from splat4d.synthetic import random_scene
    from splat4d.nerfstudio.checkpoint import scene_from_splatfacto_state, write_splatfacto_checkpoint

    scene = random_scene(50, sh_degree=3, seed=2)
    path = write_splatfacto_checkpoint(scene, tmp_path, step=1234)
    assert path.name == "step-000001234.ckpt" and path.parent.name == "nerfstudio_models"
    ckpt = torch.load(path, weights_only=True)
    state = ckpt["pipeline"]
    assert ckpt["step"] == 1234
    assert state["_model.gauss_params.features_dc"].shape == (50, 3)
    assert state["_model.gauss_params.features_rest"].shape == (50, 15, 3)
    assert state["_model.gauss_params.opacities"].shape == (50, 1)
    back = scene_from_splatfacto_state(state)
    for key, value in scene.items():
        assert torch.equal(getattr(back, key), value), key


def test_export_model_without_nerfstudio_says_how_and_writes_nothing(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("nerfstudio") is not None:
        pytest.skip("nerfstudio is installed here: tests/test_nerfstudio_plugin.py covers --model")
    from splat4d.cli import main

    run = tmp_path / "run"
    (run / "views").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["export-nerfstudio", str(run), str(tmp_path / "ns"), "--model"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "needs nerfstudio" in err and "own environment" in err
    assert not (tmp_path / "ns").exists()

"""`splat4d run` end to end at tiny resolution: outputs valid, resume, determinism, bad input, divergence."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from splat4d.cli import main
from splat4d.config import FitConfig, LoadConfig, PriorConfig, RunConfig, VideoConfig, load_preset
from splat4d.io.ply import read_ply
from splat4d.io.video import read_video
from splat4d.load import InputError, load_image
from splat4d.pipeline import run
from splat4d.fit import FitError

ASSETS = Path(__file__).resolve().parents[1] / "splat4d" / "assets"


def tiny_config(input_path: Path, out: Path, **fit) -> RunConfig:
    return RunConfig(
        input=input_path, out=out, progress=False,
        load=LoadConfig(resolution=64),
        prior=PriorConfig(ring_views=4),
        fit=FitConfig(iterations=40, refine_start=10, refine_stop=30, refine_every=10, log_every=5, **fit),
        video=VideoConfig(frames=8, size=48),
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = tiny_config(ASSETS / "coffee.jpg", out / "coffee")
    result = run(cfg)
    result.files["scene.ply bytes"] = (cfg.out / "scene.ply").read_bytes()  # later tests re-run into cfg.out
    return cfg, result


def test_outputs_are_valid(first_run):
    cfg, result = first_run
    out = cfg.out
    for name in ("scene.ply", "scene.splat", "orbit.mp4", "depth.png", "mask.png", "config.yaml", "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    scene = read_ply(out / "scene.ply")
    assert len(scene) == metrics["gaussians_final"] > 1000
    assert (out / "scene.splat").stat().st_size == 32 * len(scene)
    video = read_video(out / "orbit.mp4")
    assert video.shape == (8, 48, 48, 3)
    assert metrics["loss_decreased"] is True
    assert metrics["fit_steps"] == 40  # fewer than plateau_after: every step runs
    # The init re-renders the input away from its silhouette (test_stages) but leaves the 2 px rim band unsolved,
    # about a tenth of the object at 64 px; the fit must sharpen it. Measured with the default depth (the shape
    # prior; its back on the pixel rays shows a little at the rim): 22.4 dB on the whole image, 24.7 dB after these
    # 40 steps (geometric 24.1 and 27.7; at the fast preset's 128 px and 150 steps 42 dB).
    assert metrics["input_psnr"] > 24.0 and metrics["input_psnr"] >= metrics["input_psnr_init"] + 2.0
    assert len(list((out / "views").glob("view_*.png"))) == 1 + 4 + 1  # input + ring + top
    assert len(list((out / "views").glob("mask_*.png"))) == 1 + 4 + 1
    assert (out / "views" / "cameras.json").is_file() and (out / "nerfstudio" / "transforms.json").is_file()
    assert set(metrics["seconds"]) >= {"segment", "depth", "init", "prior", "fit", "export", "total"}
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["fit"]["iterations"] == 40 and saved["load"]["resolution"] == 64
    # Every orbit frame shows the object (no empty or exploded frame): centre not white, corners white.
    assert (video[:, 20:28, 20:28].mean(axis=(1, 2, 3)) < 200).all()
    assert (video[:, :3, :3].mean(axis=(1, 2, 3)) > 230).all()


def test_rerun_resumes_from_cache(first_run):
    cfg, result = first_run
    before = result.files["scene.ply bytes"]
    again = run(cfg)
    assert again.metrics["cached_stages"] == ["segment", "depth", "init", "prior", "fit"]
    assert (cfg.out / "scene.ply").read_bytes() == before
    # Changing only the video re-runs nothing but the export; changing the fit re-runs the fit.
    third = run(replace(cfg, video=VideoConfig(frames=4, size=32)))
    assert third.metrics["cached_stages"] == ["segment", "depth", "init", "prior", "fit"]
    fourth = run(replace(cfg, fit=replace(cfg.fit, iterations=20)))
    assert fourth.metrics["cached_stages"] == ["segment", "depth", "init", "prior"]


def test_same_seed_same_scene(first_run, tmp_path):
    cfg, first = first_run
    other = run(replace(cfg, out=tmp_path / "again"))
    assert (tmp_path / "again" / "scene.ply").read_bytes() == first.files["scene.ply bytes"]
    assert other.metrics["cached_stages"] == []


def test_fit_stops_once_the_input_views_loss_stops_falling(tmp_path):
    from splat4d.fit import plateau_reached

    window = lambda loss: {"loss_input": loss}  # noqa: E731
    assert not plateau_reached([window(1.0)], 0.05)
    assert not plateau_reached([window(1.0), window(0.9)], 0.05)  # fell by 10 %
    assert plateau_reached([window(1.0), window(0.97)], 0.05)  # by 3 %
    assert not plateau_reached([window(1.0), window(None), window(0.9)], 0.05)  # a window without the input view
    cfg = tiny_config(ASSETS / "coffee.jpg", tmp_path / "a", plateau=0.9, plateau_after=10)
    metrics = run(cfg).metrics
    steps = metrics["fit_steps"]
    assert 10 <= steps < 40 and steps % 5 == 0  # at a history record, from plateau_after on
    assert len(metrics["loss_history"]) == steps // 5
    losses = [h["loss_input"] for h in metrics["loss_history"] if h["loss_input"] is not None]
    assert losses[-1] > 0.1 * losses[-2]  # where it stopped, the loss had not fallen by 90 %


def test_divergence_stops_and_writes_no_scene(tmp_path):
    cfg = tiny_config(ASSETS / "coffee.jpg", tmp_path / "nan", lr_means=float("inf"))
    with pytest.raises(FitError, match="NaN|nan|inf"):
        run(cfg)
    assert not (tmp_path / "nan" / "scene.ply").exists()
    assert not (tmp_path / "nan" / "orbit.mp4").exists()
    assert not list((tmp_path / "nan").glob(".*tmp"))


def test_bad_inputs_give_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="cannot read"):
        load_image(garbage)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1), (255, 0, 0)).save(tiny)
    with pytest.raises(InputError, match="at least 16 pixels"):
        load_image(tiny)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (100, 80), (200, 200, 200)).save(blank)
    with pytest.raises(InputError, match="no object found"):
        run(tiny_config(blank, tmp_path / "blank"))
    with pytest.raises(InputError, match="not found"):
        run(tiny_config(tmp_path / "missing.png", tmp_path / "missing"))
    # Through the CLI: one line, exit code 2, no traceback, nothing written.
    res = subprocess.run([sys.executable, "-m", "splat4d", "run", str(garbage), "--out", str(tmp_path / "cli")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "cannot read" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "cli" / "scene.ply").exists()


def test_huge_image_is_downscaled_and_formats_load(tmp_path):
    big = tmp_path / "big.jpg"
    img = Image.new("RGB", (8000, 6000), (250, 250, 250))
    img.paste((200, 30, 30), (2500, 1500, 5500, 4500))
    img.save(big, quality=80)
    loaded = load_image(big, max_side=1024)
    assert max(loaded.rgb.shape[:2]) <= 1024 and loaded.alpha is None
    # 16-bit greyscale, palette with transparency, EXIF rotation.
    grey16 = tmp_path / "g16.png"
    Image.fromarray((np.linspace(0, 65535, 64 * 32).reshape(32, 64)).astype(np.uint16)).save(grey16)
    g = load_image(grey16)
    assert g.rgb.shape == (32, 64, 3) and abs(float(g.rgb.max()) - 1.0) < 1e-3
    pal = tmp_path / "pal.png"
    p = Image.new("P", (40, 40), 0)
    p.putpalette([255, 255, 255, 255, 0, 0] + [0] * 762)
    p.paste(1, (10, 10, 30, 30))
    p.info["transparency"] = 0
    p.save(pal, transparency=0)
    q = load_image(pal)
    assert q.alpha is not None and q.alpha[20, 20] == 1.0 and q.alpha[0, 0] == 0.0
    rot = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.new("RGB", (60, 30), (10, 20, 30)).save(rot, exif=exif)
    assert load_image(rot).rgb.shape[:2] == (60, 30)


def test_cli_run_with_preset_and_overrides(tmp_path):
    preset = load_preset("fast")
    assert preset.fit.iterations == 150 and preset.load.resolution == 128
    main(["run", str(ASSETS / "coffee.jpg"), "--preset", "fast", "--out", str(tmp_path / "cli"), "--no-progress",
          "--load.resolution", "48", "--fit.iterations", "10", "--fit.refine-start", "2", "--fit.refine-stop", "8",
          "--fit.refine-every", "3", "--video.frames", "3", "--video.size", "32", "--prior.ring-views", "2"])
    saved = yaml.safe_load((tmp_path / "cli" / "config.yaml").read_text())
    assert saved["preset"] == "fast" and saved["fit"]["iterations"] == 10 and saved["load"]["resolution"] == 48
    assert saved["prior"]["ring_views"] == 2 and saved["video"]["frames"] == 3
    assert read_video(tmp_path / "cli" / "orbit.mp4").shape == (3, 32, 32, 3)


def test_unknown_preset_is_a_clear_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "splat4d", "run", str(ASSETS / "coffee.jpg"), "--preset", "nope",
                          "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "unknown preset 'nope'" in res.stderr


def test_multiview_cache_keys_of_later_stages_follow_the_pose_settings():
    """The prior's and the fit's cached results depend on the poses: changing a --sfm setting must change their keys
    (a hand-chained key once changed only the poses stage's, so a re-run reused views placed with the old poses)."""
    import torch

    from splat4d.config import SfmConfig
    from splat4d.pipeline import multiview_stages
    from splat4d.runner import plan_keys

    def keys_for(sfm: SfmConfig) -> dict:
        return plan_keys(multiview_stages(), RunConfig(sfm=sfm), "input", torch.device("cpu"))

    a, b = keys_for(SfmConfig()), keys_for(SfmConfig(prior_min_angle_deg=20.0))
    assert a["segment"] == b["segment"] and a["init"] == b["init"]
    assert a["poses"] != b["poses"] and a["prior"] != b["prior"] and a["fit"] != b["fit"]
    c = keys_for(SfmConfig(ratio=0.8))
    assert c["init"] == a["init"] and c["poses"] != a["poses"] and c["prior"] != a["prior"]
    d = keys_for(SfmConfig(max_frames=12))  # fewer frames: a new crop, everything re-runs
    assert d["segment"] != a["segment"] and d["init"] != a["init"]


def test_expert_settings_come_from_a_preset_file_not_flags(tmp_path, capsys):
    """Expert tunables are left off the command line (it stays readable) but a preset file sets them."""
    from splat4d.cli import _run_config

    preset = tmp_path / "mine.yaml"
    preset.write_text("segment:\n  border_width: 9\nsfm:\n  features: 1000\nfit:\n  iterations: 7\n")
    cfg = _run_config(["photo.png", "--preset", str(preset), "--fit.iterations", "8"])
    assert cfg.segment.border_width == 9 and cfg.sfm.features == 1000 and cfg.fit.iterations == 8
    with pytest.raises(SystemExit):
        _run_config(["photo.png", "--segment.border-width", "9"])
    with pytest.raises(SystemExit):
        _run_config(["--help"])
    help_text = capsys.readouterr().out
    assert "--segment.border-width" not in help_text and "--preset my.yaml" in help_text
    assert "--segment.method" in help_text and len(help_text.splitlines()) < 260


def test_the_depth_stages_cache_key_names_every_packaged_network_it_may_run():
    """The shape prior's cached depth is keyed by the sha256 of each packaged network the stage may run: v10, v13
    where the frame cuts the object, v17 and its second opinion v18 for steep reads; turning a switch off drops its
    networks, a chosen model is keyed by its own file alone, other backends by none."""
    from splat4d.config import DepthConfig
    from splat4d.pipeline import depth_weights
    from splat4d.shape.network import (CHECK_WEIGHTS_PATH, FRAME_WEIGHTS_PATH, STEEP_WEIGHTS_PATH, WEIGHTS_PATH,
                                       file_sha256)

    v10, v13, v17, v18 = (file_sha256(p) for p in (WEIGHTS_PATH, FRAME_WEIGHTS_PATH, STEEP_WEIGHTS_PATH,
                                                   CHECK_WEIGHTS_PATH))
    assert len({v10, v13, v17, v18}) == 4

    def key(**depth) -> str | None:
        return depth_weights(RunConfig(depth=DepthConfig(backend="shape-prior", **depth)))

    assert key() == f"{v10}+{v13}+{v17}+{v18}"
    assert key(shape_steep_model=False) == f"{v10}+{v13}"
    assert key(shape_frame_model=False) == f"{v10}+{v17}+{v18}"
    assert key(model=str(STEEP_WEIGHTS_PATH)) == v17
    assert depth_weights(RunConfig(depth=DepthConfig(backend="geometric"))) is None

"""`splat4d render`: the mp4 decodes with the right frame count and size and shows the scene; bad input fails clearly."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from splat4d import paths
from splat4d.cli import main
from splat4d.synthetic import toy_scene
from splat4d.io.ply import write_ply
from splat4d.io.video import read_video, write_video

ASSET = Path(__file__).resolve().parents[1] / "splat4d" / "assets" / "example_scene.ply"


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scene") / "toy.ply"
    write_ply(toy_scene(n_sphere=3000, n_torus=1500, n_cone=500), path)
    return path


def test_render_orbit_mp4(scene_file, tmp_path):
    out = tmp_path / "orbit.mp4"
    main(["render", str(scene_file), "--out", str(out), "--frames", "12", "--width", "63", "--height", "47"])
    video = read_video(out)
    assert video.shape == (12, 48, 64, 3)  # odd sizes padded to even for H.264
    # White background at the corners, the object (not white) at the centre of every frame.
    assert (video[:, :4, :4].astype(float) > 235).all()
    assert (video[:, 20:28, 28:36].astype(float).mean(axis=(1, 2, 3)) < 200).all()
    # A full orbit: frames differ (the ring turns) but the first and the last are neighbours.
    diffs = [np.abs(video[0].astype(float) - video[i].astype(float)).mean() for i in range(12)]
    assert max(diffs) > 5 and diffs[-1] < max(diffs)


def test_render_camera_path_json_and_gif(scene_file, tmp_path):
    cp = paths.orbit(radius=3.5, frames=5, width=40, height=30)
    paths.write_nerfstudio_camera_path(cp, tmp_path / "camera_path.json")
    out = tmp_path / "path.gif"
    main(["render", str(scene_file), "--path", str(tmp_path / "camera_path.json"), "--out", str(out)])
    from PIL import Image

    with Image.open(out) as gif:
        assert gif.n_frames == 5 and gif.size == (40, 30)


def test_cli_bad_inputs_exit_cleanly(tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_text("hello")
    res = subprocess.run([sys.executable, "-m", "splat4d", "render", str(bad), "--out", str(tmp_path / "o.mp4")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "not a PLY file" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o.mp4").exists()
    res = subprocess.run([sys.executable, "-m", "splat4d", "render", str(ASSET), "--path", "zigzag"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "--path must be" in res.stderr


def test_video_writer_content(tmp_path):
    frames = [np.full((30, 40, 3), (i * 20, 100, 200 - i * 20), np.uint8) for i in range(8)]
    n = write_video(frames, tmp_path / "v.mp4", fps=10)
    back = read_video(tmp_path / "v.mp4")
    assert n == 8 and back.shape == (8, 30, 40, 3)
    assert np.abs(back.astype(float) - np.stack(frames).astype(float)).mean() < 3.0


def test_background_encoding_gives_the_same_video_and_surfaces_errors(tmp_path, monkeypatch):
    """Frames encoded on the worker thread decode to those encoded inline, in order, none lost; an encoder failure
    on the worker is raised in the caller (at the next write or at close) and leaves no file behind. Not bit for
    bit: in full-suite runs libx264 (one thread or several) sometimes coded one frame of the worker's video
    differently (per-frame mean difference up to 0.9 of 255 against 72 between two of these noise frames; 3.4 on
    three frames of one run on 2026-12-03, so the bound is 8: the order check below is what tells frames apart)."""
    from splat4d.io.video import VideoWriter

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(20)]
    for background, name in ((True, "bg.mp4"), (False, "fg.mp4")):
        with VideoWriter(tmp_path / name, fps=10, background=background) as w:
            assert (w._worker is not None) == background
            for f in frames:
                w.write(f)
    bg, fg = (read_video(tmp_path / n).astype(np.float64) for n in ("bg.mp4", "fg.mp4"))
    assert bg.shape == fg.shape == (20, 32, 48, 3)
    assert np.abs(bg - fg).mean(axis=(1, 2, 3)).max() < 8.0
    to_input = np.abs(bg[:, None] - np.stack(frames)[None].astype(np.float64)).mean(axis=(2, 3, 4))
    assert (to_input.argmin(axis=1) == np.arange(20)).all()  # frame i is input frame i

    def broken(self, rgb):
        raise OSError("disk full")

    monkeypatch.setattr(VideoWriter, "_encode", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        with VideoWriter(tmp_path / "broken.mp4") as w:
            for f in frames:
                w.write(f)
    assert not (tmp_path / "broken.mp4").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bg.mp4", "fg.mp4"]


def test_default_encoder_settings_keep_x264_mediums_quality_on_a_rendered_orbit(tmp_path):
    """The default (x264 veryfast at crf 16, chosen for speed) decodes as close to the source frames as x264's
    default preset at crf 18 did, on frames of a rendered orbit."""
    from splat4d import paths
    from splat4d.io.video import CRF, PRESET, VideoWriter
    from splat4d.render.frames import render_frames

    from splat4d.io.ply import read_ply

    scene = read_ply(Path(__file__).resolve().parents[1] / "splat4d" / "assets" / "example_scene.ply")
    c = scene.means.mean(0)
    path = paths.orbit(center=tuple(c.tolist()), radius=3.0 * float((scene.means - c).norm(dim=1).max()), frames=24,
                       width=128, height=128, fov_y_deg=40.0)
    frames = [(f.clamp(0, 1) * 255).round().byte().numpy() for f in render_frames(scene, path, progress=False)]

    def psnr_of(name, **settings):
        with VideoWriter(tmp_path / name, fps=24, **settings) as w:
            for f in frames:
                w.write(f)
        decoded = read_video(tmp_path / name)
        mse = np.mean([(a.astype(float) - b.astype(float)) ** 2 for a, b in zip(frames, decoded)])
        return 10 * np.log10(255 ** 2 / mse)

    default, medium = psnr_of("default.mp4"), psnr_of("medium.mp4", crf=18, preset="medium")
    assert (CRF, PRESET) == (16, "veryfast")
    assert default > 25 and default >= medium - 0.25, (default, medium)


def test_failed_video_leaves_nothing(tmp_path):
    def frames():
        yield torch.zeros(16, 16, 3)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_video(frames(), tmp_path / "v.mp4")
    assert list(tmp_path.iterdir()) == []


def test_info_command(capsys):
    summary = main(["info", str(ASSET)])
    assert summary["gaussians"] == 16000 and summary["sh_degree"] == 0


def test_output_piped_into_a_reader_that_leaves_early_is_no_traceback():
    """`splat4d info scene.ply | head -1`: the reader may be gone before we write; that is not an error to show."""
    example = Path(__file__).resolve().parents[1] / "splat4d" / "assets" / "example_scene.ply"
    proc = subprocess.Popen([sys.executable, "-m", "splat4d", "info", str(example)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader leaves before anything is written
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err

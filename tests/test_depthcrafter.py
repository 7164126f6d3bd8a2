"""DepthCrafter backend (video depth from a Stable Video Diffusion UNet), run on tiny random models saved and loaded
through diffusers' from_pretrained like the real ``tencent/DepthCrafter`` + SVD weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from splat4d.depth.depthcrafter import _unet_class, window_starts  # noqa: E402
from tests.helpers import tiny_depthcrafter  # noqa: E402


@pytest.fixture(scope="module")
def crafter(tmp_path_factory):
    return tiny_depthcrafter(tmp_path_factory.mktemp("crafter"))


def test_window_spans_cover_the_clip_with_overlaps():
    assert window_starts(7, 4, 2) == [(0, 4), (2, 6), (4, 7)]
    assert window_starts(3, 110, 25) == [(0, 3)]
    spans = window_starts(100, 16, 5)
    assert spans[0][0] == 0 and spans[-1][1] == 100
    assert all(b[0] == a[1] - 5 for a, b in zip(spans, spans[1:]))
    with pytest.raises(ValueError, match="larger than overlap"):
        window_starts(10, 4, 4)


def test_per_frame_conditioning_unet_matches_svd_when_frames_share_an_embedding(crafter):
    unet_dir, _ = crafter
    unet = _unet_class().from_pretrained(unet_dir).eval()
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 3, 8, 8, 8, generator=g)
    emb = torch.randn(1, 1, 32, generator=g)
    ids = torch.tensor([[7.0, 127.0, 0.02]])
    with torch.no_grad():
        svd = super(type(unet), unet).forward(sample, 10.0, emb, ids).sample  # SVD: one embedding, repeated
        ours = unet(sample, torch.tensor(10.0), emb.expand(1, 3, 32), ids).sample  # DepthCrafter: one per frame
        emb2 = emb.expand(1, 3, 32).clone()
        emb2[:, 2] = torch.randn(32, generator=g)
        changed = unet(sample, torch.tensor(10.0), emb2, ids).sample
    torch.testing.assert_close(ours, svd, atol=1e-5, rtol=1e-5)
    assert (changed[:, 2] - ours[:, 2]).abs().max() > 1e-4  # frame 2 reads its own embedding


def test_video_depth_is_normalised_once_for_the_clip_and_seeded(crafter):
    from splat4d.config import DepthConfig
    from splat4d.depth import make_depth_estimator

    unet_dir, svd_dir = crafter
    cfg = DepthConfig(backend="depthcrafter", model=str(unet_dir), base_model=str(svd_dir), steps=2, window=4,
                      overlap=2)
    estimator = make_depth_estimator(cfg, device="cpu")
    rng = np.random.default_rng(1)
    frames = rng.random((7, 40, 52, 3)).astype(np.float32)
    masks = np.zeros((7, 40, 52), np.float32)
    masks[:, 5:35, 8:44] = 1
    depths = estimator.video(frames, masks)
    assert len(depths) == 7 and all(d.kind == "disparity" and d.depth.shape == (40, 52) for d in depths)
    stack = torch.stack([d.depth for d in depths])
    inside = stack[torch.from_numpy(masks) > 0.5]
    assert (stack[torch.from_numpy(masks) < 0.5] == 0).all()
    # One normalisation for the whole clip: [0, 1] overall, not per frame.
    assert inside.min() == 0 and inside.max() == 1
    per_frame = [(float(d.depth[5:35, 8:44].min()), float(d.depth[5:35, 8:44].max())) for d in depths]
    assert sum(lo == 0 for lo, _ in per_frame) == 1 and sum(hi == 1 for _, hi in per_frame) == 1
    again = make_depth_estimator(cfg, device="cpu").video(frames, masks)
    assert all(torch.equal(a.depth, b.depth) for a, b in zip(again, depths))
    single = estimator(frames[0], masks[0])  # one image = a one-frame clip
    assert single.kind == "disparity" and single.depth.shape == (40, 52)


def test_windows_stitch_latents_like_depthcrafter(crafter):
    from splat4d.depth.depthcrafter import DepthCrafterDepth

    unet_dir, svd_dir = crafter
    frames = torch.from_numpy(np.random.default_rng(3).random((5, 64, 64, 3)).astype(np.float32))
    make = lambda window, overlap: DepthCrafterDepth(str(unet_dir), str(svd_dir), device="cpu", steps=2,  # noqa
                                                     window=window, overlap=overlap)
    split = make(3, 1).denoise(frames)  # windows [0, 3) and [2, 5), sharing frame 2
    alone = make(3, 1).denoise(frames[:3])  # the first window by itself
    assert split.shape == (1, 5, 4, 32, 32)  # the tiny VAE downsamples by 2 and torch.isfinite(split).all()
    torch.testing.assert_close(split[:, :2], alone[:, :2], atol=2e-3, rtol=0)  # frames only the first window saw are its result
    assert (split[:, 2] - alone[:, 2]).abs().max() > 0.05  # the shared frame is a blend with the second window
    whole = make(8, 2).denoise(frames)
    assert not torch.equal(whole, split)


def test_missing_weights_name_the_fix(tmp_path, crafter):
    from splat4d.depth.depthcrafter import DepthCrafterDepth
    from splat4d.hub import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="--depth.model"):
        DepthCrafterDepth(str(tmp_path / "nowhere"), str(crafter[1]), device="cpu")
    with pytest.raises(ModelNotFoundError, match="--depth.base-model"):
        DepthCrafterDepth(str(crafter[0]), str(tmp_path / "nowhere"), device="cpu")


def test_motion_mode_takes_the_whole_clip_through_the_video_model(crafter, tmp_path, monkeypatch):
    from splat4d.cli import main
    from splat4d.depth.depthcrafter import DepthCrafterDepth
    from splat4d.io.video import write_video

    calls = []
    video = DepthCrafterDepth.video
    monkeypatch.setattr(DepthCrafterDepth, "video", lambda self, f, m: calls.append(len(f)) or video(self, f, m))
    monkeypatch.setattr(DepthCrafterDepth, "__call__", lambda *a: pytest.fail("frames must not go one by one"))
    yy, xx = np.mgrid[:48, :48]
    frames = []
    for t in range(5):  # a red disc moving right on white
        disc = (xx - 16 - 3 * t) ** 2 + (yy - 24) ** 2 < 100
        frames.append(np.where(disc[..., None], np.array([0.9, 0.2, 0.1]), 1.0).astype(np.float32))
    write_video(frames, tmp_path / "clip.mp4", fps=5, crf=10)
    unet_dir, svd_dir = crafter
    metrics = main(["run", str(tmp_path / "clip.mp4"), "--motion", "--out", str(tmp_path / "run"), "--no-progress",
                    "--load.resolution", "32", "--depth.backend", "depthcrafter", "--depth.model", str(unet_dir),
                    "--depth.base-model", str(svd_dir), "--depth.steps", "1", "--motion.iterations", "5",
                    "--video.frames", "2", "--video.size", "32", "--device", "cpu"]).metrics
    assert calls == [5] and metrics["frames"] == 5
    assert (tmp_path / "run" / "motion.npz").is_file()

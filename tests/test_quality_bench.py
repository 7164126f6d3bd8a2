"""Smoke version of tools/bench_quality.py: metric code against hand-computed values, Mitsuba's cameras against
ours, and one object end to end at tiny resolution."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch


from splat4d.losses import mask_iou, psnr, ssim  # noqa: E402

mitsuba = pytest.importorskip("mitsuba", reason="Mitsuba 3 renders the ground truth (pip install mitsuba)")


def test_metrics_on_known_values():
    a = torch.zeros(8, 8, 3)
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    b = a.clone()
    b[0, 0] = 1.0  # one pixel fully wrong: MSE = 1/64
    assert psnr(a, b) == pytest.approx(10 * math.log10(64), abs=1e-4)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:2] = True
    assert psnr(a, b, mask) == pytest.approx(10 * math.log10(16), abs=1e-4)
    m1 = torch.zeros(10, 10)
    m2 = torch.zeros(10, 10)
    m1[0:4, 0:4] = 1  # 16 px
    m2[2:6, 2:6] = 1  # 16 px, overlap 2x2 = 4
    assert mask_iou(m1, m2) == pytest.approx(4 / 28)
    assert mask_iou(m1, m1) == 1.0
    img = torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(0))
    assert float(ssim(img, img)) == pytest.approx(1.0, abs=1e-6)


def test_silhouette_reference_on_known_values():
    from bench_quality import mean_object_colour, silhouette_oracle

    # The object fills the top half: its left quarter grey 0.2, its right quarter grey 0.6, white below.
    image = np.ones((8, 8, 3), np.float32)
    image[:4, :4], image[:4, 4:] = 0.2, 0.6
    alpha = np.zeros((8, 8), np.float32)
    alpha[:4] = 1.0
    colour = mean_object_colour(image, alpha)
    assert np.allclose(colour, 0.4)
    ref = silhouette_oracle(alpha, colour)
    assert np.allclose(ref[:4], 0.4) and np.allclose(ref[4:], 1.0)
    # Off by 0.2 on half the pixels: MSE 0.02.
    assert psnr(torch.from_numpy(ref), torch.from_numpy(image)) == pytest.approx(10 * math.log10(50), abs=1e-4)
    soft = silhouette_oracle(np.full((2, 2), 0.25, np.float32), np.zeros(3))
    assert np.allclose(soft, 0.75)  # alpha-composited over white


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(1)
    a = torch.rand(64, 64, 3, generator=g, dtype=torch.float64)
    b = (a + 0.1 * torch.randn(64, 64, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    _, full = structural_similarity(a.numpy(), b.numpy(), channel_axis=2, data_range=1.0, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False, full=True)
    from splat4d.losses import ssim_map

    ours = ssim_map(a, b).numpy()
    # Same maths; the borders differ (padding), so compare the interior.
    assert np.abs(ours[8:-8, 8:-8] - full[8:-8, 8:-8]).max() < 1e-6


def test_ssim_closed_form_gradient_equals_autograd_and_passes_gradcheck():
    from splat4d.losses import ssim_map

    g = torch.Generator().manual_seed(2)
    a = torch.rand(2, 23, 29, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.rand(2, 23, 29, 3, generator=g, dtype=torch.float64)
    w = torch.rand(2, 23, 29, 3, generator=g, dtype=torch.float64)
    (ssim_map(a, b) * w).sum().backward()  # the target needs no gradient: the closed form
    closed = a.grad.clone()
    a.grad = None
    (ssim_map(a, b.clone().requires_grad_(True)) * w).sum().backward()  # autograd through the same maths
    assert closed.abs().max() > 1.0
    torch.testing.assert_close(closed, a.grad, rtol=0, atol=1e-12)
    small = a[0, :8, :9].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: ssim_map(t, b[0, :8, :9]), (small,))


def test_split_and_depth_alignment():
    from bench_quality import align_disparity, depth_metrics, split_of

    assert [split_of(a) for a in (0, 30, 45, 60, 120, 135, 180, 225, 315, 330)] == [
        "front", "front", "front", "sides", "sides", "back", "back", "back", "front", "front"]
    g = np.random.default_rng(0)
    gt = g.uniform(5, 50, (20, 30))
    valid = np.ones_like(gt, bool)
    pred = (gt - 3.0) / 2.5  # unknown scale and shift
    np.testing.assert_allclose(align_disparity(pred, gt, valid), gt, rtol=1e-9)
    perfect = depth_metrics(pred, gt, valid)
    assert perfect["abs_rel"] < 1e-9 and perfect["delta1"] == 1.0
    off = depth_metrics(pred + g.normal(0, 2.0, pred.shape), gt, valid)
    assert off["abs_rel"] > 0.01 and off["delta1"] < 1.0


def test_mitsuba_cameras_agree_with_ours():
    """A small sphere rendered by Mitsuba lands where splat4d's camera model projects its centre."""
    import mitsuba as mi
    from make_gt_objects import cameras, render_view, sphere

    mi.set_variant("scalar_rgb")
    center = np.array([0.35, -0.2, 0.1])
    pos, faces, uv = sphere(center, 0.08, n=32)
    import tempfile

    from make_gt_objects import mitsuba_scene

    with tempfile.TemporaryDirectory() as tmp:
        scene = mitsuba_scene([(pos, faces, uv, np.full((4, 4, 3), 0.5, np.float32))], Path(tmp))
        _, K, held = cameras(64)
        for view in (held[0], held[4], held[15]):  # three azimuths / elevations
            rgba = render_view(scene, view["c2w"], 64, 40.0, spp=16, seed=0)
            alpha = rgba[..., 3]
            ys, xs = np.mgrid[0:64, 0:64] + 0.5
            centroid = np.array([(alpha * xs).sum(), (alpha * ys).sum()]) / alpha.sum()
            w2c = np.linalg.inv(view["c2w"])
            p = w2c[:3, :3] @ center + w2c[:3, 3]
            uvp = (K @ p)[:2] / p[2]
            assert np.abs(centroid - uvp).max() < 0.5, (centroid, uvp)


def test_benchmark_one_object_tiny(tmp_path):
    from bench_quality import evaluate_object
    from make_gt_objects import make_object

    from splat4d.config import FitConfig, LoadConfig, PriorConfig, RunConfig

    folder = make_object("snowman", tmp_path, res=48, spp=8)
    cfg = RunConfig(progress=False, load=LoadConfig(resolution=48), prior=PriorConfig(ring_views=4),
                    fit=FitConfig(iterations=30, refine_start=10, refine_stop=25, refine_every=10))
    result = evaluate_object(folder, cfg)
    assert len(result["views"]) == 24
    front = result["splits"]["front"]["ours"]
    assert front["iou"] > 0.7 and front["psnr"] > 15.0
    for split in ("front", "sides", "back", "all"):
        for method in ("ours", "baseline", "silhouette_oracle"):
            assert all(np.isfinite(v) for v in result["splits"][split][method].values())
    # Closing the object pays off in silhouette from the side and the back, against the front-only warp.
    assert result["splits"]["back"]["ours"]["iou"] > result["splits"]["back"]["baseline"]["iou"]


def test_depth_oracle_puts_the_initial_scene_on_the_meshes_true_surfaces(tmp_path):
    """--depth-oracle truth: the depth stage is replaced by the ray-cast surfaces of the benchmark's meshes, and the
    initial scene's front is exactly that surface (so the oracle rows measure init + fit on a perfect shape), or,
    with the default ``init.surface_inset``, that surface moved back along the rays by at most a quarter of the
    object's thickness there."""
    import dataclasses
    import json

    from bench_quality import load_rgba, oracle_depth
    from bench_shape import true_depths
    from make_gt_objects import make_object

    from splat4d.config import FitConfig, InitConfig, LoadConfig, PriorConfig, RunConfig
    from splat4d.pipeline import reconstruct

    folder = make_object("mug", tmp_path, res=48, spp=8)
    meta = json.loads((folder / "cameras.json").read_text())
    image, alpha = load_rgba(folder / meta["input"]["file"])
    cfg = RunConfig(progress=False, load=LoadConfig(resolution=48), prior=PriorConfig(ring_views=4),
                    fit=FitConfig(iterations=5, refine_start=10, refine_stop=25, refine_every=10))
    depth = oracle_depth(folder, meta, image, alpha, cfg, "truth")
    z_front, z_back = true_depths("mug", meta)
    hit = np.isfinite(z_front) & (alpha > 0.5)
    np.testing.assert_allclose(depth.depth.numpy()[hit], z_front[hit], rtol=1e-6)
    np.testing.assert_allclose(depth.back.numpy()[hit], z_back[hit], rtol=1e-6)
    assert (depth.depth.numpy()[alpha > 0.5] > 0).all()  # the mask's fringe past the mesh: the nearest hit
    exact = reconstruct(image, alpha, dataclasses.replace(cfg, init=InitConfig(surface_inset=0.0)), depth=depth)
    np.testing.assert_allclose(exact.init.depth.numpy()[hit], z_front[hit], rtol=1e-5)
    assert exact.init.elevation_deg == 0.0
    behind = reconstruct(image, alpha, cfg, depth=depth).init.depth.numpy()[hit] - z_front[hit]
    assert (behind >= -1e-5).all() and (behind <= 0.25 * (z_back[hit] - z_front[hit]) + 1e-5).all()
    assert np.median(behind) > 0


@pytest.mark.parametrize("name", ["cup_from_above", "cup_on_saucer"])
def test_cups_seen_from_above_are_orbited_about_their_own_up_axis(name):
    """The cup from 30 degrees above and the cup of coffee on a saucer from 60: each posed so that the input camera
    looks down on it from its elevation, the held-out orbit turning about its own up axis."""
    from make_gt_objects import INPUT_ELEVATION, cameras, normalise, object_parts, posed_parts

    from splat4d import paths

    e = INPUT_ELEVATION[name]
    assert e == {"cup_from_above": 30.0, "cup_on_saucer": 60.0}[name]
    up = np.array(paths.object_up(e))
    level, posed = normalise(object_parts(name)), posed_parts(name)
    # the cup's axis (its rim centre minus its floor centre, world y down) is the object's up direction
    for (p0, *_), (p1, *_) in zip(level, posed):
        np.testing.assert_allclose(np.linalg.norm(p1, axis=1), np.linalg.norm(p0, axis=1), atol=1e-9)  # rotated
    tilt = posed[0][0] @ up - level[0][0] @ np.array([0.0, -1.0, 0.0])
    np.testing.assert_allclose(tilt, 0.0, atol=1e-9)  # heights along the new up are the old heights
    input_c2w, _, held = cameras(32, input_elevation=e)
    elevation = lambda c2w: np.degrees(np.arcsin(c2w[:3, 3] @ up / np.linalg.norm(c2w[:3, 3])))  # noqa: E731
    assert elevation(input_c2w) == pytest.approx(e)
    for view in held:
        assert elevation(view["c2w"]) == pytest.approx(view["elevation"], abs=1e-6)

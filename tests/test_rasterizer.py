"""The CPU tile rasterizer against the brute-force reference renderer (the oracle), analytic cases and gradcheck."""

import math
import subprocess
import sys

import pytest
import torch

from splat4d.synthetic import random_scene
from splat4d.render import rasterize
from splat4d.render.cpu import KERNELS
from splat4d.types import Cameras, GaussianScene
from tests.helpers import front_cameras


def as_leaf(scene: GaussianScene, dtype=None) -> GaussianScene:
    return GaussianScene(**{k: v.detach().to(dtype or v.dtype).clone().requires_grad_(True) for k, v in scene.items()})


def loss_and_grads(scene, cams, backend, background, weights):
    leaf = as_leaf(scene)
    out = rasterize(leaf, cams.to("cpu", scene.means.dtype), backend=backend, background=background)
    w_rgb, w_alpha, w_depth = (w.to(out.rgb.dtype) for w in weights)
    loss = (out.rgb * w_rgb).sum() + (out.alpha * w_alpha).sum() + 0.1 * (out.depth * w_depth).sum()
    loss.backward()
    return out, {k: v.grad for k, v in leaf.items()}


@pytest.mark.parametrize("sh_degree,n,width,height,n_cams", [(0, 300, 48, 40, 1), (1, 250, 37, 29, 2),
                                                              (3, 200, 64, 64, 3), (2, 400, 33, 50, 1)])
def test_cpu_matches_reference_images_and_gradients(sh_degree, n, width, height, n_cams):
    scene64 = random_scene(n, sh_degree=sh_degree, seed=sh_degree + n, dtype=torch.float64)
    cams = front_cameras(width, height, n=n_cams)
    g = torch.Generator().manual_seed(7)
    weights = [torch.randn(n_cams, height, width, c, generator=g, dtype=torch.float64) for c in (3, 1, 1)]
    background = torch.tensor([0.2, 0.5, 0.9])
    ref, ref_grads = loss_and_grads(scene64, cams, "reference", background, weights)
    # The production path: float32 scene on the numba kernels.
    cpu, cpu_grads = loss_and_grads(GaussianScene(**{k: v.float() for k, v in scene64.items()}), cams, "cpu",
                                    background, weights)
    assert ref.alpha.max() > 0.5, "scene should cover part of the image"
    assert (cpu.rgb.double() - ref.rgb).abs().max() < 1e-4
    assert (cpu.alpha.double() - ref.alpha).abs().max() < 1e-4
    covered = ref.alpha > 0.05
    assert (cpu.depth.double() - ref.depth)[covered].abs().max() < 1e-3 * ref.depth.max()
    for key, g_ref in ref_grads.items():
        if g_ref.numel() == 0:
            continue
        g_cpu = cpu_grads[key].double()
        assert g_ref.abs().max() > 0, key
        rel = (g_cpu - g_ref).norm() / g_ref.norm()
        assert rel < 1e-3, (key, rel.item())
        torch.testing.assert_close(g_cpu, g_ref, rtol=1e-3, atol=1e-3 * g_ref.abs().max().item())


def test_cpu_float64_matches_reference_to_rounding():
    scene = random_scene(300, sh_degree=1, seed=3, dtype=torch.float64)
    cams = front_cameras(40, 40, n=2)
    ref = rasterize(scene, cams, backend="reference")
    cpu = rasterize(scene, cams, backend="cpu")
    assert (cpu.rgb - ref.rgb).abs().max() < 1e-8
    assert (cpu.alpha - ref.alpha).abs().max() < 1e-8


def test_gradcheck_cpu_backend_tiny_scene():
    scene = random_scene(6, sh_degree=1, seed=11, dtype=torch.float64, extent=(0.3, 0.3, 0.2),
                         scale_range=(0.1, 0.2))
    cams = front_cameras(12, 10, distance=2.0)

    def fn(means, scales, quats, opacities, sh0, shN):
        s = GaussianScene(means, scales, quats, opacities, sh0, shN)
        out = rasterize(s, cams, backend="cpu", background=torch.tensor([0.3, 0.6, 0.1], dtype=torch.float64))
        return out.rgb, out.alpha, out.depth_sum

    inputs = tuple(v.clone().requires_grad_(True) for v in scene.params().values())
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


def test_gradcheck_reference_tiny_scene():
    scene = random_scene(4, sh_degree=2, seed=5, dtype=torch.float64, extent=(0.3, 0.3, 0.2), scale_range=(0.1, 0.2))
    cams = front_cameras(8, 8, distance=2.0)

    def fn(*params):
        out = rasterize(GaussianScene(*params), cams, backend="reference")
        return out.rgb, out.alpha

    inputs = tuple(v.clone().requires_grad_(True) for v in scene.params().values())
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


def test_single_gaussian_analytic():
    """An isotropic Gaussian facing the camera: alpha(p) = o * exp(-|p-mu|^2 / (2 (s^2 f^2/z^2 + 0.3)))."""
    z, s, o, f = 2.0, 0.05, 0.8, 100.0
    scene = GaussianScene.from_activated(torch.tensor([[0.0, 0.0, z]]), torch.full((1, 3), s),
                                         torch.tensor([[0.2, 0.4, 0.6]]), torch.tensor([o]))
    K = torch.tensor([[f, 0, 32.0], [0, f, 32.0], [0, 0, 1]])
    cams = Cameras(torch.eye(4), K, 64, 64)
    out = rasterize(scene, cams, backend="cpu")
    var = (s * f / z) ** 2 + 0.3
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    alpha = o * torch.exp(-((xs - 32) ** 2 + (ys - 32) ** 2) / (2 * var))
    alpha = torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))
    assert (out.alpha[0, ..., 0] - alpha).abs().max() < 1e-5
    assert (out.rgb[0] - alpha[..., None] * torch.tensor([0.2, 0.4, 0.6])).abs().max() < 1e-5
    assert (out.depth[0, ..., 0][alpha > 0] - z).abs().max() < 1e-5
    # Support radius: alpha reaches 1/255 at sqrt(2 var ln(255 o)) pixels.
    assert out.radii[0, 0, 0] == math.ceil(math.sqrt(2 * var * math.log(255 * o)) * (1 + 1e-4) + 1e-3)


def test_opaque_front_layer_hides_back_and_stops_early():
    """Two large opaque Gaussians: the pixel saturates at alpha 0.999 per layer, T stop at 1e-4 drops the rest."""
    means = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 3.0], [0.0, 0.0, 4.0]])
    scene = GaussianScene.from_activated(means, torch.full((3, 3), 1.0),
                                         torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]),
                                         torch.tensor([0.99999, 0.99999, 0.99999]))
    # Principal point at 8.5: the means project exactly onto the centre of pixel (8, 8).
    cams = Cameras(torch.eye(4), torch.tensor([[20.0, 0, 8.5], [0, 20.0, 8.5], [0, 0, 1]]), 16, 16)
    for backend in ("cpu", "reference"):
        out = rasterize(scene, cams, backend=backend)
        # First: alpha clamps to 0.999 (red). The second would take T from 1e-3 to 1e-6 <= 1e-4: the pixel stops
        # before it, so no green (0.999e-3 without the stop rule) and no blue.
        torch.testing.assert_close(out.rgb[0, 8, 8], torch.tensor([0.999, 0.0, 0.0]), atol=1e-6, rtol=0)
        torch.testing.assert_close(out.alpha[0, 8, 8, 0], torch.tensor(0.999), atol=1e-6, rtol=0)
        torch.testing.assert_close(out.depth[0, 8, 8, 0], torch.tensor(2.0), atol=1e-5, rtol=0)


def test_behind_camera_and_outside_give_empty_image():
    scene = random_scene(100, seed=1)
    scene.means[:, 2] -= 5.0  # everything behind the camera at the origin looking along +z
    cams = Cameras(torch.eye(4), torch.tensor([[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]]), 32, 32)
    out = rasterize(scene, cams, backend="cpu", background=torch.tensor([0.1, 0.2, 0.3]))
    assert out.alpha.abs().max() == 0
    torch.testing.assert_close(out.rgb, torch.tensor([0.1, 0.2, 0.3]).expand(1, 32, 32, 3))
    assert (out.radii == 0).all()


def test_zero_gaussians_and_invisible_opacity():
    empty = random_scene(0)
    cams = front_cameras(16, 16, dtype=torch.float32)
    out = rasterize(empty, cams, backend="cpu", background=torch.ones(3))
    assert out.rgb.shape == (1, 16, 16, 3) and (out.rgb == 1).all() and (out.alpha == 0).all()
    faint = random_scene(50, seed=2)
    faint.opacities[:] = -10.0  # sigmoid(-10) < 1/255: can never reach the alpha threshold
    out = rasterize(faint, cams, backend="cpu")
    assert out.alpha.max() == 0 and (out.radii == 0).all()


def test_nan_parameters_raise_clear_error():
    scene = random_scene(10)
    scene.means[3, 1] = float("nan")
    with pytest.raises(ValueError, match="means has 1 Gaussians with NaN"):
        rasterize(scene, front_cameras(8, 8, dtype=torch.float32), backend="cpu")


def test_backward_is_deterministic_and_means2d_has_grad():
    scene = random_scene(2000, seed=4)
    cams = front_cameras(64, 64, dtype=torch.float32)
    grads = []
    for _ in range(2):
        leaf = as_leaf(scene)
        out = rasterize(leaf, cams, backend="cpu")
        (out.rgb.square().sum() + out.alpha.sum()).backward()
        grads.append((leaf.means.grad.clone(), out.means2d.grad.clone()))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    assert grads[0][1].shape == (1, 2000, 2) and grads[0][1].abs().sum() > 0


def test_tile_binning_loses_nothing():
    """Every pixel a Gaussian reaches with alpha >= 1/255 lies in a tile it was binned to."""
    from splat4d.render.binning import bin_gaussians
    from splat4d.render.projection import project

    scene = random_scene(500, seed=9, scale_range=(0.01, 0.08))
    cams = front_cameras(61, 45, dtype=torch.float32, n=2)
    proj = project(scene, cams)
    bins = bin_gaussians(proj.means2d, proj.extents, proj.depths, proj.valid, 61, 45, 16)
    ys, xs = torch.meshgrid(torch.arange(45) + 0.5, torch.arange(61) + 0.5, indexing="ij")
    for cam in range(2):
        for gid in torch.randperm(500, generator=torch.Generator().manual_seed(0))[:60].tolist():
            d = torch.stack([proj.means2d[cam, gid, 0] - xs, proj.means2d[cam, gid, 1] - ys], -1)
            a, b, c = proj.conics[cam, gid].detach()
            sigma = 0.5 * (a * d[..., 0] ** 2 + c * d[..., 1] ** 2) + b * d[..., 0] * d[..., 1]
            reached = proj.opacities[cam, gid] * torch.exp(-sigma.detach()) >= 1 / 255
            tiles_needed = set((cam * 4 * 3 + (ys[reached] // 16) * 4 + xs[reached] // 16).long().tolist())
            flat = cam * 500 + gid
            binned = {t for t in range(len(bins.tile_offsets) - 1)
                      if (bins.flat_ids[bins.tile_offsets[t]:bins.tile_offsets[t + 1]] == flat).any()}
            assert tiles_needed <= binned


def test_cpu_path_never_loads_gsplat_cuda_extension():
    code = (
        "import sys, torch\n"
        "from splat4d.synthetic import random_scene\n"
        "from splat4d.render import rasterize\n"
        "from tests.helpers import front_cameras\n"
        "out = rasterize(random_scene(50), front_cameras(16, 16, dtype=torch.float32), backend='auto')\n"
        "out.rgb.sum()\n"
        "assert 'gsplat.cuda._backend' not in sys.modules, 'CUDA extension was imported'\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


@pytest.mark.requires_cuda
def test_gsplat_cuda_matches_cpu():
    scene = random_scene(3000, sh_degree=2, seed=8)
    cams = front_cameras(128, 96, dtype=torch.float32, n=2)
    cpu = rasterize(scene, cams, backend="cpu")
    gpu = rasterize(scene.to("cuda"), cams.to("cuda"), backend="gsplat")
    # gsplat culls at 3.33 sigma instead of the exact 1/255 level: allow tiny differences at the fringes.
    assert (gpu.rgb.cpu() - cpu.rgb).abs().mean() < 1e-3
    assert (gpu.alpha.cpu() - cpu.alpha).abs().max() < 2e-2


# A fit step (forward and backward) and a video frame of a small scene, in a fresh process (with ``cpu`` imported).
RENDER_ONCE = ("import torch\nfrom splat4d.render import rasterize\nfrom splat4d.synthetic import random_scene\n"
               "from splat4d.types import Cameras\n"
               "K = torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]); c2w = torch.eye(4); c2w[2, 3] = -3\n"
               "s = random_scene(50, seed=0)\nfor _, v in s.items(): v.requires_grad_(True)\n"
               "o = rasterize(s, Cameras(c2w, K, 32, 32), backend='cpu'); o.rgb.sum().backward()\n"
               "cpu.FrameRenderer(s, 32, 32).render(Cameras(c2w, K, 32, 32))\n")


def test_warm_up_caches_the_kernels_a_run_then_loads(tmp_path):
    """`make install` compiles the kernels once (python -m splat4d.render.cpu); a later process loads them from
    numba's cache instead of compiling (10-35 s on 2 cores), and a real render in it hits the same cache entries."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    first = subprocess.run([sys.executable, "-m", "splat4d.render.cpu"], env=env, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr
    assert "compiled and cached" in first.stdout
    assert len(list(tmp_path.rglob("*.nbi"))) >= len(KERNELS)
    code = "from splat4d.render import cpu\n" + RENDER_ONCE + (
        "ks = cpu.kernels()\n"
        "print(sum(sum(x.stats.cache_hits.values()) for x in ks), sum(sum(x.stats.cache_misses.values()) for x in ks))")
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == [str(len(KERNELS)), "0"]


def test_declared_signatures_are_what_a_render_compiles():
    """compile_kernels / compile_in_background compile the kernels ahead of their first call from SIGNATURES: they
    must be the very signatures a real render (fit step and video frame) uses, or the run compiles them again."""
    from splat4d.render.cpu import SIGNATURES, kernels, signature, warm_up

    warm_up()
    assert set(SIGNATURES) == set(KERNELS)
    for name, k in zip(KERNELS, kernels()):
        assert signature(name) in k.signatures, (name, [str(s) for s in k.signatures])


# A 128 px render of 2,000 Gaussians, forward and backward, printed as a hash of its image and gradients: a kernel
# compiled in the running process gave 2,308 of its 49,152 image values 1 ulp apart from the cached kernel's.
RENDER_HASH = ("import hashlib\n"
               "s = random_scene(2000, seed=1)\nfor _, v in s.items(): v.requires_grad_(True)\n"
               "K = torch.tensor([[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]])\n"
               "o = rasterize(s, Cameras(c2w, K, 128, 128), backend='cpu'); (o.rgb.sum() + o.alpha.sum()).backward()\n"
               "h = hashlib.sha256(o.rgb.detach().numpy().tobytes() + o.alpha.detach().numpy().tobytes())\n"
               "for _, v in s.items(): h.update(v.grad.numpy().tobytes())\n"
               "print(h.hexdigest())\n")


def test_a_first_run_loads_every_kernel_from_child_processes_and_renders_as_later_runs(tmp_path):
    """With an empty kernel cache a run starts two children (the forward kernels, and the slower backward and video
    ones) while it goes on; its first uses wait for them and load the kernels from the cache, none compiled in the
    run itself (a kernel compiled there renders 1 ulp apart from the cached one), so the first run's render and
    gradients are those of a later run, bit for bit."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    code = ("from splat4d.render import cpu\n"
            "print(sorted(cpu.uncached()) == sorted(cpu.KERNELS), cpu.compile_in_background(), "
            "len(cpu._background), cpu.compile_in_background())\n" + RENDER_ONCE + RENDER_HASH +
            "for name, k in zip(cpu.KERNELS, cpu.kernels()):\n"
            "    print(name, sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values()))\n"
            "print(cpu.uncached(), cpu._background)\n")
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.strip().splitlines()
    assert lines[0] == "True True 2 False"  # all uncached; two children started, and only once
    stats = {name: (int(h), int(m)) for name, h, m in (line.split() for line in lines[2:-1])}
    assert set(stats) == set(KERNELS)
    for name in KERNELS:
        assert stats[name][1] == 0, (name, stats[name])  # none compiled in this process
    for name in ("cpu_kernels.rasterize_forward", "cpu_kernels.rasterize_backward", "cpu_projection.project_forward"):
        assert stats[name][0] >= 1, (name, stats[name])  # loaded from the children's cache entries
    assert lines[-1] == "[] []"
    later = subprocess.run([sys.executable, "-c", "from splat4d.render import cpu\n" + RENDER_ONCE + RENDER_HASH],
                           env=env, capture_output=True, text=True, timeout=600)
    assert later.returncode == 0, later.stderr
    assert later.stdout.split()[-1] == lines[1]


def test_every_thread_s_first_use_waits_for_the_compiling_children(monkeypatch):
    """A video's frames may render in another thread than the fit: whichever thread comes first waits for the child
    compiling the kernels it needs, and one coming meanwhile waits too instead of compiling them itself; a failed
    child is reported, once."""
    import subprocess
    import sys
    import threading
    import warnings

    from splat4d.render import cpu

    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.6)"], stderr=subprocess.PIPE, text=True)
    failed = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit('no compiler here')"],
                              stderr=subprocess.PIPE, text=True)
    monkeypatch.setattr(cpu, "_background", [(cpu.FOREGROUND, slow), (cpu.BACKGROUND, failed)])
    done = []

    def first_use():
        cpu.wait_for_background(cpu.FOREGROUND)
        done.append(slow.poll())

    threads = [threading.Thread(target=first_use) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done == [0, 0]  # both returned after the child had ended
    assert cpu._background == [(cpu.BACKGROUND, failed)]  # the other group is left to its own first users
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cpu.wait_for_background()
        cpu.wait_for_background()
    assert [str(w.message) for w in caught] == [
        "compiling the CPU kernels in a background process failed (no compiler here); they compile in this one instead"]
    assert cpu._background == []


def _projection_case(dtype):
    """2,000 Gaussians with random (unnormalised) quaternions seen by two cameras, one so close and turned that
    many Gaussians fall outside gsplat's 1.3x field-of-view clamp, with a skewed K."""
    g = torch.Generator().manual_seed(5)
    means = random_scene(2000, seed=3, dtype=dtype).means.detach().clone().requires_grad_(True)
    quats = (torch.randn(2000, 4, generator=g, dtype=dtype) * 2).requires_grad_(True)
    scales = (torch.rand(2000, 3, generator=g, dtype=dtype) * 0.05 + 0.001).requires_grad_(True)
    view = torch.eye(4, dtype=dtype).repeat(2, 1, 1)
    view[0, 2, 3] = 2.5
    a = 0.7
    view[1, :3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]],
                                   dtype=dtype)
    view[1, 2, 3] = 1.2
    K = torch.tensor([[200.0, 0.5, 64], [0, 190.0, 50], [0, 0, 1]], dtype=dtype).repeat(2, 1, 1)
    return means, quats, scales, view, K


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_projection_matches_gsplat_torch(dtype):
    """splat4d's numba projection against gsplat's own torch functions: values and gradients (float64: to
    rounding; float32: the numba path computes in float64, so it differs from gsplat's float32 by gsplat's error)."""
    from gsplat.cuda import _torch_impl as gs

    from splat4d.render.cpu_projection import project_gaussians

    means, quats, scales, view, K = _projection_case(dtype)
    cov, _ = gs._quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=False)
    _, m2, depths, conics, _ = gs._fully_fused_projection(means, cov, view, K, 128, 100, eps2d=0.3)
    ours = project_gaussians(means, quats, scales, view, K, 128, 100, 0.3)
    valid = depths.detach() > 0.01
    x = m2.detach()[..., 0]
    assert ((x < -0.15 * 128) | (x > 1.15 * 128))[valid].any()  # some outside gsplat's clamp: J uses the clamp
    tol = 1e-10 if dtype == torch.float64 else 2e-3
    for ref, got in zip((m2, conics, depths), ours):
        rel = ((ref - got).abs() / (ref.abs() + 1e-3)).detach()[valid]
        assert float(rel.max()) < tol
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(o.shape, generator=g, dtype=dtype) for o in ours]

    def loss(outs):
        return sum((o * w * (valid[..., None] if o.dim() == 3 else valid)).sum() for o, w in zip(outs, weights))

    ref_grads = torch.autograd.grad(loss((m2, conics, depths)), (means, quats, scales))
    our_grads = torch.autograd.grad(loss(ours), (means, quats, scales))
    for ref, got in zip(ref_grads, our_grads):
        assert float((ref - got).norm() / ref.norm()) < (1e-10 if dtype == torch.float64 else 1e-4)


def test_fused_projection_gradcheck():
    from splat4d.render.cpu_projection import project_gaussians

    means, quats, scales, view, K = _projection_case(torch.float64)
    leaf = [t.detach()[:25].clone().requires_grad_(True) for t in (means, quats, scales)]
    assert torch.autograd.gradcheck(lambda m, q, s: project_gaussians(m, q, s, view, K, 128, 100, 0.3), leaf)


@pytest.mark.parametrize("tile", [16, 8, 5])
def test_numba_binning_equals_sorted_binning(tile):
    """The CPU's binning (one depth sort, then boxes and a counting sort in numba) gives exactly the tile lists of
    the key-sort binning (tiles front to back, ties in Gaussian order), over two cameras and a tile size that does
    not divide the image."""
    from splat4d.render import binning
    from splat4d.render.projection import project

    scene = random_scene(3000, seed=2, scale_range=(0.005, 0.06))
    scene.means.data[:10] = scene.means.data[10:20]  # exact depth ties
    cams = front_cameras(61, 45, dtype=torch.float32, n=2)
    proj = project(scene, cams)
    valid, n = proj.valid.reshape(-1), proj.depths.shape[1]
    fv = valid.nonzero()[:, 0]
    tiles_x, tiles_y = -(-61 // tile), -(-45 // tile)
    m2d, ext = proj.means2d.detach().reshape(-1, 2)[fv], proj.extents.reshape(-1, 2)[fv]
    box = [torch.floor((m2d[:, i] + sgn * ext[:, i]) / tile).clamp(0, lim - 1).long()
           for i, sgn, lim in ((0, -1, tiles_x), (0, 1, tiles_x), (1, -1, tiles_y), (1, 1, tiles_y))]
    counts = (box[1] - box[0] + 1) * (box[3] - box[2] + 1)
    args = (fv, fv // n, proj.depths.detach(), *box, counts, tiles_x, tiles_y, tile, 2 * tiles_x * tiles_y)
    sorted_ = binning._bin_sorted(*args)
    fast = binning.bin_gaussians(proj.means2d.detach(), proj.extents, proj.depths.detach(), proj.valid, 61, 45, tile)
    assert fast.flat_ids.numel() > 3000
    assert torch.equal(fast.tile_offsets, sorted_.tile_offsets)
    assert torch.equal(fast.flat_ids, sorted_.flat_ids)


def test_cpu_binning_is_the_same_for_any_thread_count():
    """bin_boxes splits the sorted Gaussians into one chunk per thread; the bins must not depend on how many."""
    import numba

    from splat4d.render import binning
    from splat4d.render.projection import project

    scene = random_scene(20000, seed=6, scale_range=(0.005, 0.04))
    cams = front_cameras(96, 80, dtype=torch.float32, n=2)
    proj = project(scene, cams)
    args = (proj.means2d.detach(), proj.extents, proj.depths.detach(), proj.valid, 96, 80, 8)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = binning.bin_gaussians(*args)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = binning.bin_gaussians(*args)
    finally:
        numba.set_num_threads(before)
    assert one.flat_ids.numel() > 20000
    assert torch.equal(one.tile_offsets, many.tile_offsets) and torch.equal(one.flat_ids, many.flat_ids)

"""splat4d's fused numba projection pass (projection, support boxes, SH colours; forward and hand-written
backward) against the torch path it replaces (gsplat's torch projection, ``support_extents``, gsplat's torch SH)."""

import math

import pytest
import torch

from splat4d.render.projection import project, support_extents
from splat4d.synthetic import random_scene
from splat4d.types import GaussianScene
from tests.helpers import front_cameras


def _leaf(scene, dtype):
    return GaussianScene(**{k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in scene.items()})


def _scene(degree, dtype, n=1500, seed=0):
    scene = random_scene(n, sh_degree=degree, seed=seed, dtype=torch.float64, scale_range=(0.005, 0.08))
    g = torch.Generator().manual_seed(seed)
    scene.shN.data = torch.randn(scene.shN.shape, generator=g, dtype=torch.float64) * 0.4  # strong view dependence
    scene.sh0.data[: n // 5] -= 3.0  # some colours clamp at 0
    scene.means.data[:40, 2] -= 6.0  # some behind the cameras
    return _leaf(scene, dtype)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_pass_matches_torch_path_values_boxes_and_gradients(degree, dtype):
    cams = front_cameras(61, 45, n=3).to("cpu", dtype)
    ref_scene, our_scene = _scene(degree, dtype), _scene(degree, dtype)
    ref = project(ref_scene, cams, fused=False)
    ours = project(our_scene, cams)
    valid = ref.valid
    assert valid.sum() > 1000 and (~valid).sum() > 40
    assert torch.equal(ours.valid, valid)
    tol = 1e-9 if dtype == torch.float64 else 2e-3
    for name in ("means2d", "conics", "depths", "colors"):
        r, o = getattr(ref, name).detach(), getattr(ours, name).detach()
        rel = (r - o).abs() / (r.abs() + 1e-3)
        assert float(rel[valid].max()) < tol, name
    assert float(((ref.colors == 0) & valid[..., None]).sum()) > 100  # the clamp is exercised
    # The support boxes: the same formula on the same (rounded) values, float64 inside.
    torch.testing.assert_close(ours.extents, ref.extents, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-6)
    assert (ours.extents[~valid] == 0).all()
    # Gradients of a loss over every differentiable output, valid Gaussians only.
    g = torch.Generator().manual_seed(degree)
    ws = {k: torch.randn(getattr(ref, k).shape, generator=g, dtype=dtype) for k in ("means2d", "conics", "depths",
                                                                                      "colors")}

    def loss(p):
        m = p.valid.to(dtype)
        return sum((getattr(p, k) * w * (m[..., None] if w.dim() == 3 else m)).sum() for k, w in ws.items())

    loss(ref).backward()
    loss(ours).backward()
    for key in ("means", "quats", "scales", "sh0", "shN"):
        r, o = getattr(ref_scene, key).grad, getattr(our_scene, key).grad
        if r is None or r.numel() == 0:
            continue
        assert r.abs().max() > 0, key
        rel = float((r - o).norm() / r.norm())
        assert rel < (1e-9 if dtype == torch.float64 else 1e-4), (key, rel)


def test_fused_pass_gradcheck_with_sh_degree_3():
    from splat4d.render.cpu_projection import project_full

    scene = _scene(3, torch.float64, n=12, seed=4)
    cams = front_cameras(40, 30, n=2)
    viewmats, Ks, centers = cams.viewmats(), cams.K, cams.centers()
    opac = torch.sigmoid(scene.opacities.detach())

    def fn(means, quats, scales, coeffs):
        out = project_full(means, quats, scales, coeffs, opac, 3, viewmats, Ks, centers, 40, 30, 0.3)
        return out[:4]

    inputs = (scene.means.detach().clone().requires_grad_(True), scene.quats.detach().clone().requires_grad_(True),
              torch.exp(scene.scales.detach()).requires_grad_(True),
              torch.cat([scene.sh0, scene.shN], 1).detach().clone().requires_grad_(True))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_fused_pass_colours_given_and_lower_degree():
    """``colors=`` bypasses SH; ``sh_degree`` below the scene's uses only the first (d+1)^2 coefficients."""
    cams = front_cameras(32, 32, n=2, dtype=torch.float32)
    scene = _scene(3, torch.float32, n=300, seed=2)
    given = torch.rand(300, 3)
    p = project(scene, cams, colors=given)
    assert torch.equal(p.colors, given[None].expand(2, -1, -1))
    for d in (0, 1, 2):
        ours, ref = project(scene, cams, sh_degree=d), project(scene, cams, sh_degree=d, fused=False)
        torch.testing.assert_close(ours.colors, ref.colors, rtol=1e-5, atol=1e-5)


def test_support_boxes_agree_with_torch_support_extents_formula():
    """extents from the fused pass equal support_extents of the pass's own outputs (one Gaussian, analytic)."""
    z, s, o, f = 2.0, 0.05, 0.8, 100.0
    scene = GaussianScene.from_activated(torch.tensor([[0.0, 0.0, z]]), torch.full((1, 3), s),
                                         torch.tensor([[0.2, 0.4, 0.6]]), torch.tensor([o]))
    from splat4d.types import Cameras

    cams = Cameras(torch.eye(4), torch.tensor([[f, 0, 32.0], [0, f, 32.0], [0, 0, 1]]), 64, 64)
    p = project(scene, cams)
    ext, valid = support_extents(p.means2d, p.conics, p.depths, p.opacities, cams, 0.01, 1e10)
    var = (s * f / z) ** 2 + 0.3
    r = math.sqrt(2 * var * math.log(255 * o)) * (1 + 1e-4) + 1e-3
    torch.testing.assert_close(p.extents, torch.full((1, 1, 2), r), rtol=1e-5, atol=0)
    torch.testing.assert_close(p.extents, ext, rtol=1e-6, atol=0)
    assert p.valid.all() and valid.all()

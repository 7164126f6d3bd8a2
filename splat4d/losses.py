"""Image losses and metrics: SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5), PSNR, masked L1."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _gaussian_1d(size: int = 11, sigma: float = 1.5, dtype=torch.float32) -> Tensor:
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(stacked: Tensor, g: Tensor) -> Tensor:
    """Separable Gaussian blur ('same' size, reflect padding) of (B, N, H, W) maps, one depthwise call per axis."""
    n, k = stacked.shape[1], g.numel()
    pad = k // 2
    out = F.conv2d(F.pad(stacked, (pad, pad, pad, pad), mode="reflect"), g.view(1, 1, k, 1).expand(n, 1, -1, -1),
                   groups=n)
    return F.conv2d(out, g.view(1, 1, 1, k).expand(n, 1, -1, -1), groups=n)


def _blur_adjoint(grad: Tensor, g: Tensor) -> Tensor:
    """The adjoint of :func:`_blur`: the same symmetric kernel as a 'full' correlation (zero padding k - 1), then
    the reflect padding's adjoint folds the border back."""
    n, k = grad.shape[1], g.numel()
    pad = k // 2
    out = F.conv2d(grad, g.view(1, 1, 1, k).expand(n, 1, -1, -1), groups=n, padding=(0, k - 1))
    out = F.conv2d(out, g.view(1, 1, k, 1).expand(n, 1, -1, -1), groups=n, padding=(k - 1, 0))
    h, w = grad.shape[-2:]
    return torch.ops.aten.reflection_pad2d_backward(out, grad.new_empty(grad.shape[0], n, h, w),
                                                    [pad, pad, pad, pad])


_C1, _C2 = 0.01**2, 0.03**2


def _ssim_terms(x: Tensor, y: Tensor, g: Tensor):
    """Local means, the SSIM map and its four factors of (B, C, H, W) images."""
    c = x.shape[1]
    mu_x, mu_y, exx, eyy, exy = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), g).split(c, dim=1)
    a1 = 2 * mu_x * mu_y + _C1
    a2 = 2 * (exy - mu_x * mu_y) + _C2
    b1 = mu_x**2 + mu_y**2 + _C1
    b2 = (exx - mu_x**2) + (eyy - mu_y**2) + _C2
    return mu_x, mu_y, a1, a2, b1, b2, (a1 * a2) / (b1 * b2)


class _SSIMMap(torch.autograd.Function):
    """SSIM map of (B, C, H, W) images with a closed-form gradient w.r.t. the first: with S = A1 A2 / (B1 B2),
    dS/dmu_x = S (2 mu_y / A1 - 2 mu_y / A2 - 2 mu_x / B1 + 2 mu_x / B2), dS/dE[x^2] = -S / B2, dS/dE[xy] = 2 S / A2,
    and dL/dx = blur^T(g_mu) + 2 x blur^T(g_xx) + y blur^T(g_xy): one stacked adjoint blur instead of autograd's
    convolution backward and its ~50 small ops (the fit evaluates this every step)."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, g: Tensor) -> Tensor:
        mu_x, mu_y, a1, a2, b1, b2, s = _ssim_terms(x, y, g)
        ctx.save_for_backward(x, y, g, mu_x, mu_y, a1, a2, b1, b2, s)
        return s

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y, g, mu_x, mu_y, a1, a2, b1, b2, s = ctx.saved_tensors
        gs = grad * s
        g_mu = gs * (2 * mu_y * (1 / a1 - 1 / a2) + 2 * mu_x * (1 / b2 - 1 / b1))
        g_xx = -gs / b2
        g_xy = 2 * gs / a2
        c = x.shape[1]
        back_mu, back_xx, back_xy = _blur_adjoint(torch.cat([g_mu, g_xx, g_xy], dim=1), g).split(c, dim=1)
        return back_mu + 2 * x * back_xx + y * back_xy, None, None


def ssim_map(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-pixel SSIM of (H, W, C) or (B, H, W, C) images in [0, 1] ('same' padding by reflection).

    The five local means (x, y, x^2, y^2, xy) are one separable Gaussian blur of one stacked tensor: 2 x 11 taps a
    pixel instead of 121, and two convolution calls instead of five. Differentiable w.r.t. ``a`` by the closed-form
    gradient of :class:`_SSIMMap` when ``b`` (the target) needs no gradient, else by autograd.
    """
    squeeze = a.ndim == 3
    if squeeze:
        a, b = a[None], b[None]
    x, y = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
    g = _gaussian_1d(window, sigma, x.dtype).to(x.device)
    if b.requires_grad:
        s = _ssim_terms(x, y, g)[-1]
    else:
        s = _SSIMMap.apply(x.contiguous(), y.contiguous(), g)
    s = s.permute(0, 2, 3, 1)
    return s[0] if squeeze else s


def ssim(a: Tensor, b: Tensor) -> Tensor:
    return ssim_map(a, b).mean()


def psnr(a: Tensor, b: Tensor, mask: Tensor | None = None) -> float:
    """PSNR in dB for images in [0, 1]; ``mask`` (H, W) restricts it to some pixels."""
    err = (a.detach().float() - b.detach().float()) ** 2
    if mask is not None:
        err = err[mask.bool()]
    mse = float(err.mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def mask_iou(a: Tensor, b: Tensor, threshold: float = 0.5) -> float:
    x, y = a > threshold, b > threshold
    union = int((x | y).sum())
    return 1.0 if union == 0 else int((x & y).sum()) / union

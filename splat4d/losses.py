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


def ssim_map(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-pixel SSIM of (H, W, C) or (B, H, W, C) images in [0, 1] ('same' padding by reflection).

    The five local means (x, y, x^2, y^2, xy) are one separable Gaussian blur of one stacked tensor: 2 x 11 taps a
    pixel instead of 121, and two convolution calls instead of five (the fit computes this every step).
    """
    squeeze = a.ndim == 3
    if squeeze:
        a, b = a[None], b[None]
    x, y = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
    channels = x.shape[1]
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    n = stacked.shape[1]
    g = _gaussian_1d(window, sigma, x.dtype).to(x.device)
    pad = window // 2
    blurred = F.conv2d(F.pad(stacked, (pad, pad, pad, pad), mode="reflect"), g.view(1, 1, window, 1).expand(n, 1, -1, -1),
                       groups=n)
    blurred = F.conv2d(blurred, g.view(1, 1, 1, window).expand(n, 1, -1, -1), groups=n)
    mu_x, mu_y, exx, eyy, exy = blurred.split(channels, dim=1)
    sxx = exx - mu_x**2
    syy = eyy - mu_y**2
    sxy = exy - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
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

"""Temporally consistent video depth from any per-frame estimator, the DepthCrafter way.

Per-frame relative (or disparity) depth flickers: each frame comes with its own unknown scale and shift. The clip is
cut into overlapping windows; inside a window every frame is aligned (least-squares scale and shift over the
object's pixels) to the window's first frame; each window is then aligned to the already stitched clip on the frames
they share, so one scale and shift hold for the whole clip; overlaps are blended with linear ramps.
"""

from __future__ import annotations

import numpy as np


def fit_scale_shift(src: np.ndarray, dst: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """(s, t) minimising || s * src + t - dst ||^2 over ``valid``."""
    x, y = src[valid].astype(np.float64), dst[valid].astype(np.float64)
    if x.size < 2 or np.ptp(x) == 0:
        return 1.0, float(np.mean(y - x)) if x.size else 0.0
    A = np.stack([x, np.ones_like(x)], 1)
    (s, t), *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(s), float(t)


def consistent_video_depth(depths: np.ndarray, masks: np.ndarray | None = None, window: int = 16,
                           overlap: int = 4) -> np.ndarray:
    """(T, H, W) per-frame depths with per-frame scale/shift ambiguity -> (T, H, W) sharing one scale/shift.

    ``masks`` (T, H, W) bool/float select the pixels used for alignment (default: all).
    """
    T = depths.shape[0]
    masks = _bool_masks(depths, masks)
    if window <= overlap:
        raise ValueError("window must be larger than overlap")
    step = window - overlap
    out = np.zeros(depths.shape, np.float64)
    weight = np.zeros(T, np.float64)
    start = 0
    while True:
        end = min(start + window, T)
        frames = range(start, end)
        ref = start
        # Inside the window: every frame onto the window's first frame.
        win = np.stack([_apply(depths[t], *fit_scale_shift(depths[t], depths[ref], masks[t] & masks[ref]))
                        for t in frames])
        # The window onto the clip stitched so far (the frames both cover), one scale and shift for it.
        if start > 0:
            shared = [t for t in frames if weight[t] > 0]
            src = np.concatenate([win[t - start][masks[t]] for t in shared])
            dst = np.concatenate([(out[t] / weight[t])[masks[t]] for t in shared])
            s, b = fit_scale_shift(src, dst, np.ones_like(src, bool))
            win = s * win + b
        # Linear ramps over the overlaps.
        ramp = np.ones(end - start)
        if start > 0:
            n = min(overlap, end - start)
            ramp[:n] = (np.arange(n) + 1) / (n + 1)
        if end < T:
            n = min(overlap, end - start)
            ramp[-n:] = np.minimum(ramp[-n:], (np.arange(n)[::-1] + 1) / (n + 1))
        for i, t in enumerate(frames):
            out[t] += ramp[i] * win[i]
            weight[t] += ramp[i]
        if end == T:
            break
        start += step
    return (out / weight[:, None, None]).astype(np.float32)


def _bool_masks(depths: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    """``masks`` as booleans (> 0.5), or every pixel when None."""
    return np.ones(depths.shape, bool) if masks is None else masks > 0.5


def _apply(d: np.ndarray, s: float, t: float) -> np.ndarray:
    return s * d.astype(np.float64) + t


def temporal_change(depths: np.ndarray, masks: np.ndarray | None = None) -> float:
    """Mean over frames of median |d_{t+1} - d_t| / median |d| on shared pixels: 0 for a perfectly stable static
    scene; per-frame scale/shift flicker makes it large."""
    T = depths.shape[0]
    masks = _bool_masks(depths, masks)
    values = []
    for t in range(T - 1):
        m = masks[t] & masks[t + 1]
        scale = np.median(np.abs(depths[t][m])) + 1e-12
        values.append(np.median(np.abs(depths[t + 1][m] - depths[t][m])) / scale)
    return float(np.mean(values)) if values else 0.0

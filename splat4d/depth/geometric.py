"""Offline depth by silhouette inflation (no learned weights).

Assumptions, stated once: the object is seen roughly side-on, its cross-sections are round, and it is about as thick
as it is wide where it is narrow. Then a good height field above the image plane is the solution of a Poisson problem
inside the mask (Johnston's "Lumo", Igarashi's "Teddy"):

    -laplacian(u) = 2 inside the mask,  u = 0 outside,   height = thickness * sqrt(2 u)

For a disc of radius R, u = (R^2 - r^2) / 2, so the height is exactly the hemisphere sqrt(R^2 - r^2); a long strip
of half-width a gets an elliptical cross-section sqrt(2) * sqrt(a^2 - y^2) (1D: u = a^2 - y^2), a little deeper than
round. A small relief term adds image detail (brighter = nearer),
the classic shape-from-shading prior. Heights are in pixels; ``splat4d.init`` turns them into camera depths.
"""

from __future__ import annotations

import numpy as np

from splat4d.config import DepthConfig
from splat4d.types import DepthMap


def poisson_height(mask: np.ndarray, profile: float = 0.5, free: np.ndarray | None = None,
                   reach: int = 1) -> np.ndarray:
    """sqrt(2 u) with -laplacian(u) = 2 inside ``mask`` (bool), u = 0 outside; 5-point stencil, sparse direct solve.

    ``profile`` != 0.5 reshapes the cross-section to sqrt(2 u_max) * (u / u_max)^profile (same peak height).
    ``free`` (bool, like ``mask``): where the photo's frame ends (``Frames.outside``). A boundary of the mask that
    faces it, ``free`` within ``reach`` pixels straight ahead, is free instead (zero flux, du/dn = 0): an object
    cut off by the frame goes on to the edge rather than closing to 0 there (a bar cut by the frame stays a
    half-cylinder up to the cut), while its sides running toward the frame stay fixed. Ignored where it would
    leave no fixed boundary."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    h, w = mask.shape
    inside = np.zeros((h + 2, w + 2), dtype=bool)
    inside[1:-1, 1:-1] = mask
    idx = -np.ones(inside.shape, dtype=np.int64)
    ys, xs = np.nonzero(inside)
    n = len(ys)
    if n == 0:
        return np.zeros((h, w), np.float64)
    idx[ys, xs] = np.arange(n)
    frame = np.zeros(inside.shape, dtype=bool)
    if free is not None:
        frame[1:-1, 1:-1] = np.asarray(free, bool)
    diagonal = np.full(n, 4.0)
    rows, cols, vals = [], [], []
    fixed = 0
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        nb = idx[ys + dy, xs + dx]
        ok = nb >= 0
        rows.append(np.arange(n)[ok])
        cols.append(nb[ok])
        vals.append(np.full(int(ok.sum()), -1.0))
        ahead = np.zeros(len(ys), dtype=bool)  # the frame within ``reach`` pixels beyond the boundary, straight on
        for k in range(1, max(1, reach) + 1) if free is not None else ():
            ahead |= frame[np.clip(ys + k * dy, 0, h + 1), np.clip(xs + k * dx, 0, w + 1)]
        reflect = ~ok & ahead
        diagonal -= reflect
        fixed += int((~ok & ~reflect).sum())
    if fixed == 0:  # the frame all round: a zero-flux problem has no solution, keep the plain one
        return poisson_height(mask, profile)
    rows, cols, vals = [np.arange(n)] + rows, [np.arange(n)] + cols, [diagonal] + vals
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    u = spla.spsolve(A.tocsc(), np.full(n, 2.0))
    u = np.maximum(u, 0.0)
    out = np.zeros((h + 2, w + 2))
    if profile == 0.5:
        out[ys, xs] = np.sqrt(2.0 * u)
    else:
        peak = max(float(u.max()), 1e-12)
        out[ys, xs] = np.sqrt(2.0 * peak) * (u / peak) ** profile
    return out[1:-1, 1:-1]


class GeometricDepth:
    """Silhouette inflation as metric camera depth for splat4d's input camera (vertical FoV ``fov_deg``, object
    centre plane at ``distance``): ``z = distance - thickness * height_px * distance / focal_px``, so the rim lies on
    the centre plane and a disc becomes a hemisphere. ``confidence`` is 1 in the interior and falls to 0.3 at the
    rim, where inflation is a guess. ``outside`` (H, W): where the working image lies outside the photo
    (``Frames.outside``); the inflation runs on to the frame where the object meets it (:meth:`heights`).
    """

    def __init__(self, cfg: DepthConfig, fov_deg: float = 40.0, distance: float = 2.5,
                 outside: np.ndarray | None = None):
        self.cfg = cfg
        self.fov_deg = fov_deg
        self.distance = distance
        self.outside = outside

    def heights(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Height above the centre plane in pixels (0 off the object). Where the mask's boundary faces the photo's
        frame (``outside``, ``Frames.outside``) within ``FRAME_REACH`` of the image (a segmenter's mask stops a
        little short of the frame) it is free, so an object cut by the frame is not closed there."""
        import cv2

        from splat4d.shape.framing import FRAME_REACH, checked_outside

        fg = mask > 0.5
        outside = checked_outside(self.outside, fg.shape)
        frame = None if outside is None else outside > 0.5
        reach = max(1, int(round(FRAME_REACH * fg.shape[0])))
        height = self.cfg.thickness * poisson_height(fg, self.cfg.profile, frame, reach)
        if self.cfg.relief:
            lum = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            detail = lum - cv2.GaussianBlur(lum, (0, 0), self.cfg.relief_sigma)
            height = height + self.cfg.relief * detail * np.minimum(1.0, height / 4.0)  # fade out at the rim
        return np.where(fg, np.maximum(height, 0.0), 0.0)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> DepthMap:
        import math

        fg = mask > 0.5
        focal = 0.5 * mask.shape[0] / math.tan(math.radians(self.fov_deg) / 2)
        if fg.mean() >= self.cfg.scene_coverage:
            return self.scene_depth(image, fg)
        height = self.heights(image, mask)
        peak = max(float(height.max()), 1e-6)
        confidence = 0.3 + 0.7 * np.clip(height / (0.25 * peak), 0, 1)
        return DepthMap.on_mask(self.distance - height * self.distance / focal, fg, confidence=confidence)

    def scene_depth(self, image: np.ndarray, fg: np.ndarray) -> DepthMap:
        """A whole-frame scene (no object cut out): inflating the frame would make a dome. The prior is instead a
        ground plane seen from eye height, the usual layout of photographs: disparity grows linearly from the top
        row (at ``distance``) to the bottom row (at half of it), plus the relief term as disparity detail."""
        import cv2

        h, w = fg.shape
        rows = (np.arange(h, dtype=np.float64)[:, None] + 0.5) / h
        disparity = np.broadcast_to(1.0 + rows, (h, w)).copy()  # in units of 1 / distance
        if self.cfg.relief:
            lum = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            disparity += 0.02 * self.cfg.relief * (lum - cv2.GaussianBlur(lum, (0, 0), self.cfg.relief_sigma))
        depth = self.distance / np.maximum(disparity, 0.25)
        return DepthMap.on_mask(depth, fg, confidence=0.3)

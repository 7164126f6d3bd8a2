"""Stereo depth: OpenCV semi-global block matching (SGBM) on a rectified pair, with a left-right consistency check
as confidence. Disparity d (pixels) relates to depth by z = f * B / d (focal f in pixels, baseline B)."""

from __future__ import annotations

import numpy as np

from splat4d.types import DepthMap


def _grey8(image: np.ndarray) -> np.ndarray:
    import cv2

    img = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8) if image.dtype != np.uint8 else image
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def sgbm_disparity(left: np.ndarray, right: np.ndarray, num_disparities: int = 64, block_size: int = 5,
                   lr_tolerance: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Left-view disparity (pixels, float) and confidence (1 where left-right consistent and valid, else 0).

    ``left``/``right`` (H, W, 3) float in [0, 1] or uint8, rectified (epipolar lines are rows).
    """
    import cv2

    num_disparities = max(16, int(np.ceil(num_disparities / 16)) * 16)
    params = dict(minDisparity=0, numDisparities=num_disparities, blockSize=block_size,
                  P1=8 * 3 * block_size**2, P2=32 * 3 * block_size**2, disp12MaxDiff=1, uniquenessRatio=10,
                  speckleWindowSize=100, speckleRange=2, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    gl, gr = _grey8(left), _grey8(right)
    disp_l = cv2.StereoSGBM_create(**params).compute(gl, gr).astype(np.float32) / 16.0
    # Right-view disparity by matching the horizontally flipped pair.
    disp_r = cv2.StereoSGBM_create(**params).compute(gr[:, ::-1].copy(), gl[:, ::-1].copy()).astype(np.float32)
    disp_r = disp_r[:, ::-1] / 16.0
    h, w = disp_l.shape
    cols = np.arange(w)[None, :].repeat(h, 0)
    target = np.clip(np.round(cols - disp_l).astype(int), 0, w - 1)
    back = np.take_along_axis(disp_r, target, axis=1)
    valid = (disp_l > 0) & (cols - disp_l >= 0)
    consistent = valid & (np.abs(disp_l - back) <= lr_tolerance)
    return np.where(valid, disp_l, 0.0).astype(np.float32), consistent.astype(np.float32)


def fill_invalid(disparity: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Fill unconfident pixels along each scanline with the smaller (farther) of the nearest confident disparities
    to their left and right: holes in stereo are mostly occlusions, which belong to the background."""
    known = confidence > 0.5
    h, w = disparity.shape
    if not known.any():
        return disparity
    cols = np.arange(w)[None, :].repeat(h, 0)
    left_idx = np.maximum.accumulate(np.where(known, cols, -1), axis=1)
    right_idx = np.minimum.accumulate(np.where(known, cols, w)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(h)[:, None].repeat(w, 1)
    big = np.float32(np.inf)
    from_left = np.where(left_idx >= 0, disparity[rows, np.clip(left_idx, 0, w - 1)], big)
    from_right = np.where(right_idx < w, disparity[rows, np.clip(right_idx, 0, w - 1)], big)
    fill = np.minimum(from_left, from_right)
    row_has = known.any(axis=1, keepdims=True)
    fill = np.where(np.isfinite(fill), fill, np.median(disparity[known]))
    return np.where(known, disparity, np.where(row_has, fill, np.median(disparity[known]))).astype(np.float32)


class StereoDepth:
    """``DepthEstimator`` (and ``VideoDepthEstimator``) for the left view of a rectified pair or stereo clip.

    ``right``: the right view (H, W, 3), or (T, H, W, 3) for a clip; ``left`` likewise replaces the images the
    pipeline passes (composited over white) for matching when given. Returns ``kind='disparity'`` (pixels); metric
    depth ``f * B / d`` when ``focal_px`` and ``baseline`` are given; or, with ``distance``, metric depth
    ``distance * median(d) / d`` (unknown baseline: perspective-correct shape, the object's median depth put at the
    pipeline's camera distance; for a clip one scale from the first frame, see :func:`stereo_video_depth`).
    """

    def __init__(self, right: np.ndarray, num_disparities: int = 64, block_size: int = 5,
                 focal_px: float | None = None, baseline: float | None = None, distance: float | None = None,
                 left: np.ndarray | None = None):
        self.rights = right if right.ndim == 4 else right[None]
        self.lefts = None if left is None else (left if left.ndim == 4 else left[None])
        self.num_disparities = num_disparities
        self.block_size = block_size
        self.focal_px, self.baseline, self.distance = focal_px, baseline, distance

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> DepthMap:
        left = image if self.lefts is None else self.lefts[0]
        disp, conf = sgbm_disparity(left, self.rights[0], self.num_disparities, self.block_size)
        disp = np.maximum(fill_invalid(disp, conf), 0.25)
        fg = mask > 0.5
        if self.focal_px and self.baseline:
            depth = self.focal_px * self.baseline / disp
        elif self.distance:
            depth = self.distance * float(np.median(disp[fg])) / disp
        else:
            return DepthMap.on_mask(disp, fg, kind="disparity", confidence=conf)
        return DepthMap.on_mask(depth, fg, kind="metric", confidence=conf)

    def video(self, frames: np.ndarray, masks: np.ndarray) -> list[DepthMap]:
        """Metric depth of every frame of the clip with one scale (motion towards the camera is kept)."""
        if len(self.rights) != len(frames):
            raise ValueError(f"{len(frames)} left frames but {len(self.rights)} right ones")
        lefts = frames if self.lefts is None else self.lefts
        return stereo_video_depth(lefts, self.rights, masks, self.num_disparities, self.distance or 2.5,
                                  self.block_size)


def split_side_by_side(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) halves of a side-by-side stereo frame (left view on the left)."""
    w = frame.shape[1]
    if w % 2:
        raise ValueError(f"a side-by-side stereo frame needs an even width, got {w}")
    return frame[:, : w // 2], frame[:, w // 2:]


def stereo_video_depth(lefts: np.ndarray, rights: np.ndarray, masks: np.ndarray, num_disparities: int = 64,
                       distance: float = 2.5, block_size: int = 5) -> list[DepthMap]:
    """Metric depth for each frame of a rectified stereo clip, with one scale for the whole clip.

    z = f B / d holds in every frame with the same unknown f B, so one constant k = distance * median(d_0) (the
    object's median depth in the first frame put at the pipeline's camera distance) makes z_t = k / d_t: motion
    towards or away from the camera is kept, where a per-frame scale would remove it.
    """
    disparities, confidences = [], []
    for left, right in zip(lefts, rights):
        disp, conf = sgbm_disparity(left, right, num_disparities, block_size)
        disparities.append(np.maximum(fill_invalid(disp, conf), 0.25))
        confidences.append(conf)
    fg0 = masks[0] > 0.5
    k = distance * float(np.median(disparities[0][fg0] if fg0.any() else disparities[0]))
    out = []
    for disp, conf, mask in zip(disparities, confidences, masks):
        fg = mask > 0.5
        out.append(DepthMap.on_mask(k / disp, fg, kind="metric", confidence=conf))
    return out

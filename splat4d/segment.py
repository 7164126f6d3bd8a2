"""Stage 2: foreground mask, then centre the object and pad to a square working image.

Mask sources: the alpha channel when it has one; otherwise a border-colour model seeds OpenCV's GrabCut (pixels
along the image border are background; pixels far from every border colour are probably foreground), then the largest
connected component is kept and its holes filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splat4d.config import SegmentConfig
from splat4d.io.video import to_uint8
from splat4d.load import InputError, LoadedImage


@dataclass
class Segmented:
    image: np.ndarray
    """(R, R, 3) float32 object composited over white, centred and padded."""
    mask: np.ndarray
    """(R, R) float32 in [0, 1]."""
    method: str
    """Which mask source was used."""
    box: tuple[int, int, int, int]
    """(x0, y0, side, side): the square of the original image that became the working image (may extend outside)."""
    outside: np.ndarray | None = None
    """(R, R) float32: the fraction of each working pixel outside the original image (:func:`outside_of_frame`)."""


def has_useful_alpha(alpha: np.ndarray | None, max_fraction: float = 0.98) -> bool:
    """The alpha channel is a cut-out: some of it is transparent, and not all but a sliver of it is opaque (an
    opaque photo saved as RGBA, or with one transparent corner, is segmented by its colours instead)."""
    return (alpha is not None and float((alpha < 0.5).mean()) > 0.001
            and float((alpha > 0.5).mean()) <= max_fraction)


SIDE_SHARE = 0.1  # a border colour is background when it holds this much of two sides' strips (or is the commonest)


def border_colour_seed(rgb: np.ndarray, border: int) -> np.ndarray:
    """Colour distance of every pixel to its nearest border colour cluster (the background model), in [0, ~1.7].
    A cluster is background when it holds ``SIDE_SHARE`` of the strip along at least two of the image's four sides
    (or is the commonest): the background runs around the object, while an object the frame cuts off shows in the
    strip of that one side only. With it in the model, on a plain background k-means gave the object's colour a
    cluster of its own and every pixel of the object was "background" (no object found)."""
    import cv2

    h, w = rgb.shape[:2]
    b = max(1, min(border, h // 4, w // 4))
    sides = [rgb[:b].reshape(-1, 3), rgb[-b:].reshape(-1, 3), rgb[:, :b].reshape(-1, 3), rgb[:, -b:].reshape(-1, 3)]
    strip = np.concatenate(sides).astype(np.float32)
    k = min(5, len(strip))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1e-3)
    cv2.setRNGSeed(0)
    _, labels, centers = cv2.kmeans(strip, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    labels = labels.ravel()
    bounds = np.cumsum([0] + [len(p) for p in sides])
    shares = np.stack([np.bincount(labels[a:z], minlength=k) / (z - a) for a, z in zip(bounds[:-1], bounds[1:])])
    keep = ((shares >= SIDE_SHARE).sum(0) >= 2) | (np.bincount(labels, minlength=k) == np.bincount(labels).max())
    dist = np.linalg.norm(rgb[:, :, None, :] - centers[keep][None, None], axis=-1).min(axis=-1)
    return dist


def grabcut_mask(rgb: np.ndarray, cfg: SegmentConfig, resolution: int | None = None) -> np.ndarray:
    """The object's mask (H, W) float32 in {0, 1}: the border-colour seed and GrabCut, then the largest component.
    An image over ``max(cfg.grabcut_side, 2 * resolution)`` px a side (``resolution``: the working image's) is
    segmented at that size and its outline refined on a crop around the object at up to that size, then scaled up:
    GrabCut's time grows with the pixels (2048 px: 24 s, 640 px: about 1.5 s on this 2-core CPU), while the working
    image needs no finer mask than it has pixels (docs/reliability.md section 5)."""
    import cv2

    h, w = rgb.shape[:2]
    side = max(cfg.grabcut_side, 2 * (resolution or 0))
    if max(h, w) <= side:
        return clean_mask(_grabcut(rgb, cfg)).astype(np.float32)
    s = side / max(h, w)
    coarse = clean_mask(_grabcut(downscaled(rgb, side), cfg))
    if not coarse.any():
        return np.zeros((h, w), np.float32)
    # The crop: the coarse object's box and a margin of 4 coarse pixels and 5% of its side, in the image's pixels.
    ys, xs = np.nonzero(coarse)
    margin = 4 + 0.05 * max(np.ptp(xs), np.ptp(ys))
    x0, x1 = (max(0, int((xs.min() - margin) / s)), min(w, int(np.ceil((xs.max() + 1 + margin) / s))))
    y0, y1 = (max(0, int((ys.min() - margin) / s)), min(h, int(np.ceil((ys.max() + 1 + margin) / s))))
    crop = rgb[y0:y1, x0:x1]
    f = min(1.0, side / max(crop.shape[:2]))
    fine_rgb = downscaled(crop, side)
    size = fine_rgb.shape[1::-1]
    # The coarse mask on the crop's grid; GrabCut decides a band of two coarse pixels (and 2 px) either side of it.
    k = f / s  # fine pixels per coarse pixel; pixel centres: coarse j at (j + 0.5) / s, fine u at x0 + (u + 0.5) / f
    to_fine = np.array([[k, 0, k / 2 - f * x0 - 0.5], [0, k, k / 2 - f * y0 - 0.5]], np.float64)
    prior = cv2.warpAffine(coarse.astype(np.float32), to_fine, size, flags=cv2.INTER_LINEAR)
    inside = prior > 0.5
    band = int(np.ceil(2 * k)) + 2
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    sure_fg = cv2.erode(inside.astype(np.uint8), kernel).astype(bool)
    sure_bg = ~cv2.dilate(inside.astype(np.uint8), kernel).astype(bool)
    gc = np.where(inside, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    gc[sure_fg], gc[sure_bg] = cv2.GC_FGD, cv2.GC_BGD
    fine = _grabcut_with(fine_rgb, gc, cfg)
    if f < 1:
        fine = cv2.resize(fine.astype(np.float32), (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR) > 0.5
    full = np.zeros((h, w), bool)
    full[y0:y1, x0:x1] = fine
    return clean_mask(full).astype(np.float32)


def downscaled(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` (H, W[, C]) area-resampled so its longer side is ``max_side`` px (each side at least 1); itself
    when it is no longer than that."""
    import cv2

    scale = max_side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _grabcut(rgb: np.ndarray, cfg: SegmentConfig) -> np.ndarray:
    """GrabCut seeded by the border colours (:func:`border_colour_seed`; the border strip is background): bool
    (H, W)."""
    import cv2

    h, w = rgb.shape[:2]
    dist = border_colour_seed(rgb, cfg.border_width)
    threshold = max(0.12, float(np.quantile(dist, 0.5)))
    gc = np.where(dist > threshold, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    gc[dist > 2 * threshold] = cv2.GC_FGD
    b = max(1, min(cfg.border_width, h // 4, w // 4))
    gc[:b], gc[-b:], gc[:, :b], gc[:, -b:] = cv2.GC_BGD, cv2.GC_BGD, cv2.GC_BGD, cv2.GC_BGD
    if not (gc == cv2.GC_FGD).any() and not (gc == cv2.GC_PR_FGD).any():
        return np.zeros((h, w), bool)
    return _grabcut_with(rgb, gc, cfg)


def _grabcut_with(rgb: np.ndarray, gc: np.ndarray, cfg: SegmentConfig) -> np.ndarray:
    """OpenCV's GrabCut from the label map ``gc`` (GC_BGD / GC_FGD / GC_PR_*; updated in place): bool (H, W)."""
    import cv2

    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(to_uint8(rgb), gc, None, bgd, fgd, cfg.grabcut_iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate colour models (e.g. a flat image): fall back to the seed
        pass
    return np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD))


def clean_mask(fg: np.ndarray) -> np.ndarray:
    """Largest connected component with its holes filled."""
    import cv2
    from scipy import ndimage

    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(fg, dtype=bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return ndimage.binary_fill_holes(labels == largest)


def segment(image: LoadedImage, cfg: SegmentConfig, resolution: int) -> Segmented:
    mask, method = foreground_mask(image, cfg, resolution)
    padding = 0.0 if method == "none" else cfg.padding  # scene mode keeps the whole frame
    return centre_and_pad(image.rgb, mask, padding, resolution, method)


def foreground_mask(image: LoadedImage, cfg: SegmentConfig, resolution: int | None = None) -> tuple[np.ndarray, str]:
    """Full-frame mask (H, W) in [0, 1] and the method used; raises ``InputError`` for empty or full masks.
    ``resolution``: the working image's side, which bounds the size GrabCut runs at (:func:`grabcut_mask`)."""
    rgb = image.rgb
    method = cfg.method
    if method == "auto":
        method = "alpha" if has_useful_alpha(image.alpha, cfg.max_fraction) else "grabcut"
    if method == "alpha":
        if image.alpha is None:
            raise InputError(f"{image.path} has no alpha channel; use --segment.method grabcut (or auto)")
        mask = image.alpha.astype(np.float32)
    elif method == "grabcut":
        mask = grabcut_mask(rgb, cfg, resolution)
    elif method == "none":
        mask = np.ones(rgb.shape[:2], np.float32)
    else:
        raise ValueError(f"unknown segmentation method {method!r}")

    fraction = float((mask > 0.5).mean())
    if fraction < cfg.min_fraction:
        raise InputError(
            f"no object found in {image.path} ({method} mask covers {fraction:.2%} of the image). Give an RGBA "
            "cut-out, an image with the object on a plain background, or --segment.method none for the whole frame."
        )
    if fraction > cfg.max_fraction and method != "none":
        raise InputError(
            f"the {method} mask covers {fraction:.1%} of {image.path}: no separate object was found. Crop the object "
            "onto a plain background, or use --segment.method none to treat the whole frame as the object."
        )
    return mask, method


def centre_and_pad(rgb: np.ndarray, mask: np.ndarray, padding: float, resolution: int, method: str) -> Segmented:
    ys, xs = np.nonzero(mask > 0.5)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = int(np.ceil(max(x1 - x0, y1 - y0) / max(1e-3, 1.0 - 2.0 * padding)))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    box = (int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side, side)
    comp = rgb * mask[..., None] + (1.0 - mask[..., None])  # over white
    image = crop_square(comp, box, resolution, fill=1.0)
    mask_r = np.clip(crop_square(mask[..., None], box, resolution, fill=0.0)[..., 0], 0.0, 1.0)
    return Segmented(np.clip(image, 0, 1).astype(np.float32), mask_r.astype(np.float32), method, box,
                     outside_of_frame(box, rgb.shape[1::-1], resolution))


def outside_of_frame(box: tuple[int, int, int, int], size: tuple[int, int], resolution: int) -> np.ndarray:
    """(R, R) float32: the fraction of each pixel of the working image cut from ``box`` = (x0, y0, side, side) of
    an image of ``size`` = (width, height) (:func:`crop_square`'s geometry) that lies outside that image: where the
    photo ended, not background (the shape prior, v13, reads an object cut by the frame as going on there)."""
    w, h = size
    ones = np.broadcast_to(np.ones((1, 1, 1), np.float32), (h, w, 1))  # crop_square reads only the box's part
    inside = crop_square(ones, box, resolution, fill=0.0)[..., 0]
    return np.clip(1.0 - inside, 0.0, 1.0).astype(np.float32)


def crop_square(image: np.ndarray, box: tuple[int, int, int, int], resolution: int, fill: float) -> np.ndarray:
    """The ``box`` = (x0, y0, side, side) of ``image`` (H, W, C), padded with ``fill`` where it leaves the image,
    resized to ``resolution``. The same box on both images of a rectified stereo pair keeps them rectified."""
    import cv2

    sx, sy, side, _ = box
    h, w = image.shape[:2]
    canvas = np.full((side, side, image.shape[2]), fill, np.float32)
    ix0, iy0, ix1, iy1 = max(sx, 0), max(sy, 0), min(sx + side, w), min(sy + side, h)
    canvas[iy0 - sy:iy1 - sy, ix0 - sx:ix1 - sx] = image[iy0:iy1, ix0:ix1]
    interp = cv2.INTER_AREA if side > resolution else cv2.INTER_LINEAR
    out = cv2.resize(canvas, (resolution, resolution), interpolation=interp)
    return out if out.ndim == 3 else out[..., None]

"""Where the photo ends: objects cut off by the image frame (issue #12).

A photo often cuts its object: a cup's saucer runs off the bottom edge (the bundled coffee photo), a car's bumper
off the side. ``splat4d.segment.centre_and_pad`` then frames a mask with a straight edge where the photo stopped,
and the working image beyond that edge is white fill, not background. shape_prior_v10 had never seen that: it
takes a straight lower edge for an object standing level in front of the camera and reads a saucer cut by the
frame as seen level (30 procedural cups on saucers, 11-45 degrees up, read at 24.4 degrees on average whole and at
1.8 with the lowest tenth of the silhouette cut off). So the working image carries a plane saying which pixels lie
outside the photo (``splat4d.segment.outside_of_frame``), shape_prior_v13's tenth input, and the training data is cut by
random frame edges (:func:`cut_by_frame`) so the network learns that a silhouette ending at the frame goes on.
"""

from __future__ import annotations

import numpy as np

SIDES = ("bottom", "left", "top", "right")  # np.rot90 turns side k of SIDES onto the bottom with k turns
FRAME_REACH = 0.03  # of the working image: how far short of the photo's frame a mask may stop and still be cut by it


def checked_outside(outside: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """``outside`` (``Frames.outside``) as float32, or None; a plane of another size than the working image
    ``shape`` is refused (it belongs to another crop)."""
    if outside is None:
        return None
    if np.shape(outside) != tuple(shape):
        raise ValueError(f"the outside-of-frame plane is {np.shape(outside)}, the working image {tuple(shape)}")
    return np.asarray(outside, np.float32)


def meets_frame(mask: np.ndarray, outside: np.ndarray | None, reach: float = FRAME_REACH) -> bool:
    """Whether the object (``mask`` > 0.5) runs into the photo's frame: within ``reach`` of the image's height of
    where the working image lies outside the photo (``outside`` > 0.5, ``Frames.outside``) along at least that many
    pixels (a contact, not a corner's brush)."""
    import cv2

    if outside is None or not (np.asarray(outside) > 0.5).any():
        return False
    r = max(1, int(round(reach * mask.shape[0])))
    near = cv2.dilate((np.asarray(mask) > 0.5).astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0
    return int((near & (np.asarray(outside) > 0.5)).sum()) >= r


def cut_by_frame(rgb: np.ndarray, alpha: np.ndarray, front: np.ndarray, thickness: np.ndarray, side: str,
                 fraction: float, gap: float = 0.0, padding: float = 0.12) -> dict[str, np.ndarray]:
    """A training sample as if the photo's frame had cut it, re-framed the way ``centre_and_pad`` frames a photo.

    ``rgb`` (R, R, 3) over white, ``alpha`` (R, R), ``front`` / ``thickness`` (R, R) in crop units (NaN off the
    object): one sample of ``splat4d.shape.procedural`` (its object's box centred with a ``padding`` margin). The
    frame edge runs parallel to ``side`` of the crop (one of :data:`SIDES`) and cuts off ``fraction`` of the
    silhouette's extent across it; with ``fraction`` <= 0 it passes ``-fraction`` of that extent beyond the object
    and cuts nothing (the photo ends near the object, not through it). Beyond the edge the pixels are white fill
    with alpha 0 and no depth. ``gap`` (of the same extent): the mask also stops that far short of the edge, as a
    segmenter's mask does where the object runs dark or into the border it takes for background. The rest is
    re-framed: its box centred in a square with the same margin, resampled to R px, and ``front`` / ``thickness``
    rescaled to the new crop's width (lengths over the crop's world width).
    Returns ``rgb``, ``alpha``, ``front``, ``thickness`` and ``outside`` (R, R), 1 beyond the frame edge."""
    import cv2

    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, not {side!r}")
    k = SIDES.index(side)
    turn = lambda a: np.ascontiguousarray(np.rot90(a, k))  # noqa: E731  the side onto the bottom
    back = lambda a: np.ascontiguousarray(np.rot90(a, -k))  # noqa: E731
    rgb, alpha, front, thickness = (turn(np.asarray(a, np.float32)) for a in (rgb, alpha, front, thickness))
    r = alpha.shape[0]
    rows = np.nonzero((alpha > 0.5).any(1))[0]
    if len(rows) == 0:
        raise ValueError("cut_by_frame: the sample has no object")
    top, bottom = float(rows[0]), float(rows[-1] + 1)
    cut = int(round(bottom - fraction * (bottom - top)))
    cut = min(max(cut, int(top) + 2), r + (r // 2))  # keep at least two rows of the object
    row = np.arange(r)[:, None]
    below = row >= cut
    lost = row >= max(cut - int(round(gap * (bottom - top))), int(top) + 2)
    alpha = np.where(lost, 0.0, alpha).astype(np.float32)
    rgb = np.where(lost[..., None], 1.0, rgb).astype(np.float32)
    valid = np.isfinite(thickness) & np.isfinite(front) & ~lost
    outside = np.broadcast_to(below, alpha.shape).astype(np.float32)

    ys, xs = np.nonzero(alpha > 0.5)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    s = max(x1 - x0, y1 - y0) / max(1e-3, 1.0 - 2.0 * padding)
    ox, oy = (x0 + x1) / 2.0 - s / 2.0, (y0 + y1) / 2.0 - s / 2.0
    scale = s / r  # old pixels per new pixel
    # new pixel centre j + 0.5 sits at old coordinate ox + (j + 0.5) * scale, i.e. old index ... - 0.5
    warp = np.array([[scale, 0.0, ox + 0.5 * scale - 0.5], [0.0, scale, oy + 0.5 * scale - 0.5]], np.float32)

    def resample(a: np.ndarray, fill: float, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
        return cv2.warpAffine(a, warp, (r, r), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border,
                              borderValue=fill)

    rgb_n = resample(rgb, (1.0, 1.0, 1.0))
    alpha_n = np.clip(resample(alpha, 0.0), 0.0, 1.0)
    v_n = resample(valid.astype(np.float32), 0.0)
    ok = v_n > 0.99
    units = 1.0 / scale  # a length in old crop widths is 1 / scale of the new, smaller crop's width
    front_n = np.where(ok, resample(np.where(valid, front, 0.0).astype(np.float32), 0.0) / np.maximum(v_n, 1e-6),
                       np.nan) * units
    thick_n = np.where(ok, resample(np.where(valid, thickness, 0.0).astype(np.float32), 0.0) / np.maximum(v_n, 1e-6),
                       np.nan) * units
    outside_n = np.clip(resample(outside, 0.0, cv2.BORDER_REPLICATE), 0.0, 1.0)  # a half-plane: replicate is exact
    return {"rgb": back(np.clip(rgb_n, 0, 1)), "alpha": back(alpha_n), "front": back(front_n.astype(np.float32)),
            "thickness": back(thick_n.astype(np.float32)), "outside": back(outside_n)}


def random_cut(rng: np.random.Generator) -> tuple[str, float, float]:
    """A frame edge for :func:`cut_by_frame` (side, fraction, gap): the bottom half of the time (an object on a
    table, its front or its base cut off), else another side; cutting off 5-45% of the silhouette, or in one case
    of five passing up to 15% beyond it (the photo ends near the object without cutting it); half the time the
    mask stops up to 8% short of the edge."""
    side = "bottom" if rng.random() < 0.5 else str(rng.choice(SIDES[1:]))
    fraction = float(rng.uniform(-0.15, 0.0)) if rng.random() < 0.2 else float(rng.uniform(0.05, 0.45))
    gap = float(rng.uniform(0.0, 0.08)) if rng.random() < 0.5 else 0.0
    return side, fraction, gap

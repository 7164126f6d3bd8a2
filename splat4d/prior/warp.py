"""Offline view prior: warp (render) the initial scene into each target camera and inpaint what it cannot see.

The initial scene is the input image lifted onto the inflated front surface and its mirrored back surface, so a
render from a new pose is a depth-based warp of the input (front) or of its mirror image (back), with holes where
neither surface lands (disocclusions, thin rims). Holes inside the object's closed silhouette (not the large see-
through ones, like a ring's) are filled with OpenCV's Telea inpainting; filled pixels get low confidence. The view's
loss weight falls with its angle from the input view (``min_weight`` opposite, ``max_weight`` beside it).
"""

from __future__ import annotations


import numpy as np
import torch

from splat4d.config import PriorConfig
from splat4d.io.video import to_uint8
from splat4d.render import rasterize
from splat4d.types import Cameras, GaussianScene, Views

HOLE_ALPHA = 0.5


def close_silhouette(alpha: np.ndarray, radius: int) -> np.ndarray:
    """Morphological closing of alpha > 0.5 with a disc, then filling the enclosed gaps no larger than a
    ``4 radius`` square (disocclusion cracks): the object's expected outline. Larger enclosed background regions
    stay open: the render sees through the object there, as through a ring's or a handle's hole."""
    import cv2
    from scipy import ndimage

    solid = (alpha > HOLE_ALPHA).astype(np.uint8)
    k = 2 * radius + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    closed = cv2.morphologyEx(solid, cv2.MORPH_CLOSE, kernel) > 0
    enclosed = ndimage.binary_fill_holes(closed) & ~closed
    labels, count = ndimage.label(enclosed)
    if count == 0:
        return closed
    areas = ndimage.sum(enclosed, labels, index=np.arange(1, count + 1))
    small = 1 + np.nonzero(areas <= (4 * radius) ** 2)[0]
    return closed | np.isin(labels, small)


def inpaint_holes(rgb: np.ndarray, alpha: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (filled rgb, silhouette mask, hole mask). ``rgb`` (H, W, 3) in [0, 1] over white."""
    import cv2

    silhouette = close_silhouette(alpha, radius)
    holes = silhouette & (alpha <= HOLE_ALPHA)
    out = rgb.copy()
    if holes.any():
        img8 = to_uint8(rgb)
        # Inpaint from object pixels only: mark the background as unknown too, then keep the filled holes.
        unknown = (holes | ~silhouette).astype(np.uint8)
        filled = cv2.inpaint(img8, unknown, radius, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
        a = np.clip(alpha, 0, 1)[..., None]
        out = np.where(holes[..., None], filled * (1 - a) + rgb * a, rgb)
    return out, silhouette, holes


class WarpPrior:
    def __init__(self, cfg: PriorConfig, backend: str = "cpu"):
        self.cfg = cfg
        self.backend = backend

    def view_weight(self, input_c2w: torch.Tensor, target_c2w: torch.Tensor) -> float:
        cos = float(torch.dot(input_c2w[:3, 2], target_c2w[:3, 2]).clamp(-1, 1))  # angle between view directions
        t = 0.5 * (1 + cos)  # 1 beside the input, 0 opposite
        return self.cfg.min_weight + (self.cfg.max_weight - self.cfg.min_weight) * t

    @torch.no_grad()
    def __call__(self, input_view: Views, scene: GaussianScene, targets: Cameras) -> Views:
        bg = torch.tensor(input_view.background, dtype=torch.float32)
        images, masks, confidence, weights = [], [], [], []
        for i in range(len(targets)):
            out = rasterize(scene, targets[i], backend=self.backend, background=bg)
            rgb = out.rgb[0].clamp(0, 1).cpu().numpy()
            alpha = out.alpha[0, ..., 0].cpu().numpy()
            filled, silhouette, holes = inpaint_holes(rgb, alpha, self.cfg.inpaint_radius)
            mask = np.where(holes, 1.0, np.where(silhouette, np.maximum(alpha, HOLE_ALPHA), alpha))
            images.append(torch.from_numpy(filled).float())
            masks.append(torch.from_numpy(mask).float())
            confidence.append(torch.from_numpy(np.where(holes, 0.3, 1.0)).float())
            weights.append(self.view_weight(input_view.cameras.c2w[0], targets.c2w[i]))
        return Views(torch.stack(images), torch.stack(masks), targets, torch.tensor(weights),
                     torch.stack(confidence), input_view.background)



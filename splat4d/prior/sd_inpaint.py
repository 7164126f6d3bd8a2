"""Diffusion view prior: Stable Diffusion inpainting of the disoccluded parts of warped views (LucidDreamer /
Make-It-4D style), progressively around the object.

Targets are processed nearest-to-the-input first. Each is rendered from the current scene (the warp), the holes
inside its closed silhouette are filled by ``StableDiffusionInpaintPipeline`` (only hole pixels are replaced), and
the filled pixels are lifted into the scene at the depth of their nearest rendered neighbour, so the next view sees
them. Seeds come from an explicit ``torch.Generator`` per view: runs are reproducible.
"""

from __future__ import annotations

import numpy as np
import torch

from splat4d.config import PriorConfig
from splat4d.io.video import to_uint8
from splat4d.hub import ModelNotFoundError, load_diffusers_pipeline, pick_device
from splat4d.prior.warp import HOLE_ALPHA, WarpPrior, inpaint_holes
from splat4d.render import rasterize
from splat4d.types import Cameras, GaussianScene, Views


def load_inpaint_pipeline(model: str, device: torch.device, download: bool = False):
    try:
        from diffusers import StableDiffusionInpaintPipeline
    except ImportError as err:
        raise ModelNotFoundError("the 'sd-inpaint' prior needs `pip install splat4d[diffusion]` (diffusers, "
                                 "transformers, accelerate, safetensors)") from err
    return load_diffusers_pipeline(StableDiffusionInpaintPipeline, model, device, download, "Inpainting model",
                                   "--prior.model", safety_checker=None, requires_safety_checker=False)


def lift_pixels(rgb: np.ndarray, depth: np.ndarray, pixels: np.ndarray, camera: Cameras,
                opacity: float = 0.9, scale_factor: float = 0.7) -> GaussianScene:
    """One isotropic Gaussian per (row, col) in ``pixels`` at camera depth ``depth`` with colour ``rgb``."""
    rows, cols = pixels[:, 0], pixels[:, 1]
    z = torch.from_numpy(depth[rows, cols]).double()
    means = camera.unproject(Cameras.pixel_centers(rows, cols), z)[0]
    size = (scale_factor * camera.pixel_footprint(z)[0])[:, None].expand(-1, 3)
    return GaussianScene.from_activated(means.float(), size.float(), torch.from_numpy(rgb[rows, cols]).float(),
                                        torch.full((len(rows),), opacity))


def nearest_fill(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Each unknown pixel takes the value of its nearest known pixel."""
    from scipy import ndimage

    if not known.any():
        return values
    _, (iy, ix) = ndimage.distance_transform_edt(~known, return_indices=True)
    return values[iy, ix]


class SDInpaintPrior:
    def __init__(self, cfg: PriorConfig, backend: str = "cpu", device: str = "auto", seed: int = 0):
        self.cfg = cfg
        self.backend = backend
        self.device = pick_device(device)
        self.seed = seed
        self.pipe = load_inpaint_pipeline(cfg.model, self.device, cfg.download)
        self.final_scene: GaussianScene | None = None

    def inpaint(self, rgb: np.ndarray, holes: np.ndarray, index: int) -> np.ndarray:
        """SD-inpaint ``holes`` of ``rgb`` (H, W, 3 in [0, 1]); returns the model's full image at (H, W)."""
        import cv2
        from PIL import Image

        h, w = holes.shape
        res = max(8, self.cfg.sd_resolution // 8 * 8)
        image = Image.fromarray(to_uint8(rgb)).resize((res, res), Image.BICUBIC)
        grown = cv2.dilate(holes.astype(np.uint8), np.ones((3, 3), np.uint8))  # let the model blend the seam
        mask = Image.fromarray(grown * 255).resize((res, res), Image.NEAREST)
        generator = torch.Generator(device="cpu").manual_seed(self.seed * 1000 + index)
        out = self.pipe(prompt=self.cfg.prompt, negative_prompt=self.cfg.negative_prompt, image=image, mask_image=mask,
                        height=res, width=res, num_inference_steps=self.cfg.steps, guidance_scale=self.cfg.guidance,
                        generator=generator, output_type="np").images[0]
        return cv2.resize(np.asarray(out, np.float32), (w, h), interpolation=cv2.INTER_AREA)

    @torch.no_grad()
    def __call__(self, input_view: Views, scene: GaussianScene, targets: Cameras) -> Views:
        weigh = WarpPrior(self.cfg, self.backend).view_weight
        bg = torch.tensor(input_view.background, dtype=torch.float32)
        forward = input_view.cameras.c2w[0, :3, 2]
        order = sorted(range(len(targets)), key=lambda i: -float(torch.dot(forward, targets.c2w[i, :3, 2])))
        current = scene
        images, masks, confidence = [None] * len(targets), [None] * len(targets), [None] * len(targets)
        for step, i in enumerate(order):
            out = rasterize(current, targets[i], backend=self.backend, background=bg)
            rgb = out.rgb[0].clamp(0, 1).numpy()
            alpha = out.alpha[0, ..., 0].numpy()
            depth = out.depth[0, ..., 0].numpy()
            warped, silhouette, holes = inpaint_holes(rgb, alpha, self.cfg.inpaint_radius)
            result = rgb.copy()
            if holes.any():
                painted = self.inpaint(warped, holes, i)
                result[holes] = painted[holes]  # only hole pixels change
                filled_depth = nearest_fill(depth, (alpha > HOLE_ALPHA) & ~holes)
                lifted = lift_pixels(result, filled_depth, np.argwhere(holes), targets[i])
                current = GaussianScene.concat([current, lifted])
            images[i] = torch.from_numpy(result).float()
            masks[i] = torch.from_numpy(np.where(holes, 1.0, np.where(silhouette, np.maximum(alpha, HOLE_ALPHA),
                                                                      alpha))).float()
            confidence[i] = torch.from_numpy(np.where(holes, 0.6, 1.0)).float()
        self.final_scene = current
        weights = torch.tensor([weigh(input_view.cameras.c2w[0], targets.c2w[i]) for i in range(len(targets))])
        return Views(torch.stack(images), torch.stack(masks), targets, weights, torch.stack(confidence),
                     input_view.background)

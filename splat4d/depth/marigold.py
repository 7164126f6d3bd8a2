"""Diffusion depth: diffusers' ``MarigoldDepthPipeline`` (Marigold, Ke et al. 2024; the LCM checkpoint needs 1-4
steps). Its prediction is affine-invariant depth in [0, 1] (near small), returned as ``kind='relative'`` and aligned
to the object by ``splat4d.init.align_depth``."""

from __future__ import annotations

import numpy as np
import torch

from splat4d.io.video import to_uint8
from splat4d.hub import ModelNotFoundError, load_diffusers_pipeline, pick_device
from splat4d.types import DepthMap

DEFAULT_MODEL = "prs-eth/marigold-depth-lcm-v1-0"


class MarigoldDepth:
    def __init__(self, model: str = DEFAULT_MODEL, device: str = "auto", download: bool = False, steps: int = 4,
                 seed: int = 0, processing_resolution: int | None = None):
        try:
            from diffusers import MarigoldDepthPipeline
        except ImportError as err:
            raise ModelNotFoundError("the 'marigold' depth backend needs `pip install splat4d[diffusion]`") from err
        self.device = pick_device(device)
        self.pipe = load_diffusers_pipeline(MarigoldDepthPipeline, model, self.device, download, "Depth model",
                                            "--depth.model")
        self.steps = steps
        self.seed = seed
        self.processing_resolution = processing_resolution

    @torch.no_grad()
    def __call__(self, image: np.ndarray, mask: np.ndarray) -> DepthMap:
        from PIL import Image

        h, w = mask.shape
        pil = Image.fromarray(to_uint8(image))
        out = self.pipe(pil, num_inference_steps=self.steps, ensemble_size=1, match_input_resolution=True,
                        processing_resolution=self.processing_resolution,
                        generator=torch.Generator(device="cpu").manual_seed(self.seed), output_type="np")
        pred = np.asarray(out.prediction, dtype=np.float64).reshape(-1, h, w)[0]
        return DepthMap.on_mask(pred, mask > 0.5, kind="relative")

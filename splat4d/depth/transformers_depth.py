"""Learned monocular depth through Hugging Face transformers (``AutoModelForDepthEstimation``).

Depth Anything V2 (``depth-anything/Depth-Anything-V2-Small-hf``, relative: predicts inverse depth up to scale and
shift, returned as ``kind='disparity'`` and aligned to the object by ``splat4d.init.align_depth``) and metric models
such as Depth Pro (``apple/DepthPro-hf``: depth in metres, rescaled so the object's median depth sits at the
pipeline's camera distance). Any model id or local folder saved with ``save_pretrained`` works.
"""

from __future__ import annotations

import numpy as np
import torch

from splat4d.models import ModelNotFoundError, missing_model_message, pick_device
from splat4d.types import DepthMap

DEFAULT_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
METRIC_MODEL_TYPES = ("depth_pro", "zoedepth")


class TransformersDepth:
    def __init__(self, model: str = DEFAULT_MODEL, device: str = "auto", download: bool = False,
                 distance: float = 2.5):
        try:
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        except ImportError as err:
            raise ModelNotFoundError("the 'transformers' depth backend needs `pip install splat4d[diffusion]` "
                                     "(transformers, safetensors)") from err
        self.device = pick_device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # e.g. the torchvision-less image-processor fallback notice
        try:
            self.processor = AutoImageProcessor.from_pretrained(model, local_files_only=not download)
            self.model = AutoModelForDepthEstimation.from_pretrained(model, local_files_only=not download,
                                                                     dtype=self.dtype)
        except (OSError, ValueError) as err:
            reason = (str(err).strip().split(". ")[0] or type(err).__name__)[:160]
            raise ModelNotFoundError(missing_model_message(model, "Depth model", "--depth.model", reason)) from None
        finally:
            hf_logging.set_verbosity(verbosity)
        self.model.to(self.device).eval()
        config = self.model.config
        self.metric = (getattr(config, "depth_estimation_type", "relative") == "metric"
                       or config.model_type in METRIC_MODEL_TYPES)
        self.distance = distance
        self.model_id = model

    @torch.no_grad()
    def __call__(self, image: np.ndarray, mask: np.ndarray) -> DepthMap:
        from PIL import Image

        h, w = mask.shape
        pil = Image.fromarray(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8))
        inputs = self.processor(images=pil, return_tensors="pt")
        inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items()}
        predicted = self.model(**inputs).predicted_depth.float()  # (1, h', w')
        pred = torch.nn.functional.interpolate(predicted[:, None], size=(h, w), mode="bicubic",
                                               align_corners=False)[0, 0].cpu().numpy().astype(np.float64)
        fg = mask > 0.5
        if self.metric:
            med = float(np.median(pred[fg])) if fg.any() else 1.0
            pred = pred * (self.distance / med) if med > 0 else np.full_like(pred, self.distance)
            kind = "metric"
        else:
            kind = "disparity"
        depth = np.where(fg, pred, 0.0).astype(np.float32)
        return DepthMap(torch.from_numpy(depth), torch.from_numpy(fg.astype(np.float32)), kind=kind)

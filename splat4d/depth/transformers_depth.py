"""Learned monocular depth through Hugging Face transformers (``AutoModelForDepthEstimation``).

Depth Anything V2 (``depth-anything/Depth-Anything-V2-Small-hf``, relative: predicts inverse depth up to scale and
shift, returned as ``kind='disparity'`` and aligned to the object by ``splat4d.init.align_depth``) and metric models
such as Depth Pro (``apple/DepthPro-hf``: depth in metres, rescaled so the object's median depth sits at the
pipeline's camera distance). Any model id or local folder saved with ``save_pretrained`` works.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from splat4d.io.video import to_uint8
from splat4d.hub import ModelNotFoundError, missing_model_error, model_dtype, pick_device
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
        self.dtype = model_dtype(self.device)
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # e.g. the torchvision-less image-processor fallback notice
        try:
            try:
                self.processor = AutoImageProcessor.from_pretrained(model, local_files_only=not download)
            except (ImportError, ValueError):  # processors needing torchvision (Depth Pro): resize/normalise here
                self.processor = SimpleImageProcessor.from_pretrained(model, local_files_only=not download)
            self.model = AutoModelForDepthEstimation.from_pretrained(model, local_files_only=not download,
                                                                     dtype=self.dtype)
        except (OSError, ValueError) as err:
            raise missing_model_error(err, model, "Depth model", "--depth.model") from None
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
        pil = Image.fromarray(to_uint8(image))
        inputs = self.processor(images=pil, return_tensors="pt")
        inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items()}
        outputs = self.model(**inputs)
        predicted = outputs.predicted_depth.float()  # (1, h', w')
        fov_deg = None
        if getattr(outputs, "field_of_view", None) is not None:  # Depth Pro: horizontal FoV of the input, degrees
            fov_x_deg = float(outputs.field_of_view.reshape(-1)[0])
            if 5.0 < fov_x_deg < 170.0:  # an implausible estimate is ignored: the configured FoV stays
                fov_deg = math.degrees(2 * math.atan(math.tan(math.radians(fov_x_deg) / 2) * h / w))
        pred = torch.nn.functional.interpolate(predicted[:, None], size=(h, w), mode="bicubic",
                                               align_corners=False)[0, 0].cpu().numpy().astype(np.float64)
        fg = mask > 0.5
        if self.metric:
            med = float(np.median(pred[fg])) if fg.any() else 1.0
            pred = pred * (self.distance / med) if med > 0 else np.full_like(pred, self.distance)
            pred = np.maximum(pred, 0.05 * self.distance)  # depth in front of the camera, whatever the model says
            kind = "metric"
        else:
            kind = "disparity"
        return DepthMap.on_mask(pred, fg, kind=kind, fov_deg=fov_deg)


class SimpleImageProcessor:
    """Resize + rescale + normalise from a ``preprocessor_config.json``, for processors that require torchvision."""

    def __init__(self, config: dict):
        size = config.get("size", {"height": 384, "width": 384})
        self.size = (int(size.get("height", size.get("shortest_edge", 384))),
                     int(size.get("width", size.get("shortest_edge", 384))))
        self.mean = np.asarray(config.get("image_mean", [0.5, 0.5, 0.5]), np.float32)
        self.std = np.asarray(config.get("image_std", [0.5, 0.5, 0.5]), np.float32)
        self.rescale = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0

    @staticmethod
    def from_pretrained(model: str, local_files_only: bool = True) -> "SimpleImageProcessor":
        import json

        from transformers.utils import cached_file

        path = cached_file(model, "preprocessor_config.json", local_files_only=local_files_only)
        return SimpleImageProcessor(json.loads(open(path).read()))

    def __call__(self, images, return_tensors: str = "pt") -> dict:
        from PIL import Image

        h, w = self.size
        arr = np.asarray(images.convert("RGB").resize((w, h), Image.BICUBIC), np.float32) * self.rescale
        arr = (arr - self.mean) / self.std
        return {"pixel_values": torch.from_numpy(arr.transpose(2, 0, 1)[None].copy())}

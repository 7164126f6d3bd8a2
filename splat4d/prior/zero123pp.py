"""Zero123++ view prior (Shi et al. 2023): six views of the object at fixed poses from one diffusion sample.

``DiffusionPipeline.from_pretrained(model, custom_pipeline=...)`` (v1.2: ``sudo-ai/zero123plus-v1.2`` with the
``sudo-ai/zero123plus-pipeline`` code) returns one 2-column x 3-row grid image. Tiles, row-major, are the views at
azimuths 30, 90, ..., 330 degrees relative to the input, elevations alternating 20 and -10 degrees, vertical FoV 30
degrees. Choosing this backend runs that pipeline code (``trust_remote_code``). They are split, their background
is removed by colour, and they are registered as supervisory ``Views``
looking at the object centre from the distance at which the object fills the frame as it does in the input view.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from splat4d.config import PriorConfig
from splat4d.io.video import to_uint8
from splat4d.hub import ModelNotFoundError, load_diffusers_pipeline, pick_device
from splat4d.types import Cameras, GaussianScene, Views

AZIMUTHS = (30.0, 90.0, 150.0, 210.0, 270.0, 330.0)
ELEVATIONS = (20.0, -10.0, 20.0, -10.0, 20.0, -10.0)
FOV_DEG = 30.0
GRID = (3, 2)  # rows, columns


def split_grid(grid: np.ndarray, rows: int = GRID[0], cols: int = GRID[1]) -> list[np.ndarray]:
    h, w = grid.shape[0] // rows, grid.shape[1] // cols
    return [grid[r * h:(r + 1) * h, c * w:(c + 1) * w] for r in range(rows) for c in range(cols)]


def zero123_cameras(input_camera: Cameras, size: int, input_fov_deg: float, distance: float) -> Cameras:
    """The six Zero123++ cameras in splat4d's world (object centre at the origin, input at azimuth 0)."""
    from splat4d import paths

    # Same apparent object size as in the input: distance scales with the ratio of the FoVs' tangents.
    d = distance * math.tan(math.radians(input_fov_deg) / 2) / math.tan(math.radians(FOV_DEG) / 2)
    c2w = paths.looking_at_origin(d, AZIMUTHS, ELEVATIONS)
    return Cameras.from_fov(c2w.to(input_camera.c2w.dtype), size, size, FOV_DEG)


def background_mask(tile: np.ndarray, threshold: float = 0.08) -> np.ndarray:
    """Foreground = pixels far from the tile's border colour (Zero123++ paints a flat background)."""
    border = np.concatenate([tile[0], tile[-1], tile[:, 0], tile[:, -1]])
    bg = np.median(border, axis=0)
    return (np.abs(tile - bg).max(axis=-1) > threshold).astype(np.float32)


class Zero123PlusPrior:
    def __init__(self, cfg: PriorConfig, backend: str = "cpu", device: str = "auto", seed: int = 0,
                 input_fov_deg: float = 40.0, distance: float = 2.5):
        try:
            from diffusers import DiffusionPipeline
        except ImportError as err:
            raise ModelNotFoundError("the 'zero123pp' prior needs `pip install splat4d[diffusion]`") from err
        self.cfg, self.seed = cfg, seed
        self.device = pick_device(device)
        self.input_fov_deg, self.distance = input_fov_deg, distance
        self.pipe = load_diffusers_pipeline(DiffusionPipeline, cfg.zero123_model, self.device, cfg.download,
                                            "Zero123++ model", "--prior.zero123-model",
                                            custom_pipeline=cfg.zero123_pipeline,
                                            trust_remote_code=True)  # Zero123++ ships as pipeline code

    @torch.no_grad()
    def __call__(self, input_view: Views, scene: GaussianScene, targets: Cameras) -> Views:
        """Ignores ``targets``: Zero123++ decides its own six poses."""
        import cv2
        from PIL import Image

        size = input_view.cameras.width
        cond = Image.fromarray(to_uint8(input_view.images[0]))
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        result = self.pipe(cond, num_inference_steps=self.cfg.steps, generator=generator).images[0]
        grid = np.asarray(result.convert("RGB"), dtype=np.float32) / 255.0
        images, masks = [], []
        for tile in split_grid(grid):
            tile = cv2.resize(tile, (size, size), interpolation=cv2.INTER_AREA)
            mask = background_mask(tile)
            images.append(torch.from_numpy(tile * mask[..., None] + (1 - mask[..., None])))
            masks.append(torch.from_numpy(mask))
        cameras = zero123_cameras(input_view.cameras, size, self.input_fov_deg, self.distance)
        weights = torch.full((len(images),), self.cfg.max_weight)
        return Views(torch.stack(images).float(), torch.stack(masks).float(), cameras, weights, None,
                     input_view.background)

"""Stage 1: load an image (RGB, RGBA, greyscale, palette, 16-bit; EXIF orientation applied) as floats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_SIDE = 16


class InputError(ValueError):
    """The input cannot be used; the message says why and what to do."""


@dataclass
class LoadedImage:
    rgb: np.ndarray
    """(H, W, 3) float32 in [0, 1]."""
    alpha: np.ndarray | None
    """(H, W) float32 in [0, 1] when the file has an alpha channel."""
    path: Path
    original_size: tuple[int, int]
    """(width, height) in the file, after EXIF rotation."""


def load_image(path: str | Path, max_side: int = 2048, max_pixels: int = 80_000_000) -> LoadedImage:
    """Read ``path``; images with a side over ``max_side`` are downscaled (Lanczos) on load."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"input image not found: {path}")
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (max_side, max_side))  # decode huge JPEGs at a reduced scale directly
            im = ImageOps.exif_transpose(im)
            im.load()
    except Image.DecompressionBombError as err:
        raise InputError(f"{path}: image too large ({err}); downscale it first") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise InputError(f"cannot read {path} as an image ({err}); use a PNG, JPEG, TIFF or WebP file") from err
    width, height = im.size
    if min(width, height) < MIN_SIDE:
        raise InputError(f"{path} is {width}x{height}: images need at least {MIN_SIDE} pixels a side")

    rgb, alpha = _to_float(im)
    if max(width, height) > max_side:
        scale = max_side / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = _resize(rgb, size)
        alpha = None if alpha is None else _resize(alpha[..., None], size)[..., 0]
    return LoadedImage(rgb=rgb, alpha=alpha, path=path, original_size=(width, height))


def _to_float(im) -> tuple[np.ndarray, np.ndarray | None]:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 or mode.startswith("I;16") else 255.0
        grey = np.clip(arr / top, 0, 1).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=2), None
    if mode == "F":
        grey = np.asarray(im, dtype=np.float32)
        grey = (grey - grey.min()) / max(float(grey.max() - grey.min()), 1e-12)
        return np.repeat(grey[..., None], 3, axis=2), None
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info)
    arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB")).astype(np.float32) / 255.0
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if has_alpha and arr.shape[2] == 4:
        return np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3])
    return np.ascontiguousarray(arr[..., :3]), None


def _resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    out = cv2.resize(arr, size, interpolation=cv2.INTER_AREA)
    return out if out.ndim == 3 else out[..., None]

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
    """Read ``path``; images with a side over ``max_side`` are downscaled (Lanczos) on load, before they become
    floats (a 48 MP photo never exists as float32). Images over ``max_pixels`` (as decoded: a JPEG decodes at a
    reduced scale first) are refused: a few kB of PNG can hold a gigapixel image."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image: give one image file (a folder of frames goes with "
                         "--motion or --multiview)")
    if not path.is_file():
        raise InputError(f"input image not found: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes)")
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():  # the size check is ours, below, after a JPEG's reduced-scale decoding
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(path) as im:
                if im.format == "JPEG":
                    im.draft(im.mode, (max_side, max_side))  # decode huge JPEGs at a reduced scale directly
                _check_pixels(path, im.size, max_pixels)
                im = ImageOps.exif_transpose(im)
                im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"cannot read {path} as an image ({_reason(err)}); use a PNG, JPEG, TIFF or WebP "
                         "file") from err
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    width, height = im.size
    if min(width, height) < MIN_SIDE:
        raise InputError(f"{path} is {width}x{height}: images need at least {MIN_SIDE} pixels a side")
    original_size = (width, height)
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if scale < 1 and im.mode not in NUMERIC_MODES:  # 8-bit pictures shrink as 8-bit, before the float copy
        im = _eight_bit(im).resize(size, Image.LANCZOS, reducing_gap=3.0)
    rgb, alpha = _to_float(im, path)
    if scale < 1 and rgb.shape[1::-1] != size:
        rgb = _resize(rgb, size)
        alpha = None if alpha is None else _resize(alpha[..., None], size)[..., 0]
    return LoadedImage(rgb=rgb, alpha=alpha, path=path, original_size=original_size)


NUMERIC_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
"""Pillow modes of 16-bit and float images: converted to floats first (their range is read from the values)."""


def _check_pixels(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise InputError(f"{path} is {width}x{height} ({width * height / 1e6:.0f} MP), more than the "
                         f"{max_pixels / 1e6:.0f} MP splat4d reads (load.max_input_pixels in a preset file): image "
                         "too large, downscale it first")


def _reason(err: BaseException) -> str:
    """The error's own words, without the errno number or the path the message already names."""
    text = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return text.split(" '/")[0].strip() or type(err).__name__


def _has_alpha(im) -> bool:
    """An alpha channel, or a palette / greyscale transparency entry."""
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def _eight_bit(im):
    """``im`` in RGB or RGBA (palette transparency, CMYK and greyscale converted) for resizing."""
    return im.convert("RGBA" if _has_alpha(im) else "RGB")


def _to_float(im, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 or mode.startswith("I;16") else 255.0
        grey = np.clip(arr / top, 0, 1).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=2), None
    if mode == "F":  # any range; NaN/Inf (missing values in scientific exports) become the darkest value
        grey = np.asarray(im, dtype=np.float32)
        finite = np.isfinite(grey)
        if not finite.any():
            raise InputError(f"{path} holds no finite pixel value")
        lo, hi = float(grey[finite].min()), float(grey[finite].max())
        grey = np.where(finite, (grey - lo) / max(hi - lo, 1e-12), 0.0).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=2), None
    has_alpha = _has_alpha(im)
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

"""Memory bound of a run, estimated before it starts (issue 14).

A run's peak resident memory is, measured on CPU (docs/reliability.md): the interpreter with torch, numba and
OpenCV loaded, plus what grows with the working resolution R -- the initial scene's Gaussians (about one per
object pixel in front, a quarter of that behind, at most R^2 * 5/4), their optimiser state and the rasterizer's
per-pixel buffers -- plus what grows with the frames a video mode keeps (T working frames of R^2 and T loaded
frames at up to 1024 px). ``estimate`` adds these up from the settings and the input's size (read from its header,
nothing decoded) with the coefficients fitted to the measurements, rounded up; ``check`` refuses a run whose
estimate exceeds the memory this machine has free (or ``SPLAT4D_MEMORY_GB``), naming the setting to lower.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from splat4d.load import InputError

MB = 1 << 20
BASE_BYTES = 560 * MB
"""The interpreter with torch, numba, OpenCV and PyAV loaded and a 48 px run done (measured: 500-560 MB)."""
BYTES_PER_GAUSSIAN = 1400
"""Per initial Gaussian: parameters, gradients, Adam's moments, densification statistics and the rasterizer's
per-Gaussian buffers. The measured peaks at R = 128..1024 (docs/reliability.md) grow by ~3.3 kB per initial
Gaussian with its ~15 working pixels; this and the per-pixel figure split that between the two, generously."""
BYTES_PER_WORKING_PIXEL = 160
"""Per pixel of a working view or frame held during the fit (images, masks, depth, per-pixel raster buffers)."""
BYTES_PER_LOADED_PIXEL = 24
"""Per pixel of an input frame as loaded (float32 RGB, its mask and a composited copy)."""
SAFETY = 1.25
"""The estimate is this much above the fitted model: the fit's densification and the video may add."""


@dataclass(frozen=True)
class MemoryEstimate:
    """What a run will hold at its peak, and why."""

    peak_bytes: int
    gaussians: int
    """Upper bound of the Gaussians the fit holds: the initial scene (full mask) or fit.max_gaussians."""
    working_pixels: int
    """Pixels of the working views or frames."""
    loaded_pixels: int
    """Pixels of the input frames as loaded (downscaled to the loader's cap)."""

    def describe(self) -> str:
        return (f"about {self.peak_bytes / 1e9:.1f} GB ({self.gaussians / 1e6:.2f}M Gaussians at most, "
                f"{self.working_pixels / 1e6:.1f}M working pixels, {self.loaded_pixels / 1e6:.1f}M input pixels)")


def estimate(resolution: int, mode: str, *, frames: int = 1, views: int = 1, input_size: tuple[int, int] | None = None,
             max_gaussians: int = 150_000, densify: bool = True, load_side: int = 2048) -> MemoryEstimate:
    """The peak memory of a run at working ``resolution`` R: ``frames`` working frames (video modes) or ``views``
    supervisory views (image mode, the input included), an input of ``input_size`` (width, height) loaded at up to
    ``load_side`` a side."""
    r2 = resolution * resolution
    gaussians = (r2 * 5) // 4
    if densify:
        gaussians = max(gaussians, max_gaussians)
    working = r2 * (views if mode == "image" else frames + 1)
    w, h = input_size or (load_side, load_side)
    scale = min(1.0, load_side / max(w, h))
    loaded = int(w * scale) * int(h * scale) * (1 if mode == "image" else frames)
    model = (BASE_BYTES + BYTES_PER_GAUSSIAN * gaussians + BYTES_PER_WORKING_PIXEL * working
             + BYTES_PER_LOADED_PIXEL * loaded)
    return MemoryEstimate(int(BASE_BYTES + SAFETY * (model - BASE_BYTES)), gaussians, working, loaded)


def estimate_run(cfg, mode: str) -> MemoryEstimate:
    """``estimate`` for a run's settings; the input's size comes from its header (a video's first stream, a
    folder's first image)."""
    frames = cfg.motion.max_frames if mode == "motion" else cfg.sfm.max_frames if mode == "multiview" else 1
    views = 1 + cfg.prior.ring_views + int(cfg.prior.top_view) if mode != "motion" else 1
    if mode == "multiview":
        views += frames
    load_side = max(2048, 4 * cfg.load.resolution) if mode == "image" else 1024
    fit = cfg.fit
    return estimate(cfg.load.resolution, mode, frames=frames, views=views, input_size=input_size(Path(cfg.input)),
                    max_gaussians=fit.max_gaussians if mode != "motion" else 0,
                    densify=fit.densify and mode != "motion", load_side=load_side)


def input_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image, a video's first video stream or a folder's first image, from the header;
    None when it cannot be told (the loader then says what is wrong with the file)."""
    try:
        if path.is_dir():
            from splat4d.io.frames import IMAGE_SUFFIXES

            path = next(p for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
        from splat4d.io.frames import VIDEO_SUFFIXES

        if path.suffix.lower() in VIDEO_SUFFIXES and path.suffix.lower() != ".gif":
            import av

            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                return stream.codec_context.width, stream.codec_context.height
        import warnings

        from PIL import Image

        with warnings.catch_warnings():  # a decompression bomb is the loader's to refuse, in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size
    except Exception:  # noqa: BLE001 - any unreadable input is the loader's to report, in its own words
        return None


def available_bytes() -> int | None:
    """The memory this run may use: ``SPLAT4D_MEMORY_GB`` when set, else what the system has available now
    (Linux's MemAvailable, elsewhere the free physical pages); None where neither can be told."""
    if os.environ.get("SPLAT4D_MEMORY_GB"):
        return int(float(os.environ["SPLAT4D_MEMORY_GB"]) * 1e9)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


class MemoryBudgetError(InputError):
    """The run would need more memory than the machine has free."""


def check(cfg, mode: str) -> MemoryEstimate:
    """Refuse, before anything runs, a run whose estimated peak exceeds the memory available; the message names
    the estimate, the memory free and the setting to lower (with a value that fits)."""
    need = estimate_run(cfg, mode)
    have = available_bytes()
    if have is None or need.peak_bytes <= have:
        return need
    resolution, fits = cfg.load.resolution, None
    for candidate in range(resolution - resolution % 16 - 16, 15, -16):
        if estimate_run(_with_resolution(cfg, candidate), mode).peak_bytes <= have:
            fits = candidate
            break
    lower = f"--load.resolution ({fits} fits)" if fits else "--load.resolution"
    if mode == "motion":
        lower += " or --motion.max-frames"
    elif mode == "multiview":
        lower += " or --sfm.max-frames"
    if mode != "motion" and cfg.fit.densify:
        lower += " or fit.max_gaussians (a preset file)"
    raise MemoryBudgetError(f"this run would need {need.describe()} but {have / 1e9:.1f} GB are available: lower "
                            f"{lower}, or set SPLAT4D_MEMORY_GB if more will be free")


def _with_resolution(cfg, resolution: int):
    import dataclasses

    return dataclasses.replace(cfg, load=dataclasses.replace(cfg.load, resolution=resolution))

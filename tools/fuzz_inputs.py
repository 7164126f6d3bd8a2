"""Input fuzz harness (issue 14): every input a user really has must end in a finite scene or one clear line.

Each case writes an awkward input (made from scikit-image's sample pictures with Pillow, OpenCV or PyAV) and runs the
real command line, ``splat4d run INPUT --out OUT ...``, in a subprocess (``--in-process``: ``splat4d.cli.main`` in
this process, the same code path without the interpreter's start-up). A case passes when the run ends

* with exit status 0 and a finite scene: OUT/scene.ply reads back, every value finite, at least one Gaussian; or
* with exit status 2 and exactly one ``error: ...`` line on stderr (the runner's ``[i/n] stage`` progress lines may
  come before it), no traceback, and nothing in OUT that looks like a finished result (scene.ply, metrics.json...);

and the outcome is the one the case expects (a CMYK JPEG must load, a truncated file must be refused with a message
that says so). Some cases check more (an EXIF-rotated photo loads upright). Prints a table and writes JSON:

    python tools/fuzz_inputs.py                          # every case -> bench_results/fuzz_inputs.json
    python tools/fuzz_inputs.py --only exif huge_png     # cases whose name contains one of these words
    python tools/fuzz_inputs.py --list
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FINISHED_RESULTS = ("scene.ply", "scene.splat", "orbit.mp4", "bullet_time.mp4", "metrics.json", "config.yaml")
"""Files a failed run must not leave behind: they would look like a finished result."""
SMALL = ["--preset", "fast", "--no-progress", "--load.resolution", "48", "--fit.iterations", "8",
         "--fit.refine-start", "2", "--fit.refine-stop", "6", "--fit.refine-every", "2", "--video.frames", "2",
         "--video.size", "32", "--prior.ring-views", "2", "--motion.iterations", "6", "--motion.max-frames", "3",
         "--sfm.max-frames", "4"]
"""Settings of every case unless it overrides them: the fast preset at 48 px, a few steps, a 2-frame video.
Later flags win, so a case's own flags come after these."""


# -- inputs --------------------------------------------------------------------------------------------------------

def _rgb(name: str) -> np.ndarray:
    import skimage.data

    return np.asarray(getattr(skimage.data, name)())


def _save(array: np.ndarray, path: Path, **kw) -> Path:
    from PIL import Image

    Image.fromarray(array).save(path, **kw)
    return path


def small_coffee() -> np.ndarray:
    """The coffee photo at 300x200: cases about a file's encoding need no more pixels (GrabCut's time goes with them)."""
    import cv2

    return cv2.resize(_rgb("coffee"), (300, 200), interpolation=cv2.INTER_AREA)


def object_on_plain(width: int, height: int, box: tuple[int, int, int, int], background=(236, 236, 232)) -> np.ndarray:
    """A textured object (a crop of the astronaut photo, elliptical) in ``box`` = (x0, y0, x1, y1) of a plain
    background, (H, W, 3) uint8. The box may leave the frame (an object cut by the edge)."""
    import cv2

    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = background
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    texture = cv2.resize(_rgb("astronaut")[40:360, 120:440], (w, h), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((xx + 0.5 - w / 2) / (w / 2)) ** 2 + ((yy + 0.5 - h / 2) / (h / 2)) ** 2 <= 1
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    region = inside[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    canvas[cy0:cy1, cx0:cx1][region] = texture[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0][region]
    return canvas


def coffee_jpeg(folder: Path, **kw) -> Path:
    return _save(_rgb("coffee"), folder / "coffee.jpg", quality=92, **kw)


def cmyk_jpeg(folder: Path) -> list[str]:
    from PIL import Image

    path = folder / "cmyk.jpg"
    Image.fromarray(_rgb("coffee")).convert("CMYK").save(path, quality=92)
    return [str(path)]


def progressive_jpeg(folder: Path) -> list[str]:
    return [str(coffee_jpeg(folder, progressive=True, optimize=True))]


EXIF_ORIENTATION = 0x0112
# What a camera stores for each orientation tag, given the upright picture: tag 6 means "rotate 90 degrees clockwise
# to display", so the stored pixels are the upright ones turned 90 degrees counter-clockwise.
STORED_FOR_ORIENTATION = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
                          5: lambda a: np.rot90(a, 1)[::-1], 6: lambda a: np.rot90(a, 1),
                          7: lambda a: np.rot90(a, -1)[::-1], 8: lambda a: np.rot90(a, -1)}


def exif_rotated(orientation: int) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        from PIL import Image

        stored = np.ascontiguousarray(STORED_FOR_ORIENTATION[orientation](small_coffee()))
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        return [str(_save(stored, folder / f"exif{orientation}.jpg", quality=95, exif=exif))]
    return make


def check_upright(args: list[str]) -> str | None:
    """The EXIF-rotated photo loads as the upright original (and measurably unlike any other orientation of it)."""
    from splat4d.load import load_image

    loaded = load_image(args[0]).rgb
    upright = small_coffee().astype(np.float32) / 255
    if loaded.shape != upright.shape:
        return f"loaded {loaded.shape[1::-1]}, the upright photo is {upright.shape[1::-1]}"
    error = float(np.abs(loaded - upright).mean())
    others = [float(np.abs(loaded - f(upright)).mean()) for f in STORED_FOR_ORIENTATION.values()
              if f(upright).shape == upright.shape]
    if error > 0.02 or error * 4 > min(others):
        return f"not upright: mean difference {error:.3f} to the original, {min(others):.3f} to a flipped one"
    return None


def png16_rgb(folder: Path) -> list[str]:
    import cv2

    path = folder / "rgb16.png"
    cv2.imwrite(str(path), (_rgb("coffee")[..., ::-1].astype(np.uint16) * 257))  # OpenCV writes BGR
    return [str(path)]


def png16_rgba(folder: Path) -> list[str]:
    import cv2

    logo = _rgb("logo").astype(np.uint16) * 257
    path = folder / "rgba16.png"
    cv2.imwrite(str(path), logo[..., [2, 1, 0, 3]])
    return [str(path)]


def png16_grey(folder: Path) -> list[str]:
    from PIL import Image

    grey = (np.dot(_rgb("coffee").astype(np.float64), [0.299, 0.587, 0.114]) * 257).astype(np.uint16)
    path = folder / "grey16.png"
    Image.fromarray(grey).save(path)
    return [str(path)]


def png_grey(folder: Path) -> list[str]:
    from PIL import Image

    path = folder / "grey.png"
    Image.fromarray(_rgb("coffee")).convert("L").save(path)
    return [str(path)]


def png_grey_alpha(folder: Path) -> list[str]:
    from PIL import Image

    path = folder / "grey_alpha.png"
    Image.fromarray(_rgb("logo")).convert("LA").save(path)
    return [str(path)]


def palette_transparent(folder: Path) -> list[str]:
    from PIL import Image

    logo = Image.fromarray(_rgb("logo"))
    opaque = np.asarray(logo)[..., 3] > 127
    pal = logo.convert("RGB").quantize(colors=63)
    index = np.asarray(pal).copy()
    index[~opaque] = 63  # the transparent palette entry
    out = Image.fromarray(index.astype(np.uint8), mode="P")
    out.putpalette(pal.getpalette()[:63 * 3] + [255, 255, 255])
    path = folder / "palette.png"
    out.save(path, transparency=63)
    return [str(path)]


def rgba_with(alpha: np.ndarray, name: str) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        import cv2

        h, w = alpha.shape
        rgb = cv2.resize(_rgb("coffee"), (w, h), interpolation=cv2.INTER_AREA)
        return [str(_save(np.dstack([rgb, alpha]), folder / f"{name}.png"))]
    return make


def alpha_nearly_zero() -> np.ndarray:
    alpha = np.zeros((300, 400), np.uint8)
    alpha[150:153, 200:203] = 255  # 9 opaque pixels of 120,000
    return alpha


def alpha_faint() -> np.ndarray:
    return np.full((300, 400), 3, np.uint8)  # 1% opacity everywhere


def alpha_nearly_one() -> np.ndarray:
    alpha = np.full((300, 400), 255, np.uint8)
    alpha[:6, :40] = 0  # a few transparent pixels in a corner (0.2%): not a cut-out
    return alpha


def synthetic(width: int, height: int, box: tuple[int, int, int, int], name: str,
              suffix: str = ".png") -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        return [str(_save(object_on_plain(width, height, box), folder / f"{name}{suffix}"))]
    return make


def huge_jpeg(folder: Path) -> list[str]:
    return [str(_save(object_on_plain(8000, 6000, (2000, 1200, 6000, 4800)), folder / "huge.jpg", quality=85))]


def huge_png(folder: Path) -> list[str]:
    return [str(_save(object_on_plain(8000, 6000, (2000, 1200, 6000, 4800)), folder / "huge.png", compress_level=1))]


def bomb_png(folder: Path) -> list[str]:
    """A 12,000 x 12,000 palette PNG (144 MP in 140 kB): a decompression bomb."""
    from PIL import Image

    path = folder / "bomb.png"
    Image.new("P", (12000, 12000), 0).save(path)
    return [str(path)]


def animated_gif(folder: Path) -> Path:
    from PIL import Image

    frames = [Image.fromarray(object_on_plain(160, 120, (30 + 8 * t, 20, 110 + 8 * t, 100))) for t in range(6)]
    path = folder / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0)
    return path


def gif_image(folder: Path) -> list[str]:
    return [str(animated_gif(folder))]


def gif_motion(folder: Path) -> list[str]:
    return [str(animated_gif(folder)), "--motion"]


def short_mp4(folder: Path, frames: int = 8, name: str = "clip.mp4") -> Path:
    import av

    path = folder / name
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"threads": "3"}  # x264's bitstream follows its thread count: the same file on any machine
        for t in range(frames):
            frame = av.VideoFrame.from_ndarray(object_on_plain(160, 120, (30 + 4 * t % 40, 20, 110 + 4 * t % 40, 100)),
                                               format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def mp4_motion(folder: Path) -> list[str]:
    return [str(short_mp4(folder)), "--motion"]


def mkv_motion(folder: Path) -> list[str]:
    return [str(short_mp4(folder, frames=40, name="clip.mkv")), "--motion"]


def audio_as_mp4(folder: Path) -> list[str]:
    import av

    path = folder / "voice.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.arange(16000) / 8.0) * 0.3).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return [str(path), "--motion"]


def mp4_as_image(folder: Path) -> list[str]:
    return [str(short_mp4(folder))]


def truncated(source: Callable[[Path], list[str]], keep: float, name: str) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        args = source(folder)
        path = Path(args[0])
        data = path.read_bytes()
        out = path.with_name(f"{name}{path.suffix}")
        out.write_bytes(data[:int(len(data) * keep)])
        return [str(out), *args[1:]]
    return make


def text_as_png(folder: Path) -> list[str]:
    path = folder / "notes.png"
    path.write_text("these are my notes, not a picture\n" * 20)
    return [str(path)]


def empty_jpg(folder: Path) -> list[str]:
    path = folder / "empty.jpg"
    path.write_bytes(b"")
    return [str(path)]


def mp4_named_jpg(folder: Path) -> list[str]:
    path = short_mp4(folder)
    renamed = path.with_name("holiday.jpg")
    path.rename(renamed)
    return [str(renamed)]


def a_folder(folder: Path) -> list[str]:
    photos = folder / "photos"
    photos.mkdir()
    coffee_jpeg(photos)
    return [str(photos)]


def missing_file(folder: Path) -> list[str]:
    return [str(folder / "no_such_photo.jpg")]


def frames_folder(sizes: list[tuple[int, int]], name: str, motion_flag: str = "--motion"):
    def make(folder: Path) -> list[str]:
        frames = folder / name
        frames.mkdir()
        for t, (w, h) in enumerate(sizes):
            shift = 4 * t * w // 160
            _save(object_on_plain(w, h, (w * 3 // 16 + shift, h // 6, w * 11 // 16 + shift, h * 5 // 6)),
                  frames / f"frame_{t:03d}.png")
        return [str(frames), motion_flag]
    return make


def float_tiff_with_nan(folder: Path) -> list[str]:
    from PIL import Image

    grey = np.dot(small_coffee().astype(np.float32), [0.299, 0.587, 0.114]).astype(np.float32)
    grey[:20, :20] = np.nan  # a scientific export with missing values
    path = folder / "float.tif"
    Image.fromarray(grey, mode="F").save(path)
    return [str(path)]


def webp(folder: Path) -> list[str]:
    return [str(_save(_rgb("logo"), folder / "logo.webp", lossless=True))]


def coffee_with(*flags: str) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        return [str(coffee_jpeg(folder)), *flags]
    return make


def logo_with(*flags: str) -> Callable[[Path], list[str]]:
    """The RGBA logo (segmented by its alpha: quick) with ``flags``: for the settings' edge cases."""
    def make(folder: Path) -> list[str]:
        return [str(_save(_rgb("logo"), folder / "logo.png")), *flags]
    return make


def preset(name: str) -> Callable[[Path], list[str]]:
    """The preset as shipped (its resolution, steps, views), only the video shortened."""
    def make(folder: Path) -> list[str]:
        return [str(coffee_jpeg(folder)), "--preset", name, "--video.frames", "4"]
    return make


# -- cases ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], list[str]]
    """Writes the input into the given folder; returns the arguments after ``splat4d run`` (input first)."""
    expect: Literal["ok", "error"]
    """What a correct splat4d does with it: a finite scene, or a clear refusal."""
    why: str
    """What the case stands for, in a few words (docs/reliability.md's table)."""
    error_says: str = ""
    """Words the refusal's line must hold (lower case), so it names the problem."""
    check: Callable[[list[str]], str | None] | None = None
    """More to check on the input after the run; returns what is wrong, or None."""
    small: bool = True
    """Run with ``SMALL``'s settings before the case's own (False: the case's own settings only)."""


CASES = [
    Case("cmyk_jpeg", cmyk_jpeg, "ok", "CMYK JPEG (print workflows)"),
    Case("progressive_jpeg", progressive_jpeg, "ok", "progressive, optimised JPEG (the web)"),
    Case("exif_rotate_90", exif_rotated(6), "ok", "phone photo, EXIF orientation 6", check=check_upright),
    Case("exif_rotate_180", exif_rotated(3), "ok", "EXIF orientation 3", check=check_upright),
    Case("exif_rotate_270", exif_rotated(8), "ok", "EXIF orientation 8", check=check_upright),
    Case("exif_transpose", exif_rotated(5), "ok", "EXIF orientation 5 (mirrored)", check=check_upright),
    Case("png16_rgb", png16_rgb, "ok", "16-bit RGB PNG"),
    Case("png16_rgba", png16_rgba, "ok", "16-bit RGBA cut-out"),
    Case("png16_grey", png16_grey, "ok", "16-bit greyscale PNG"),
    Case("png_grey", png_grey, "ok", "8-bit greyscale PNG"),
    Case("png_grey_alpha", png_grey_alpha, "ok", "greyscale + alpha cut-out"),
    Case("palette_transparency", palette_transparent, "ok", "palette PNG with a transparent entry"),
    Case("webp_rgba", webp, "ok", "lossless WebP with alpha"),
    Case("float_tiff_nan", float_tiff_with_nan, "ok", "32-bit float TIFF with NaN pixels"),
    Case("alpha_nearly_zero", rgba_with(alpha_nearly_zero(), "alpha_dot"), "error",
         "alpha: 9 opaque pixels of 120k", "no object"),
    Case("alpha_faint", rgba_with(alpha_faint(), "alpha_faint"), "error", "alpha 1% everywhere", "no object"),
    Case("alpha_nearly_one", rgba_with(alpha_nearly_one(), "alpha_full"), "ok",
         "alpha opaque but for a corner (not a cut-out)"),
    Case("wide_2000x60", synthetic(2000, 60, (700, 5, 1300, 55), "wide"), "ok", "2000x60 strip"),
    Case("tall_60x2000", synthetic(60, 2000, (5, 700, 55, 1300), "tall"), "ok", "60x2000 strip"),
    Case("tiny_object", synthetic(1000, 800, (480, 380, 530, 430), "tiny"), "ok", "50 px object in 1000x800"),
    Case("speck_object", synthetic(1000, 800, (495, 395, 502, 402), "speck"), "error",
         "7 px speck in 1000x800", "no object"),
    Case("object_at_edge", synthetic(400, 300, (-60, 40, 200, 260), "edge"), "ok", "object cut by the left edge"),
    Case("object_fills_frame", synthetic(300, 300, (-40, -40, 340, 340), "fills"), "ok",
         "object larger than the frame"),
    Case("animated_gif", gif_image, "ok", "animated GIF as an image (first frame)"),
    Case("animated_gif_motion", gif_motion, "ok", "animated GIF --motion"),
    Case("mp4_motion", mp4_motion, "ok", "H.264 clip --motion"),
    Case("mp4_without_mode", mp4_as_image, "error", "a video without --motion/--multiview", "--motion"),
    Case("frames_differ_in_size", frames_folder([(160, 120), (160, 120), (200, 150)], "mixed"), "error",
         "folder of frames of two sizes --motion", "differ in size"),
    Case("one_frame_folder", frames_folder([(160, 120)], "single"), "error", "folder with one frame --motion",
         "frame"),
    Case("truncated_jpeg", truncated(coffee_with(), 0.5, "half"), "error", "JPEG cut in half", "truncated"),
    Case("truncated_png", truncated(png16_rgb, 0.5, "half"), "error", "PNG cut in half", "truncated"),
    Case("truncated_mp4", truncated(mp4_motion, 0.4, "half"), "error", "mp4 cut at 40% (its index is at the end)",
         "cannot read"),
    Case("truncated_mkv", truncated(mkv_motion, 0.6, "half"), "ok", "mkv cut at 60% --motion (the frames before)"),
    Case("audio_as_mp4", audio_as_mp4, "error", "a sound file named .mp4 --motion", "no video"),
    Case("text_as_png", text_as_png, "error", "a text file named .png", "cannot read"),
    Case("empty_jpg", empty_jpg, "error", "a zero-byte .jpg", "empty"),
    Case("mp4_named_jpg", mp4_named_jpg, "error", "a video named .jpg", "cannot read"),
    Case("huge_jpeg_8000x6000", huge_jpeg, "ok", "8000x6000 JPEG (48 MP)"),
    Case("huge_png_8000x6000", huge_png, "ok", "8000x6000 PNG (48 MP)"),
    Case("bomb_png_144mp", bomb_png, "error", "12000x12000 PNG in 140 kB (decompression bomb)", "too large"),
    Case("folder_not_file", a_folder, "error", "a folder in image mode", "folder"),
    Case("missing_file", missing_file, "error", "a path that does not exist", "not found"),
    Case("fit_iterations_0", logo_with("--fit.iterations", "0"), "ok", "--fit.iterations 0 (the init)"),
    Case("fit_iterations_1", logo_with("--fit.iterations", "1"), "ok", "--fit.iterations 1"),
    Case("resolution_16", logo_with("--load.resolution", "16"), "ok", "--load.resolution 16"),
    Case("resolution_15", logo_with("--load.resolution", "15"), "error", "--load.resolution 15", "16"),
    Case("resolution_1024", logo_with("--load.resolution", "1024", "--fit.iterations", "2"), "ok",
         "--load.resolution 1024"),
    Case("preset_fast", preset("fast"), "ok", "--preset fast as shipped", small=False),
    Case("preset_default", preset("default"), "ok", "--preset default as shipped", small=False),
    Case("preset_quality", preset("quality"), "ok", "--preset quality as shipped", small=False),
]


# -- running a case ------------------------------------------------------------------------------------------------

@dataclass
class Result:
    case: str
    outcome: str
    """'ok' (finite scene), 'error' (one clear line) or 'FAIL: what was wrong'."""
    seconds: float
    message: str
    """The error line, or the scene's Gaussian count."""
    expected: str
    gaussians: int = 0
    peak_rss_mb: float | None = None
    """Peak resident memory of the run (subprocess runs only)."""
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.outcome == self.expected


def _call_in_process(argv: list[str]) -> tuple[int, str]:
    from splat4d.cli import main

    err = io.StringIO()

    def show(message, category, filename, lineno, file=None, line=None):  # as a fresh interpreter would: stderr
        print(warnings.formatwarning(message, category, filename, lineno, line), end="", file=sys.stderr)

    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        try:
            main(argv)
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            if isinstance(stop.code, str):
                print(stop.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - an uncaught exception is the finding: record its traceback
            import traceback

            traceback.print_exc()
            code = 1
    return code, err.getvalue()


def _call_subprocess(argv: list[str], timeout: float) -> tuple[int, str, float]:
    code = ("import runpy, sys\n"  # the peak from /proc (VmHWM): ru_maxrss keeps the parent's across exec
            "sys.argv = ['splat4d'] + sys.argv[1:]\n"
            "try:\n"
            "    runpy.run_module('splat4d', run_name='__main__')\n"
            "finally:\n"
            "    with open('/proc/self/status') as status:\n"
            "        hwm = [ln.split()[1] for ln in status if ln.startswith('VmHWM')]\n"
            "    print(f'__peak_rss_kb {hwm[0]}', file=sys.stderr)\n")
    try:
        res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=timeout,
                             cwd=ROOT)
    except subprocess.TimeoutExpired as err:
        return -1, f"timed out after {timeout:.0f} s\n{err.stderr or ''}", math.nan
    lines = res.stderr.splitlines()
    peak = math.nan
    if lines and lines[-1].startswith("__peak_rss_kb"):
        peak = int(lines.pop().split()[1]) / 1024
    return res.returncode, "\n".join(lines), peak


def judge(code: int, stderr: str, out: Path, case: Case) -> tuple[str, str, int]:
    """(outcome, message, Gaussians) of a finished run by the rules of this module's docstring."""
    from splat4d.io.ply import read_ply

    lines = [line for line in stderr.splitlines() if line.strip()]
    if "Traceback" in stderr:
        return "FAIL: traceback", next((ln for ln in reversed(lines) if ln.strip()), ""), 0
    if code == 0:
        try:
            scene = read_ply(out / "scene.ply")
        except Exception as err:  # noqa: BLE001 - any failure to read it back is the finding
            return f"FAIL: exit 0 but scene.ply unreadable ({err})", "", 0
        values = np.concatenate([v.detach().reshape(len(scene), -1).numpy() for v in scene.params().values()], 1)
        if len(scene) == 0:
            return "FAIL: exit 0 with an empty scene", "", 0
        if not np.isfinite(values).all():
            return f"FAIL: {int((~np.isfinite(values)).any(1).sum())} non-finite Gaussians", "", len(scene)
        return "ok", f"{len(scene)} Gaussians", len(scene)
    if code != 2:
        return f"FAIL: exit {code}", lines[-1] if lines else "", 0
    errors = [line for line in lines if line.startswith("error:")]
    others = [line for line in lines if not line.startswith("error:") and not line.startswith("[")]
    if len(errors) != 1 or lines[-1] != errors[0] or others:
        return f"FAIL: stderr is not one error line ({len(errors)} error lines, {len(others)} others)", \
            (others or lines or [""])[0], 0
    left = [name for name in FINISHED_RESULTS if (out / name).exists()]
    if left:
        return f"FAIL: refused but left {left}", errors[0], 0
    if case.error_says and case.error_says not in errors[0].lower():
        return f"FAIL: the line does not say {case.error_says!r}", errors[0], 0
    return "error", errors[0], 0


def run_case(case: Case, work: Path, in_process: bool = False, timeout: float = 1800.0,
             extra: tuple[str, ...] = ()) -> Result:
    """Make the case's input under ``work`` and run it. ``extra``: flags after ``SMALL`` (before the case's own)."""
    folder = work / case.name
    if folder.exists():  # a fresh folder: an earlier run's scene.ply must not pass for this run's
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    args = case.make(folder)
    out = folder / "out"
    base = [*SMALL, *extra] if case.small else ["--no-progress"]
    argv = ["run", *args[:1], "--out", str(out), *base, *args[1:]]
    t0 = time.perf_counter()
    peak = None
    if in_process:
        code, stderr = _call_in_process(argv)
    else:
        code, stderr, peak = _call_subprocess(argv, timeout)
    seconds = time.perf_counter() - t0
    outcome, message, gaussians = judge(code, stderr, out, case)
    if case.check is not None and not outcome.startswith("FAIL"):
        problem = case.check(args)
        if problem:
            outcome = f"FAIL: {problem}"
    tail = stderr.splitlines()[-12:] if outcome.startswith("FAIL") else []
    return Result(case.name, outcome, round(seconds, 2), message, case.expect, gaussians,
                  None if peak is None or math.isnan(peak) else round(peak, 1), tail)


def format_table(results: list[Result]) -> str:
    rows = [("case", "outcome", "seconds", "peak MB", "message")]
    for r in results:
        status = r.outcome if r.passed else f"{r.outcome} (expected {r.expected})"
        rows.append((r.case, status, f"{r.seconds:.1f}", "" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}",
                     r.message[:110]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows)


def markdown_table(cases: list[dict]) -> str:
    """docs/reliability.md's table from the JSON's cases."""
    rows = ["| case | input or setting | expected | outcome | s | peak MB | message |",
            "|---|---|---|---|---:|---:|---|"]
    for c in cases:
        outcome = c["outcome"] if c["passed"] else f"**{c['outcome']}**"
        message = c["message"].replace("|", "\\|")
        message = message if len(message) <= 150 else message[:147] + "..."
        peak = "" if c.get("peak_rss_mb") is None else f"{c['peak_rss_mb']:.0f}"
        rows.append(f"| {c['case']} | {c['why']} | {c['expected']} | {outcome} | {c['seconds']:.1f} | {peak} "
                    f"| {message} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="run the cases whose name holds one of these")
    parser.add_argument("--work", type=Path, default=Path("/tmp/splat4d_fuzz"), help="inputs and outputs go here")
    parser.add_argument("--json", type=Path, default=ROOT / "bench_results" / "fuzz_inputs.json")
    parser.add_argument("--in-process", action="store_true", help="call splat4d.cli.main instead of a subprocess")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--markdown", action="store_true", help="print the JSON's table as markdown and stop")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table(json.loads(args.json.read_text())["cases"]))
        return 0
    cases = [c for c in CASES if not args.only or any(word in c.name for word in args.only)]
    if args.list:
        print("\n".join(f"{c.name:<24} {c.expect:<6} {c.why}" for c in cases))
        return 0
    os.environ.setdefault("PYTHONWARNINGS", "default")
    results = []
    for case in cases:
        results.append(run_case(case, args.work, in_process=args.in_process))
        r = results[-1]
        print(f"{r.case:<24} {r.outcome:<10} {r.seconds:7.1f} s  {r.message[:100]}", flush=True)
        for line in r.stderr_tail:
            print(f"    | {line}")
    print()
    print(format_table(results))
    failed = [r.case for r in results if not r.passed]
    print(f"\n{len(results) - len(failed)}/{len(results)} cases as expected" + (f"; failed: {failed}" if failed else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"command": "splat4d run INPUT --out OUT " + " ".join(SMALL) + " [case flags]",
                   "python": sys.version.split()[0], "max_rss_note": "peak_rss_mb: the run's own peak RSS",
                   "cases": [{**asdict(r), "passed": r.passed,
                              "why": next(c.why for c in CASES if c.name == r.case)} for r in results]}
        existing = json.loads(args.json.read_text()) if (args.only and args.json.is_file()) else None
        if existing:  # a partial run updates its cases and keeps the others
            kept = [c for c in existing["cases"] if c["case"] not in {r.case for r in results}]
            order = [c.name for c in CASES]
            payload["cases"] = sorted(kept + payload["cases"], key=lambda c: order.index(c["case"])
                                      if c["case"] in order else len(order))
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The single-image pipeline: load -> segment -> depth -> init -> prior -> fit -> render/export.

Each stage's output is cached in ``OUT/cache/`` under a key made of the input file's hash and every setting that
stage (and the ones before it) depends on, so a re-run with the same input and settings resumes where it stopped,
and changing e.g. ``--fit.iterations`` re-runs only the fit and what follows. Every output file is written
atomically; the scene files are written only after a successful fit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from splat4d.config import RunConfig, to_dict
from splat4d.types import Cameras, Views

CACHE_VERSION = 1
STAGES = ("segment", "depth", "init", "prior", "fit", "export")


@dataclass
class RunResult:
    out: Path
    metrics: dict
    files: dict[str, Path] = field(default_factory=dict)


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stage_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:16]


class StageCache:
    """``OUT/cache/NAME.pt`` plus ``NAME.key``; ``get`` returns the stored object only when the key matches."""

    def __init__(self, root: Path, enabled: bool):
        self.root = root / "cache"
        self.enabled = enabled

    def get(self, name: str, key: str):
        data, key_file = self.root / f"{name}.pt", self.root / f"{name}.key"
        if not (self.enabled and data.is_file() and key_file.is_file() and key_file.read_text() == key):
            return None
        try:
            return torch.load(data, weights_only=False)
        except Exception:  # noqa: BLE001 - a corrupt cache entry is recomputed
            return None

    def put(self, name: str, key: str, value) -> None:
        from splat4d.io.ply import atomic_write_bytes

        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.root / f"{name}.pt", lambda f: torch.save(value, f))
        atomic_write_bytes(self.root / f"{name}.key", lambda f: f.write(key.encode()))


def _log(msg: str, quiet: bool = False) -> None:
    """Stage lines go to stderr (through tqdm so they do not break a running bar)."""
    if not quiet:
        import sys

        from tqdm.auto import tqdm

        tqdm.write(msg, file=sys.stderr)


def run(cfg: RunConfig) -> RunResult:
    """Run the pipeline on ``cfg.input`` into ``cfg.out``; returns the metrics and output paths."""
    user_fov = cfg.init.fov_deg
    from splat4d.io.ply import atomic_write_bytes, write_ply, write_splat
    from splat4d.io.video import VideoWriter, write_png
    from splat4d.load import InputError, LoadedImage, load_image
    from splat4d.nerfstudio.export import CAMERAS_FILE, export_nerfstudio, write_view_cameras
    from splat4d.segment import segment
    from splat4d.train import loss_decreased

    out = Path(cfg.out)
    if not Path(cfg.input).is_file() and not (cfg.multiview and Path(cfg.input).is_dir()):
        raise InputError(f"input not found: {cfg.input}")
    from splat4d.motion.pipeline import VIDEO_SUFFIXES

    is_video = Path(cfg.input).suffix.lower() in VIDEO_SUFFIXES and Path(cfg.input).suffix.lower() != ".gif"
    if is_video and not cfg.multiview:
        raise InputError(f"{cfg.input} is a video: add --motion for a still camera filming something that moves "
                         "(4D), or --multiview for a camera moving around a still object")
    if cfg.multiview and (cfg.right is not None or cfg.side_by_side):
        raise InputError("--multiview takes one video (or folder of frames); stereo input goes with --motion")
    if cfg.load.resolution < 16:
        raise InputError("--load.resolution must be at least 16")
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA device is available")
    backend = "gsplat" if device.type == "cuda" else "cpu"
    out.mkdir(parents=True, exist_ok=True)
    cache = StageCache(out, cfg.resume)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    timings: dict[str, float] = {}
    cached: list[str] = []
    progress = cfg.progress

    def stage(index: int, name: str, key: str, compute: Callable[[], Any]):
        t0 = time.perf_counter()
        value = cache.get(name, key)
        if value is None:
            value = compute()
            cache.put(name, key, value)
        else:
            cached.append(name)
        timings[name] = round(time.perf_counter() - t0, 3)
        _log(f"[{index}/{len(STAGES)}] {name:<8} {timings[name]:7.2f} s{'  (cached)' if name in cached else ''}")
        return value

    # 1-2. load and segment ---------------------------------------------------------------------------------------
    if cfg.right is not None and not Path(cfg.right).is_file():
        raise InputError(f"right image not found: {cfg.right}")
    right_hash = file_hash(Path(cfg.right)) if cfg.right is not None else None
    if cfg.side_by_side and cfg.right is not None:
        raise InputError("give either --side-by-side or --right, not both")
    input_hash = file_hash(Path(cfg.input)) if Path(cfg.input).is_file() else _folder_hash(Path(cfg.input))
    key = stage_key(input_hash, right_hash, cfg.side_by_side, to_dict(cfg.load), to_dict(cfg.segment),
                    cfg.sfm.max_frames if cfg.multiview else None)  # reconstruct() keys the poses on the rest

    def do_segment():
        from splat4d.segment import crop_square

        if cfg.multiview:  # one square crop for every frame keeps one camera model (K) for all of them
            from splat4d.motion.pipeline import crop_clip, load_frames

            raw = load_frames(cfg.input, cfg.sfm.max_frames)
            images, masks, box, method = crop_clip(raw, cfg, centred=True)
            return {"image": images[0], "mask": masks[0], "method": method, "box": box,
                    "original_size": raw[0].shape[1::-1], "frames": (images, masks)}

        max_side = max(2048, 4 * cfg.load.resolution)
        image = load_image(cfg.input, max_side=max_side, max_pixels=cfg.load.max_input_pixels)
        right = None
        if cfg.side_by_side:  # left view | right view in one image
            from splat4d.depth.stereo import split_side_by_side

            try:
                left_rgb, right_rgb = split_side_by_side(image.rgb)
            except ValueError as err:
                raise InputError(f"{cfg.input}: {err}") from None
            image = LoadedImage(np.ascontiguousarray(left_rgb), None, image.path, left_rgb.shape[1::-1])
            right = LoadedImage(np.ascontiguousarray(right_rgb), None, image.path, right_rgb.shape[1::-1])
        elif cfg.right is not None:
            right = load_image(cfg.right, max_side=max_side, max_pixels=cfg.load.max_input_pixels)
        seg = segment(image, cfg.segment, cfg.load.resolution)
        out = {"image": seg.image, "mask": seg.mask, "method": seg.method, "box": seg.box,
               "original_size": image.original_size}
        if right is not None:  # the same crop on both keeps the pair rectified
            if right.rgb.shape != image.rgb.shape:
                raise InputError(f"the stereo pair differs in size: {cfg.input} is {image.rgb.shape[1::-1]}, "
                                 f"{cfg.right} is {right.rgb.shape[1::-1]}")
            out["stereo"] = (crop_square(image.rgb, seg.box, cfg.load.resolution, 1.0),
                             crop_square(right.rgb, seg.box, cfg.load.resolution, 1.0))
        return out

    seg = stage(1, "segment", key, do_segment)
    image, mask = seg["image"], seg["mask"]
    if "stereo" in seg:
        cfg = dataclasses.replace(cfg, depth=dataclasses.replace(cfg.depth, backend="stereo"))
    if "frames" in seg:  # multi-view: --init.fov-deg is the video's; the centred crop sees a part of it
        f_full = 0.5 * seg["original_size"][1] / np.tan(np.radians(cfg.init.fov_deg) / 2)
        fov = float(np.degrees(2 * np.arctan(0.5 * seg["box"][2] / f_full)))
        cfg = dataclasses.replace(cfg, init=dataclasses.replace(cfg.init, fov_deg=fov))

    init, generated, fitted = reconstruct(image, mask, cfg, backend=backend, device=device, stage=stage, key=key,
                                          stereo=seg.get("stereo"), frames=seg.get("frames"))
    depth = init.depth
    scene = fitted.scene

    # 7. render and export ------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    files = {"scene.ply": out / "scene.ply", "orbit.mp4": out / "orbit.mp4", "depth.png": out / "depth.png",
             "mask.png": out / "mask.png", "config.yaml": out / "config.yaml", "metrics.json": out / "metrics.json",
             "views": out / "views"}
    write_ply(scene, files["scene.ply"])
    if cfg.video.write_splat:
        files["scene.splat"] = out / "scene.splat"
        write_splat(scene, files["scene.splat"])
    write_png(np.repeat(mask[..., None], 3, axis=2), files["mask.png"])
    write_png(depth_to_color(depth.numpy(), mask), files["depth.png"])
    views_dir = files["views"]
    views_dir.mkdir(exist_ok=True)
    write_png(image, views_dir / "view_000_input.png")
    write_png(np.repeat(mask[..., None], 3, axis=2), views_dir / "mask_000.png")
    view_files, mask_files, weights = ["view_000_input.png"], ["mask_000.png"], [1.0]
    cameras = init.camera
    if generated is not None:
        for i in range(len(generated)):
            view_files.append(f"view_{i + 1:03d}.png")
            mask_files.append(f"mask_{i + 1:03d}.png")
            write_png(generated.images[i], views_dir / view_files[-1])
            write_png(np.repeat(generated.masks[i].numpy()[..., None], 3, axis=2), views_dir / mask_files[-1])
        weights += [float(w) for w in generated.view_weights()]
        cameras = Cameras.concat([init.camera, generated.cameras])
    write_view_cameras(views_dir / CAMERAS_FILE, cameras, view_files, mask_files, weights)
    files["nerfstudio"] = out / "nerfstudio"
    export_nerfstudio(out, files["nerfstudio"])
    from splat4d import paths
    from splat4d.render.frames import render_frames

    path = paths.orbit(radius=cfg.init.distance, elevation_deg=cfg.video.elevation_deg, frames=cfg.video.frames,
                       width=cfg.video.size, height=cfg.video.size, fov_y_deg=float(init.camera.fov_y_deg()[0]),
                       fps=cfg.video.fps)
    with VideoWriter(files["orbit.mp4"], fps=cfg.video.fps) as writer:
        for frame in render_frames(scene.to(device), path, backend=backend, background=torch.ones(3),
                                   progress=progress, desc="orbit.mp4"):
            writer.write(frame)
    timings["export"] = round(time.perf_counter() - t0, 3)
    _log(f"[6/{len(STAGES)}] export   {timings['export']:7.2f} s")

    metrics = {
        "input": str(cfg.input),
        "segmentation": seg["method"],
        "mask_fraction": round(float((mask > 0.5).mean()), 4),
        "gaussians_init": len(init.scene),
        "gaussians_final": len(scene),
        "generated_views": 0 if generated is None else len(generated),
        "fov_deg": round(cfg.init.fov_deg, 3),
        "input_psnr_init": round(fitted.initial_input_psnr, 3),
        "input_psnr": round(fitted.input_psnr, 3),
        "loss_decreased": loss_decreased(fitted.history),
        "loss_history": fitted.history,
        "seconds": {**timings, "total": round(sum(timings.values()), 3)},
        "cached_stages": cached,
        "backend": backend,
    }
    # The saved config re-runs this run: the multi-view crop's field of view is derived, not a setting.
    save_config_atomic(dataclasses.replace(cfg, init=dataclasses.replace(cfg.init, fov_deg=user_fov)),
                       files["config.yaml"])
    atomic_write_bytes(files["metrics.json"], lambda f: f.write(json.dumps(metrics, indent=2).encode()))
    _log(f"done in {metrics['seconds']['total']:.1f} s: {len(scene)} Gaussians, input-view PSNR "
         f"{fitted.input_psnr:.2f} dB -> {out}")
    return RunResult(out=out, metrics=metrics, files=files)


Stage = Callable[[int, str, str, Callable[[], Any]], Any]


def _run_stage(index: int, name: str, key: str, compute: Callable[[], Any]) -> Any:
    return compute()


def reconstruct(image: np.ndarray, mask: np.ndarray, cfg: RunConfig, *, backend: str = "cpu",
                device: torch.device | str = "cpu", stage: Stage = _run_stage, key: str = "",
                stereo: tuple[np.ndarray, np.ndarray] | None = None,
                frames: tuple[np.ndarray, np.ndarray] | None = None):
    """Stages 3-6 on a working image (R, R, 3) over white and its mask: depth -> init -> prior -> fit.

    ``stereo`` = (left, right) raw working crops of a rectified pair, for the 'stereo' depth backend.
    ``frames`` = (images (T, R, R, 3), masks (T, R, R)) of a video around a still object whose frame 0 is
    ``image``: camera poses are estimated (``splat4d.sfm``) and the registered frames join the supervisory views.

    Returns ``(InitResult, generated Views or None, FitResult)``. ``stage(index, name, key, compute)`` wraps each
    stage (the pipeline caches there); ``key`` chains the cache keys of earlier stages.
    """
    from splat4d.depth import make_depth_estimator
    from splat4d.init import init_scene
    from splat4d.prior import make_view_generator, target_cameras
    from splat4d.train import fit

    key = stage_key(key, to_dict(cfg.depth))
    key = stage_key(key, cfg.init.fov_deg, cfg.init.distance)
    def do_depth():
        if cfg.depth.backend == "stereo":
            if stereo is None:
                raise ValueError("the 'stereo' depth backend needs a right image: splat4d run left.png --right right.png")
            from splat4d.depth.stereo import StereoDepth

            left, right = stereo
            estimator = StereoDepth(right, num_disparities=cfg.depth.max_disparity, distance=cfg.init.distance,
                                    left=left)
        else:
            estimator = make_depth_estimator(cfg.depth, cfg.init.fov_deg, cfg.init.distance, device=str(device))
        return estimator(image, mask)

    depth = stage(2, "depth", key, do_depth)
    key = stage_key(key, to_dict(cfg.init))
    init = stage(3, "init", key, lambda: init_scene(image, mask, depth, cfg.init, rasterize_backend="cpu"))
    input_view = Views(torch.from_numpy(image)[None], torch.from_numpy(mask)[None], init.camera)

    key = stage_key(key, to_dict(cfg.prior), cfg.seed)

    observed = None
    if frames is not None:
        key = stage_key(key, to_dict(cfg.sfm))  # the prior's and the fit's caches depend on the poses too
        observed = stage(4, "poses", key,
                         lambda: observed_views(frames[0], frames[1], init.camera, cfg, init.depth.numpy()))

    def do_prior():
        generator = make_view_generator(cfg.prior, backend="cpu", device=str(device), seed=cfg.seed,
                                        fov_deg=cfg.init.fov_deg, distance=cfg.init.distance)
        targets = target_cameras(cfg.prior, init.camera, cfg.init.distance)
        if observed is not None:  # the prior only fills in where no video frame looks
            targets = far_from(targets, observed.cameras, cfg.sfm.prior_min_angle_deg)
        prior_views = None if generator is None or len(targets) == 0 else generator(input_view, init.scene, targets)
        if observed is None:
            return prior_views
        from splat4d.train import concat_views

        return observed if prior_views is None else concat_views(observed, prior_views)

    generated = stage(4, "prior", key, do_prior)
    key = stage_key(key, to_dict(cfg.fit), cfg.seed, backend)

    fit_cfg = cfg.fit
    if observed is not None and fit_cfg.input_view_probability is None:  # real frames weigh as much as the input
        fit_cfg = dataclasses.replace(fit_cfg, input_view_probability=1.0 / (1 + len(observed)))

    def do_fit():
        result = fit(init.scene.to(device), input_view, generated, init.depth, fit_cfg, distance=cfg.init.distance,
                     seed=cfg.seed, backend=backend, progress=cfg.progress)
        result.scene = result.scene.to("cpu")
        return result

    fitted = stage(5, "fit", key, do_fit)
    return init, generated, fitted


def observed_views(images: np.ndarray, masks: np.ndarray, camera, cfg: RunConfig, depth0=None) -> Views:
    """The video frames after the first, with the camera poses estimated for them, as supervisory views (weight 1:
    they are real observations). Frames that could not be registered are left out; too few registered is an
    error."""
    from splat4d.load import InputError
    from splat4d.sfm import SfmError, estimate_poses, to_splat4d_world

    K = camera.K[0].double().numpy()
    try:
        sfm = estimate_poses(images, masks, K, cfg.sfm, progress=cfg.progress)
    except SfmError as err:
        raise InputError(f"camera poses of {cfg.input}: {err}. --multiview needs a textured object filmed from "
                         "overlapping viewpoints; for a still camera use --motion") from None
    registered = int(sfm.registered.sum())
    if registered < max(2, cfg.sfm.min_registered * len(images)):
        raise InputError(f"camera poses of {cfg.input}: only {registered} of {len(images)} frames registered "
                         f"(--sfm.min-registered {cfg.sfm.min_registered}); film more slowly or a more textured "
                         "object, or use --motion for a still camera")
    c2w = torch.from_numpy(to_splat4d_world(sfm, cfg.init.distance, K, depth0)).float()
    keep = [k for k in range(1, len(images)) if sfm.registered[k]]
    _log(f"          poses: {registered}/{len(images)} frames, {len(sfm.points)} points, median reprojection "
         f"{sfm.reprojection_px:.2f} px")
    cams = Cameras(c2w[keep], camera.K[:1].expand(len(keep), 3, 3).clone(), camera.width, camera.height)
    return Views(torch.from_numpy(images[keep]).float(), torch.from_numpy(masks[keep]).float(), cams)


def far_from(targets, cameras, min_angle_deg: float):
    """The target cameras whose direction from the object centre (origin) is at least ``min_angle_deg`` from every
    camera of ``cameras``."""
    a = torch.nn.functional.normalize(targets.centers().double(), dim=-1)
    b = torch.nn.functional.normalize(cameras.centers().double(), dim=-1)
    angle = torch.rad2deg(torch.acos((a @ b.T).clamp(-1, 1))).min(dim=1).values
    keep = torch.nonzero(angle >= min_angle_deg).flatten()
    return targets[keep] if len(keep) else Cameras(targets.c2w[:0], targets.K[:0], targets.width, targets.height)


def _folder_hash(path: Path) -> str:
    """Hash of a folder of frames: the names and contents of its files, in order."""
    h = hashlib.sha256()
    for p in sorted(path.iterdir()):
        if p.is_file():
            h.update(p.name.encode())
            h.update(file_hash(p).encode())
    return h.hexdigest()


def save_config_atomic(cfg: RunConfig, path: Path) -> None:
    import yaml

    from splat4d.io.ply import atomic_write_bytes

    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def depth_to_color(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Near = bright, far = dark on the object, white background: a grey depth picture for people."""
    fg = mask > 0.5
    out = np.ones(depth.shape + (3,), np.float32)
    if fg.any():
        d = depth[fg]
        lo, hi = float(d.min()), float(d.max())
        t = (hi - depth) / max(hi - lo, 1e-9)
        grey = 0.15 + 0.8 * np.clip(t, 0, 1)
        out[fg] = grey[fg][:, None]
    return out


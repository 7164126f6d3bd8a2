"""`splat4d run clip.mp4 --motion`: a short video from a still camera -> a moving Gaussian scene.

Frames are segmented one by one and cropped by one shared square (the union of the object's boxes), depth is
estimated per frame (the geometric backend is already consistent; relative backends go through the DepthCrafter-
style windowed alignment), the scene is initialised from the first frame and its motion fitted
(``splat4d.motion.fit``). Outputs: ``bullet_time.mp4`` (the camera orbits while time runs), ``frames/scene_TTT.ply``
(the scene at every frame), ``motion.npz`` (canonical Gaussians, bases, coefficients), ``metrics.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from splat4d.config import RunConfig
from splat4d.load import InputError, LoadedImage

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif")


def _pick(n: int, max_frames: int) -> np.ndarray:
    """Indices of at most ``max_frames`` of ``n`` frames, evenly spaced, first and last included."""
    return np.unique(np.linspace(0, n - 1, min(max_frames, n)).round().astype(int))


def load_frames(path: Path, max_frames: int, max_side: int = 1024) -> list[np.ndarray]:
    """Frames (H, W, 3) float in [0, 1] from a video file (PyAV) or a folder of images (sorted by name; (H, W, 4)
    with the alpha channel for RGBA cut-outs), evenly subsampled to at most ``max_frames`` and downscaled to at most
    ``max_side``. Only the picked frames are converted and kept, so long clips do not fill the memory."""
    import cv2

    path = Path(path)
    if path.is_dir():
        from splat4d.load import load_image

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".tif"))
        total = len(files)
        frames = []
        for i in _pick(total, max_frames) if total else []:  # RGBA cut-outs keep their alpha: it becomes the mask
            image = load_image(files[i], max_side=max_side)
            frames.append(image.rgb if image.alpha is None else np.dstack([image.rgb, image.alpha]))
    else:
        import av

        try:
            with av.open(str(path)) as container:  # first pass: count (decoding without converting)
                total = sum(1 for _ in container.decode(video=0))
            wanted = set(_pick(total, max_frames).tolist()) if total else set()
            frames = []
            with av.open(str(path)) as container:
                for i, f in enumerate(container.decode(video=0)):
                    if i in wanted:
                        frames.append(f.to_ndarray(format="rgb24").astype(np.float32) / 255.0)
        except (av.error.FFmpegError, OSError) as err:
            raise InputError(f"cannot read {path} as a video ({err})") from err
    if total < 2:
        raise InputError(f"{path} has {total} frame(s); a video mode needs at least 2")
    if len({f.shape for f in frames}) != 1:
        raise InputError(f"the frames of {path} differ in size")
    out = []
    for f in frames:
        scale = max_side / max(f.shape[:2])
        if scale < 1:
            f = cv2.resize(f, (round(f.shape[1] * scale), round(f.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(f, dtype=np.float32))
    return out


def crop_clip(raw: list[np.ndarray], cfg: RunConfig, centred: bool = False):
    """Segment every frame and crop all of them by one square (the union of the object's boxes, padded) resized to
    the working resolution: (images over white (T, R, R, 3), masks (T, R, R), box, segmentation method).
    ``centred``: the square is centred on the frame's centre (the principal point stays in the middle, so the crop is
    a pinhole camera with a known field of view)."""
    from splat4d.segment import crop_square, foreground_mask

    masks_full = []
    method = cfg.segment.method
    rgbs = [np.ascontiguousarray(f[..., :3]) for f in raw]
    for i, frame in enumerate(raw):
        alpha = frame[..., 3] if frame.shape[2] == 4 else None
        mask, method = foreground_mask(LoadedImage(rgbs[i], alpha, Path(f"{cfg.input}#{i}"), frame.shape[1::-1]),
                                       cfg.segment)
        masks_full.append(mask)
    union = np.any(np.stack(masks_full) > 0.5, axis=0)
    ys, xs = np.nonzero(union)
    padding = 0.0 if method == "none" else cfg.segment.padding
    side = int(np.ceil(max(np.ptp(xs) + 1, np.ptp(ys) + 1) / max(1e-3, 1 - 2 * padding)))
    box = (int(round((xs.min() + xs.max() + 1) / 2 - side / 2)), int(round((ys.min() + ys.max() + 1) / 2 - side / 2)),
           side, side)
    if centred:
        h, w = union.shape
        reach = max(w / 2 - box[0], box[0] + side - w / 2, h / 2 - box[1], box[1] + side - h / 2)
        side = 2 * int(np.ceil(reach))
        box = (int(round(w / 2 - side / 2)), int(round(h / 2 - side / 2)), side, side)
    R = cfg.load.resolution
    masks = np.stack([np.clip(crop_square(m[..., None], box, R, 0.0)[..., 0], 0, 1) for m in masks_full])
    images = np.stack([crop_square(f * m[..., None] + (1 - m[..., None]), box, R, 1.0)
                       for f, m in zip(rgbs, masks_full)])
    return images, masks, box, method


def run_motion(cfg: RunConfig) -> dict:
    from splat4d import paths
    from splat4d.depth import make_depth_estimator
    from splat4d.depth.video import consistent_video_depth
    from splat4d.init import init_scene
    from splat4d.io.ply import atomic_write_bytes, write_ply
    from splat4d.io.video import VideoWriter
    from splat4d.motion import static_motion
    from splat4d.motion.fit import fit_motion
    from splat4d.motion.render import bullet_time_frames
    from splat4d.segment import crop_square
    from splat4d.types import DepthMap

    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    raw = load_frames(cfg.input, cfg.motion.max_frames)
    right_raw = None  # a stereo clip: the right view of every frame
    if cfg.side_by_side and cfg.right is not None:
        raise InputError("give either --side-by-side or --right, not both")
    if cfg.side_by_side:
        from splat4d.depth.stereo import split_side_by_side

        try:
            raw, right_raw = (list(x) for x in zip(*(split_side_by_side(f) for f in raw)))
        except ValueError as err:
            raise InputError(f"{cfg.input}: {err}") from None
    elif cfg.right is not None:
        if not Path(cfg.right).exists():
            raise InputError(f"right video not found: {cfg.right}")
        right_raw = load_frames(cfg.right, cfg.motion.max_frames)
        if len(right_raw) != len(raw) or right_raw[0].shape != raw[0].shape:
            raise InputError(f"the stereo clips differ: {cfg.input} has {len(raw)} frames of "
                             f"{raw[0].shape[1::-1]}, {cfg.right} {len(right_raw)} of {right_raw[0].shape[1::-1]}")
    images, masks, box, _ = crop_clip(raw, cfg)
    R = cfg.load.resolution
    if right_raw is not None:  # rectified stereo: the same crop on both views keeps the rows aligned
        from splat4d.depth.stereo import stereo_video_depth

        per_frame = stereo_video_depth(np.stack([crop_square(f[..., :3], box, R, 1.0) for f in raw]),
                                       np.stack([crop_square(f[..., :3], box, R, 1.0) for f in right_raw]), masks,
                                       cfg.depth.max_disparity, cfg.init.distance)
    else:
        estimator = make_depth_estimator(cfg.depth, cfg.init.fov_deg, cfg.init.distance, device=cfg.device)
        if hasattr(estimator, "video"):  # a video model (DepthCrafter): consistent over the clip by construction
            per_frame = estimator.video(images, masks)
        else:
            per_frame = [estimator(images[t], masks[t]) for t in range(len(images))]
            if per_frame[0].kind != "metric":  # relative depth flickers: one scale/shift for the clip
                aligned = consistent_video_depth(np.stack([d.depth.numpy() for d in per_frame]), masks)
                per_frame = [DepthMap(torch.from_numpy(a), d.confidence, kind=d.kind)
                             for a, d in zip(aligned, per_frame)]
    init = init_scene(images[0], masks[0], per_frame[0], cfg.init)
    from splat4d.init import apply_depth_alignment, depth_alignment

    # One alignment (fitted on the first frame) for every frame: a per-frame fit would bring the flicker back.
    alignment = depth_alignment(per_frame[0], masks[0], float(init.camera.K[0, 0, 0]), cfg.init.distance)
    depths = torch.stack([torch.from_numpy(apply_depth_alignment(d, masks[t], alignment)).float()
                          for t, d in enumerate(per_frame)])
    motion = static_motion(init.scene, len(images), cfg.motion.num_bases, se3=cfg.motion.se3)
    fitted = fit_motion(motion, torch.from_numpy(images).float(), torch.from_numpy(masks).float(), init.camera,
                        cfg.motion, depths=depths, distance=cfg.init.distance, progress=cfg.progress).motion
    fitted.save(out / "motion.npz")
    (out / "frames").mkdir(exist_ok=True)
    for t in range(len(images)):
        write_ply(fitted.at(t), out / "frames" / f"scene_{t:03d}.ply")
    path = paths.orbit(radius=cfg.init.distance, elevation_deg=cfg.video.elevation_deg, frames=cfg.video.frames,
                       width=cfg.video.size, height=cfg.video.size, fov_y_deg=float(init.camera.fov_y_deg()[0]),
                       fps=cfg.video.fps, start_azimuth_deg=-cfg.motion.swing_deg, degrees=2 * cfg.motion.swing_deg)
    with VideoWriter(out / "bullet_time.mp4", fps=cfg.video.fps) as writer:
        for frame in bullet_time_frames(fitted, path, progress=cfg.progress):
            writer.write(frame)
    metrics = {"input": str(cfg.input), "frames": len(images), "gaussians": len(init.scene),
               "depth": "stereo" if right_raw is not None else cfg.depth.backend,
               "moving_fraction": float((fitted.weights.abs().sum(1) > 0.05).float().mean()),
               "seconds": round(time.perf_counter() - t0, 2)}
    atomic_write_bytes(out / "metrics.json", lambda f: f.write(json.dumps(metrics, indent=2).encode()))
    print(f"done: {len(images)} frames, {len(init.scene)} Gaussians -> {out}")
    return metrics

"""`splat4d toon`: a few inconsistent views to one Gaussian scene (Toon3D, Weber et al. 2024).

1. Load the views (2-10) at one working size, and their correspondences (points.json or feature matching); drop
   images with fewer than 3 shared points.
2. Per-image depth (DIR/depths/*.npy, else an estimator) and masks (excluded polygons, depth discontinuities).
3. Coarse alignment: cameras, focal lengths, depth scales and offsets (``splat4d.toon.align``).
4. Joint as-rigid-as-possible warp of every view's mesh (``splat4d.toon.warp``); images, depths, masks follow.
5. Gaussian fit on the warped views (``splat4d.toon.fit``).
6. Outputs: scene.ply/.splat, interp.mp4, views/ (warped views, masks, depths, cameras.json), metrics.json with the
   alignment residual before and after the warp, config.yaml.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from splat4d.load import InputError
from splat4d.runner import log
from splat4d.toon.points import MIN_SHARED_POINTS, ToonPoints

if TYPE_CHECKING:  # annotations only: like the rest of this module, the functions import these where used
    from splat4d.toon.align import AlignResult, ViewParams
    from splat4d.toon.fit import ToonFitResult, ToonViews
    from splat4d.toon.warp import WarpedView, WarpResult

MAX_VIEWS = 10


@dataclass
class ToonInput:
    """The views at the working size and their correspondences."""

    names: list[str]
    """Image file names (sorted)."""
    images: np.ndarray
    """(V, H, W, 3) colours in [0, 1]."""
    alpha: np.ndarray | None
    """(V, H, W) alpha where every image has one (cut-outs), else None."""
    points: ToonPoints
    """Correspondences in working-image pixels."""
    aspect: np.ndarray
    """(V,) fy / fx of square source pixels in normalised units (see ``splat4d.toon.align``)."""
    depths: np.ndarray | None
    """(V, H, W) given depths (DIR/depths/NAME.npy; 0 = unknown), else None."""
    source: str
    """Where the correspondences came from: a file or 'feature matching'."""

    def select(self, keep: np.ndarray) -> "ToonInput":
        """The views at indices ``keep``, with their points, alpha, aspects and depths."""
        return ToonInput([self.names[i] for i in keep], self.images[keep],
                         None if self.alpha is None else self.alpha[keep], self.points.select(keep), self.aspect[keep],
                         None if self.depths is None else self.depths[keep], self.source)


def image_files(folder: Path) -> list[Path]:
    from splat4d.io.frames import IMAGE_SUFFIXES

    images = folder / "images"
    if not folder.is_dir():
        raise InputError(f"input folder not found: {folder}")
    if not images.is_dir():
        raise InputError(f"{folder} has no images/ folder: put the 2-{MAX_VIEWS} views of the scene in {images}")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) == 0:
        raise InputError(f"{images} holds no images (.png, .jpg, .webp, .tif)")
    if len(files) == 1:
        raise InputError(f"{images} holds one image; Toon3D needs 2-{MAX_VIEWS} views of one scene. For a single "
                         f"image use `splat4d run {files[0]}`")
    if len(files) > MAX_VIEWS:
        raise InputError(f"{images} holds {len(files)} images; Toon3D takes 2-{MAX_VIEWS} views")
    return files


def load_toon_input(folder: Path, resolution: int, points_file: Path | None) -> ToonInput:
    import cv2

    from splat4d.load import load_image
    from splat4d.toon.points import match_points, read_points

    files = image_files(folder)
    loaded = [load_image(f, max_side=4096) for f in files]
    h0, w0 = loaded[0].rgb.shape[:2]
    scale = min(1.0, resolution / max(w0, h0))
    W, H = max(16, round(w0 * scale)), max(16, round(h0 * scale))
    images = np.stack([cv2.resize(im.rgb, (W, H), interpolation=cv2.INTER_AREA) for im in loaded])
    alpha = None
    if all(im.alpha is not None for im in loaded):
        alpha = np.stack([cv2.resize(im.alpha, (W, H), interpolation=cv2.INTER_AREA) for im in loaded])
        images = images * alpha[..., None] + (1 - alpha[..., None])  # over white
    sizes = [im.original_size for im in loaded]
    pixel_ratio = np.array([(H / h) / (W / w) for w, h in sizes])  # fy_px / fx_px of square source pixels
    points_file = points_file or (folder / "points.json" if (folder / "points.json").is_file() else None)
    if points_file is not None:
        if not Path(points_file).is_file():
            raise InputError(f"points file not found: {points_file}")
        points = read_points(points_file, sizes).scaled(np.array([(W / w, H / h) for w, h in sizes]))
        source = str(points_file)
    else:
        log(f"no points.json in {folder}: matching features (label points with `splat4d label {folder}` for "
            "drawings)")
        points = match_points(list(images))
        source = "feature matching"
    depths = None
    depth_dir = folder / "depths"
    if depth_dir.is_dir():
        missing = [f.name for f in files if not (depth_dir / f"{f.stem}.npy").is_file()]
        if missing:
            raise InputError(f"{depth_dir} lacks {missing[0]}'s depth ({Path(missing[0]).stem}.npy); give every "
                             "image's depth or none")
        depths = np.stack([_load_depth(depth_dir / f"{f.stem}.npy", W, H) for f in files])
    return ToonInput([f.name for f in files], images.astype(np.float32), alpha, points,
                     pixel_ratio * W / H, depths, source)


def _load_depth(path: Path, width: int, height: int) -> np.ndarray:
    import cv2

    depth = np.load(path)
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
        raise InputError(f"{path}: expected a 2D array of depths, got shape {depth.shape} ({depth.dtype})")
    depth = np.nan_to_num(depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if not (depth > 0).any():
        raise InputError(f"{path} has no positive depth")
    return cv2.resize(np.maximum(depth, 0), (width, height), interpolation=cv2.INTER_NEAREST)


def usable_images(points: ToonPoints, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Indices of the images to keep and one message per image dropped: unusable (validImages false) or sharing
    fewer than MIN_SHARED_POINTS points with the other kept images (repeated until none falls short)."""
    keep = points.valid_images.copy()
    messages = [f"dropping {names[i]}: marked unusable in the points file" for i in np.nonzero(~keep)[0]]
    while True:
        counts = ToonPoints(points.xy, points.valid, keep).shared_counts()
        weak = keep & (counts < MIN_SHARED_POINTS)
        if not weak.any():
            break
        for i in np.nonzero(weak)[0]:
            messages.append(f"dropping {names[i]}: it shares {counts[i]} point(s) with the other images, at least "
                            f"{MIN_SHARED_POINTS} are needed")
        keep &= ~weak
    return np.nonzero(keep)[0], messages


def depth_config(cfg, learned: bool):
    """The depth settings to use without given depths: ``cfg``, or with ``learned`` and the default offline backend,
    the first learned model whose weights are already on this machine (Toon3D uses learned monocular depth)."""
    import dataclasses

    from splat4d.hub import weights_present

    if cfg.backend == "auto":  # drawings, not photos of objects: the shape prior was not made for them
        cfg = dataclasses.replace(cfg, backend="geometric")
    if not learned or cfg.backend != "geometric":
        return cfg
    from splat4d.depth.marigold import DEFAULT_MODEL as MARIGOLD
    from splat4d.depth.transformers_depth import DEFAULT_MODEL as DEPTH_ANYTHING

    for backend, model in (("transformers", DEPTH_ANYTHING), ("marigold", MARIGOLD)):
        if weights_present(model)[0]:
            return dataclasses.replace(cfg, backend=backend, model=model)
    return cfg


def normalised_depths(given: np.ndarray | None, images: np.ndarray, alpha: np.ndarray | None, args) -> np.ndarray:
    """(V, H, W) raw depths, divided by their largest value over all views (Toon3D's normalisation); 0 = unknown.
    Given depths as they are; else the depth estimator's (disparity inverted)."""
    if given is not None:
        raw = given.astype(np.float64)
    else:
        from splat4d.depth import make_depth_estimator

        import math

        h, w = images.shape[1:3]  # the estimators take a vertical field of view; --align.fov-deg is horizontal
        fov_y = math.degrees(2 * math.atan(math.tan(math.radians(args.align.fov_deg) / 2) * h / w))
        cfg = depth_config(args.depth, args.learned_depth)
        log(f"depth: {cfg.backend}" + (f" ({cfg.model})" if cfg.model else ""))
        estimator = make_depth_estimator(cfg, fov_deg=fov_y, distance=2.5, device=str(_device(args.device)))
        raw = []
        for i, image in enumerate(images):
            mask = alpha[i] if alpha is not None else np.ones(image.shape[:2], np.float32)
            estimate = estimator(image, mask)
            d = estimate.depth.numpy().astype(np.float64)
            if estimate.kind == "disparity":
                d = np.where(d > 0, 1.0 / (d / max(float(d.max()), 1e-12) + 0.05), 0.0)
            raw.append(np.where(mask > 0.5, d, 0.0))
        raw = np.stack(raw)
    top = float(raw.max())
    if not top > 0:
        raise InputError("no view has a positive depth")
    return raw / top


def _device(name: str) -> torch.device:
    from splat4d.pipeline import resolve_device

    return resolve_device(name)


def filled(depth: np.ndarray) -> np.ndarray:
    """``depth`` with every unknown (0) pixel given its nearest known neighbour's depth (so points and mesh vertices
    on an object's outline or the background still get a depth)."""
    from scipy.ndimage import distance_transform_edt

    known = depth > 0
    if known.all() or not known.any():
        return depth
    _, (rows, cols) = distance_transform_edt(~known, return_indices=True)
    return depth[rows, cols]


def view_masks(depth: np.ndarray, polygons: list[np.ndarray], alpha: np.ndarray | None,
               edge_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(usable, objects) for one view (H, W): usable leaves out the excluded polygons and the pixels next to a depth
    jump (Sobel gradient above ``edge_threshold`` per pixel, dilated by one pixel); objects are the usable pixels
    with a depth (and inside the alpha matte, for cut-outs)."""
    import cv2

    d = depth.astype(np.float32)
    gx = cv2.Sobel(d, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(d, cv2.CV_32F, 0, 1, ksize=3) / 8
    edges = cv2.dilate((np.hypot(gx, gy) > edge_threshold).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    from skimage.draw import polygon as fill_polygon

    excluded = np.zeros(depth.shape, bool)
    for poly in polygons:  # pixels whose centre lies inside (scikit-image puts centres at integers)
        rows, cols = fill_polygon(poly[:, 1] - 0.5, poly[:, 0] - 0.5, depth.shape)
        excluded[rows, cols] = True
    usable = ~edges & ~excluded
    objects = usable & (depth > 0)
    if alpha is not None:
        objects &= alpha > 0.5
    return usable, objects


def run_toon(args):
    """Run `splat4d toon` (see the module docstring); returns a ``splat4d.pipeline.RunResult``."""
    from splat4d.pipeline import RunResult
    from splat4d.toon.fit import fit_toon

    stopwatch = Stopwatch()

    # 1. Check inputs, load the views and their correspondences; bad input stops here, before anything is written.
    check_inputs(args)
    device = _device(args.device)
    views, dropped = load_usable_views(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stopwatch.lap("load")

    # 2. Depths and masks; the correspondences' depths.
    depths = depths_and_masks(views, args)
    points = correspondences(views, depths)
    stopwatch.lap("depth")

    # 3. Coarse alignment.
    coarse, before = coarse_alignment(points, views, args)
    stopwatch.lap("align")

    # 4. Joint warp, then the views follow their meshes.
    warp = warp_toon_views(coarse.params, points, depths, views, args)
    log(f"warp: residual {before:.2f} -> {warp.residual_after:.2f} px, {sum(warp.flipped)} flipped triangles")
    stopwatch.lap("warp")

    # 5. Gaussian fit on the warped views.
    fit_views = views_to_fit(warp)
    fitted = fit_toon(fit_views, args.fit, seed=args.seed, device=device, progress=args.progress)
    stopwatch.lap("fit")

    # 6. Outputs: the scene, video and views, then config.yaml and metrics.json.
    files = write_toon_outputs(out, fitted.scene, fit_views, views.names, args, device)
    stopwatch.lap("export")
    metrics = toon_metrics(args, views, dropped, points, before, warp, fit_views, fitted, stopwatch.timings)
    files.update(write_config_and_metrics(out, args, metrics))
    log(f"done in {metrics['seconds']['total']:.1f} s -> {out}")
    return RunResult(out=out, mode="toon", metrics=metrics, files=files)


class Stopwatch:
    """Seconds per named stage, each logged as it ends."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.clock = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.clock, 3)
        self.clock = now
        log(f"[{name}] {self.timings[name]:7.2f} s")


def check_inputs(args) -> None:
    if args.resolution < 16:
        raise InputError("--resolution must be at least 16")


def load_usable_views(args) -> tuple[ToonInput, list[str]]:
    """The views that share enough points with each other (``usable_images``) and one message per view dropped;
    fewer than two such views is an ``InputError``."""
    data = load_toon_input(Path(args.input), args.resolution, args.points)
    keep, messages = usable_images(data.points, data.names)
    for message in messages:
        log(message)
    if len(keep) < 2:
        raise InputError(f"only {len(keep)} of {len(data.names)} images share at least {MIN_SHARED_POINTS} points "
                         "with another image; mark more corresponding points (splat4d label) or, for a single "
                         "image, use `splat4d run IMAGE`")
    return data.select(keep), messages


@dataclass
class ViewDepths:
    """Per view: raw depth, masks and the depth the mesh vertices and points read."""

    raw: np.ndarray
    """(V, H, W) raw depths over their largest value (``normalised_depths``); 0 = unknown."""
    masks: list[tuple[np.ndarray, np.ndarray]]
    """Per view (usable, objects) masks (``view_masks``)."""
    filled: list[np.ndarray]
    """Per view the raw depth with unknown pixels filled from their nearest known neighbour (``filled``)."""


def depths_and_masks(views: ToonInput, args) -> ViewDepths:
    raw = normalised_depths(views.depths, views.images, views.alpha, args)
    alpha = views.alpha
    masks = [view_masks(raw[i], views.points.polygons[i], None if alpha is None else alpha[i], args.edge_threshold)
             for i in range(len(raw))]
    return ViewDepths(raw, masks, [filled(raw[i]) for i in range(len(raw))])


@dataclass
class Correspondences:
    """The kept views' correspondences as the alignment and the warp take them."""

    xy: torch.Tensor
    """(V, N, 2) pixels."""
    valid: torch.Tensor
    """(V, N) bool: marked, in a usable image."""
    z: torch.Tensor
    """(V, N) raw depths there (from the filled depth maps)."""
    aspect: torch.Tensor
    """(V,) fy / fx of square source pixels (``ToonInput.aspect``)."""


def correspondences(views: ToonInput, depths: ViewDepths) -> Correspondences:
    from splat4d.toon.warp import bilinear

    points = views.points
    xy = torch.from_numpy(points.xy)
    valid = torch.from_numpy(points.valid & points.valid_images[:, None])
    z = torch.from_numpy(np.stack([bilinear(depths.filled[i], points.xy[i]) for i in range(len(depths.filled))]))
    return Correspondences(xy, valid, z, torch.from_numpy(views.aspect))


def coarse_alignment(points: Correspondences, views: ToonInput, args) -> tuple[AlignResult, float]:
    """Cameras, focal lengths, depth scales and offsets (``splat4d.toon.align.align``) and their reprojection
    residual in pixels."""
    from splat4d.toon.align import align, reprojection_residual

    H, W = views.images.shape[1:3]
    coarse = align(points.xy, points.z, points.valid, W, H, args.align, aspect=points.aspect)
    before = reprojection_residual(coarse.params, points.xy, points.z, points.valid, W, H)
    log(f"coarse alignment: residual {before:.2f} px")
    return coarse, before


@dataclass
class ToonWarp:
    """The joint warp and the views warped with it."""

    result: WarpResult
    views: list[WarpedView]
    residual_after: float
    """Reprojection residual after the warp, in pixels."""
    flipped: list[int]
    """Per view the triangles the warp flipped."""
    width: int
    height: int


def warp_toon_views(params: ViewParams, points: Correspondences, depths: ViewDepths, views: ToonInput,
                    args) -> ToonWarp:
    """Warp every view's mesh from the coarse alignment's ``params`` (``optimise_warp``), then its image, depth and
    masks (``warp_view``)."""
    from splat4d.toon.align import reprojection_residual
    from splat4d.toon.warp import flipped_triangles, optimise_warp, warp_view

    V, H, W = views.images.shape[:3]
    warp = optimise_warp(params, points.xy, depths.filled, points.valid, W, H, args.align, args.warp,
                         aspect=points.aspect)
    after = reprojection_residual(warp.params, warp.xy, warp.z, points.valid, W, H)
    flipped = [flipped_triangles(m, w) for m, w in zip(warp.meshes, warp.warped)]
    warped = [warp_view(views.images[i], depths.raw[i], depths.masks[i][0], depths.masks[i][1], warp.meshes[i],
                        warp.warped[i], warp.depth_offsets[i]) for i in range(V)]
    return ToonWarp(warp, warped, after, flipped, W, H)


def views_to_fit(warp: ToonWarp) -> ToonViews:
    """The warped views with the warp's cameras and camera z (scale * raw depth + offset) as a
    ``ToonViews``; object pixels need a positive camera z."""
    from splat4d.toon.fit import ToonViews

    params, warped = warp.result.params, warp.views
    cameras = params.cameras(warp.width, warp.height)
    camera_z = [np.where(w.objects, float(params.scale[i]) * w.depth + float(params.offset[i]), 0.0)
                for i, w in enumerate(warped)]
    return ToonViews(torch.from_numpy(np.stack([w.image for w in warped])),
                     torch.from_numpy(np.stack([w.usable for w in warped])),
                     torch.from_numpy(np.stack([w.objects for w in warped]) & (np.stack(camera_z) > 0)),
                     torch.from_numpy(np.stack(camera_z)).float(), cameras)


def toon_metrics(args, views: ToonInput, dropped: list[str], points: Correspondences, before: float, warp: ToonWarp,
                 fit_views: ToonViews, fitted: ToonFitResult, timings: dict[str, float]) -> dict:
    """metrics.json: the views kept and dropped, the residual before and after the warp, the cameras and depth
    scales, the fit, and the seconds per stage."""
    params, K = warp.result.params, fit_views.cameras.K
    return {
        "input": str(args.input), "mode": "toon", "images": views.names, "dropped": dropped,
        "correspondences": source_summary(views.source, views.points, points.valid),
        "residual_before_px": round(before, 4), "residual_after_px": round(warp.residual_after, 4),
        "flipped_triangles": warp.flipped,
        "triangles": [len(m.triangles) for m in warp.result.meshes],
        "focal_px": [[round(float(K[i, 0, 0]), 3), round(float(K[i, 1, 1]), 3)] for i in range(len(views.names))],
        "depth_scale": [round(float(s), 5) for s in params.scale],
        "depth_offset": [round(float(d), 5) for d in params.offset],
        "width": warp.width, "height": warp.height,
        "gaussians": len(fitted.scene), "view_psnr": fitted.psnr,
        "loss_history": fitted.history,
        "seconds": {**timings, "total": round(sum(timings.values()), 3)},
    }


def write_config_and_metrics(out: Path, args, metrics: dict) -> dict[str, Path]:
    from splat4d.io.ply import atomic_write_json
    from splat4d.pipeline import save_config_atomic

    files = {"config.yaml": out / "config.yaml", "metrics.json": out / "metrics.json"}
    save_config_atomic(args, files["config.yaml"])
    atomic_write_json(files["metrics.json"], metrics)
    return files


def source_summary(source: str, points: ToonPoints, valid: torch.Tensor) -> dict:
    return {"source": source, "points": int(points.num_points),
            "marked_per_image": [int(v) for v in valid.sum(1)]}


def write_toon_outputs(out: Path, scene, views, names: list[str], args, device: torch.device) -> dict[str, Path]:
    """scene.ply (+ .splat), interp.mp4 through the input cameras, views/ (warped views, masks, depths,
    cameras.json)."""
    from splat4d.io.ply import write_ply, write_splat
    from splat4d.io.video import write_png
    from splat4d.nerfstudio.export import CAMERAS_FILE, write_view_cameras
    from splat4d.pipeline import depth_to_color, write_video
    from splat4d.toon.fit import camera_path_through
    from splat4d.types import CameraPath

    files = {"scene.ply": out / "scene.ply", "scene.splat": out / "scene.splat", "interp.mp4": out / "interp.mp4",
             "views": out / "views"}
    write_ply(scene, files["scene.ply"])
    write_splat(scene, files["scene.splat"])
    views_dir = files["views"]
    views_dir.mkdir(exist_ok=True)
    view_files, mask_files = [], []
    for i in range(len(names)):
        view_files.append(f"warped_{i:03d}.png")
        mask_files.append(f"mask_{i:03d}.png")
        write_png(views.images[i], views_dir / view_files[-1])
        write_png(np.repeat(views.usable[i].numpy()[..., None].astype(np.float32), 3, axis=2),
                  views_dir / mask_files[-1])
        write_png(depth_to_color(views.depth[i].numpy(), views.objects[i].numpy().astype(np.float32)),
                  views_dir / f"depth_{i:03d}.png")
    write_view_cameras(views_dir / CAMERAS_FILE, views.cameras, view_files, mask_files, [1.0] * len(names))
    path = CameraPath(camera_path_through(views.cameras.to("cpu", torch.float32), max(1, args.video_frames)),
                      fps=args.fps)
    write_video(files["interp.mp4"], scene.to(device), path, args.fps, device, args.progress)
    return files

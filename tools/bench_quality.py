"""Reconstruction quality against ground truth from an independent renderer and a real stereo pair.

Objects (``tools/make_gt_objects.py``, Mitsuba 3): the pipeline (depth -> init -> prior -> fit with the chosen preset)
runs on each object's input view (its RGBA alpha is the mask; the input camera is splat4d's own, so worlds
coincide) and is scored on the 24 held-out views: PSNR / SSIM / mask IoU, split into front (|azimuth| <= 45), sides
and back (|azimuth| >= 135). Baseline (a) in the same run: plain depth-warp of the input, i.e. the front surface of
the initial scene only, no back, no fitting (the 2.5D parallax effect). Reference (c), not a method: each held-out
view's ground-truth silhouette filled with the input's mean object colour -- perfect shape, no texture guess; it
shows how far a flat colour on the right outline goes where the input never saw the object.

Middlebury motorcycle (scikit-image's stereo pair with ground-truth disparity): input = left image. Depth metrics
(AbsRel, delta1) of the geometric depth against the ground truth after least-squares scale-and-shift alignment in
disparity space (DepthCrafter's protocol). Right view: the left image lifted with the aligned disparity (oracle
scale, stated) and rendered from the right camera, against the real right image on valid-disparity pixels; bounds
in the same run: lifting with the ground-truth disparity (upper) and the unshifted left image (lower).

    python tools/bench_quality.py [--preset fast] [--res 128] [--objects mug torus] [--out bench_results/quality]

Writes quality.json, a table on stdout and contact_sheet.png (rows: object; per view GT | ours | baseline).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import splat4d  # noqa: F401  first: its thread policy must be set before torch loads OpenMP
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_gt_objects import ALL_OBJECTS, OBJECTS, make_arc, make_object  # noqa: E402

from splat4d.config import RunConfig, apply_overrides, load_preset  # noqa: E402
from splat4d.losses import mask_iou, psnr, ssim  # noqa: E402
from splat4d.pipeline import reconstruct  # noqa: E402
from splat4d.render import rasterize  # noqa: E402
from splat4d.types import Cameras  # noqa: E402

SPLITS = ("front", "sides", "back")


def split_of(azimuth: float) -> str:
    a = abs((azimuth + 180.0) % 360.0 - 180.0)
    return "front" if a <= 45 else ("back" if a >= 135 else "sides")


def load_rgba(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    arr = np.asarray(Image.open(path).convert("RGBA")).astype(np.float32) / 255.0
    return arr[..., :3], arr[..., 3]


def view_metrics(pred_rgb: torch.Tensor, pred_alpha: torch.Tensor, gt_rgb: torch.Tensor, gt_alpha: torch.Tensor):
    return {"psnr": psnr(pred_rgb.clamp(0, 1), gt_rgb), "ssim": float(ssim(pred_rgb.clamp(0, 1), gt_rgb)),
            "iou": mask_iou(pred_alpha, gt_alpha)}


def score_views(folder: Path, meta: dict, scenes: dict, references: dict | None = None) -> list[dict]:
    """Each held-out view of ``folder`` rendered from every scene of ``scenes`` (name -> GaussianScene) and scored
    against the ground truth: azimuth, elevation, split, metrics per name, and the images (GT, then each render).
    ``references`` (name -> function of the view's ground-truth alpha (H, W) giving an RGB image) are scored too,
    with that alpha as their silhouette."""
    K = torch.tensor(meta["K"], dtype=torch.float32)
    rows = []
    for view in meta["views"]:
        gt_rgb, gt_alpha = (torch.from_numpy(a) for a in load_rgba(folder / view["file"]))
        cam = Cameras(torch.tensor(view["c2w"], dtype=torch.float32), K, meta["width"], meta["height"])
        row = {"azimuth": view["azimuth"], "elevation": view["elevation"], "split": split_of(view["azimuth"])}
        images = [gt_rgb]
        for name, scene in scenes.items():
            out = rasterize(scene, cam, background=torch.ones(3))
            row[name] = view_metrics(out.rgb[0], out.alpha[0, ..., 0], gt_rgb, gt_alpha)
            images.append(out.rgb[0].clamp(0, 1))
        for name, make in (references or {}).items():
            ref = torch.from_numpy(make(gt_alpha.numpy()))
            row[name] = view_metrics(ref, gt_alpha, gt_rgb, gt_alpha)
        row["images"] = tuple(images)
        rows.append(row)
    return rows


def silhouette_oracle(gt_alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Reference (c): ``colour`` (3,) composited over white with the ground-truth alpha (H, W)."""
    a = gt_alpha[..., None].astype(np.float32)
    return (a * colour[None, None].astype(np.float32) + (1 - a)).astype(np.float32)


def mean_object_colour(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Mean colour of the object's pixels (alpha > 0.5) of an RGB image."""
    fg = alpha > 0.5
    return image[fg].mean(axis=0)


def split_means(rows: list[dict], methods: tuple[str, ...]) -> dict:
    """{split: {method: {psnr, ssim, iou}}}, means over the views of each split and over all."""
    return {split: {method: {k: float(np.mean([r[method][k] for r in rows if split in ("all", r["split"])]))
                             for k in ("psnr", "ssim", "iou")} for method in methods}
            for split in (*SPLITS, "all")}


def oracle_depth(folder: Path, meta: dict, image: np.ndarray, mask: np.ndarray, cfg: RunConfig, kind: str):
    """The input view's true surfaces as a depth map (``tools/bench_shape.py`` ray-casts the meshes; where the mask
    reaches past a mesh's outline, the nearest hit), at the true elevation of the input camera. ``kind``
    'truth': the true front and back; 'front': the true front with the configured backend's thickness behind it
    (what its thickness is worth given the right front)."""
    from scipy import ndimage

    from bench_shape import true_depths
    from splat4d.depth import make_depth_estimator
    from splat4d.types import DepthMap

    z_front, z_back = true_depths(folder.name, meta)
    elevation = float(meta["input"].get("elevation", 0.0))
    _, (iy, ix) = ndimage.distance_transform_edt(~np.isfinite(z_front), return_indices=True)
    z_front, z_back = z_front[iy, ix], z_back[iy, ix]
    if kind == "front":
        fov = float(np.degrees(2 * np.arctan(0.5 * meta["height"] / meta["K"][1][1])))
        est = make_depth_estimator(cfg.depth, fov, cfg.init.distance, elevation_deg=elevation)(image, mask)
        if est.back is None:
            raise SystemExit(f"--depth-oracle front needs a backend that predicts the back, not {cfg.depth.backend!r}")
        z_back = z_front + (est.back - est.depth).numpy()
    return DepthMap.on_mask(z_front, mask > 0.5, kind="metric", back=z_back, elevation_deg=elevation)


def cut_bottom(image: np.ndarray, alpha: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The input view as a photo whose bottom edge runs through the object, ``fraction`` of the silhouette's height
    above its lowest row: below it white, alpha 0, and marked outside the photo (``Frames.outside``)."""
    rows = np.nonzero((alpha > 0.5).any(1))[0]
    cut = int(round(rows[-1] + 1 - fraction * (rows[-1] + 1 - rows[0])))
    outside = np.zeros(alpha.shape, np.float32)
    outside[cut:] = 1.0
    image, alpha = image.copy(), alpha.copy()
    image[cut:], alpha[cut:] = 1.0, 0.0
    return image, alpha, outside


def evaluate_object(folder: Path, cfg: RunConfig, oracle: str | None = None, cut: float = 0.0) -> dict:
    meta = json.loads((folder / "cameras.json").read_text())
    image, alpha = load_rgba(folder / meta["input"]["file"])
    outside = None
    if cut > 0:
        image, alpha, outside = cut_bottom(image, alpha, cut)
    mask = alpha.astype(np.float32)
    depth = oracle_depth(folder, meta, image, mask, cfg, oracle) if oracle else None
    t0 = time.perf_counter()
    rec = reconstruct(image, mask, replace(cfg, progress=False), depth=depth, outside=outside)
    init, fitted = rec.init, rec.fitted
    seconds = time.perf_counter() - t0
    baseline = init.scene.select(torch.arange(init.n_front))
    colour = mean_object_colour(image, alpha)
    rows = score_views(folder, meta, {"ours": fitted.scene, "baseline": baseline},
                       references={"silhouette_oracle": lambda gt_alpha: silhouette_oracle(gt_alpha, colour)})
    summary = {"object": folder.name, "input_psnr": fitted.input_psnr, "seconds": seconds, "fit_steps": fitted.steps,
               "elevation_deg": None if init.elevation_deg is None else float(init.elevation_deg),
               "true_elevation_deg": float(meta["input"].get("elevation", 0.0)),
               "splits": split_means(rows, ("ours", "baseline", "silhouette_oracle"))}
    summary["views"] = [{k: v for k, v in r.items() if k != "images"} for r in rows]
    summary["_images"] = [r["images"] for r in rows]
    return summary


def evaluate_multiview(folder: Path, cfg: RunConfig, frames: int, spp: int) -> dict:
    """The object filmed along a 90-degree arc from the input camera (``frames`` Mitsuba renders, RGBA cut-outs at
    twice the views' size), run with ``--multiview``; scored on the same held-out views. Failures (poses not found)
    are reported, not raised."""
    import tempfile

    from splat4d.io.ply import read_ply
    from splat4d.load import InputError
    from splat4d.pipeline import run

    meta = json.loads((folder / "cameras.json").read_text())
    res = 2 * meta["width"]  # features need pixels: the video is filmed (and worked) at twice the views' size
    arc = folder / f"arc_{frames}x{res}"
    if len(list(arc.glob("frame_*.png"))) != frames:
        made = make_arc(folder.name, folder.parent, res, spp, frames)
        made.rename(arc)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run_cfg = replace(cfg, input=arc, out=Path(tmp), multiview=True, progress=False,
                          load=replace(cfg.load, resolution=res), sfm=replace(cfg.sfm, max_frames=frames),
                          video=replace(cfg.video, frames=2, size=32))
        try:
            run(run_cfg)
        except InputError as err:
            return {"object": folder.name, "error": str(err)}
        scene = read_ply(Path(tmp) / "scene.ply")
    seconds = time.perf_counter() - t0
    splits = split_means(score_views(folder, meta, {"ours": scene}), ("ours",))
    return {"object": folder.name, "frames": frames, "seconds": seconds,
            "splits": {split: means["ours"] for split, means in splits.items()}}


# Middlebury --------------------------------------------------------------------------------------------------------
def align_disparity(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Least-squares scale and shift of ``pred`` onto ``gt`` over ``valid`` pixels."""
    A = np.stack([pred[valid], np.ones(int(valid.sum()))], 1)
    (s, t), *_ = np.linalg.lstsq(A, gt[valid], rcond=None)
    return s * pred + t


def depth_metrics(pred_disp: np.ndarray, gt_disp: np.ndarray, valid: np.ndarray) -> dict:
    aligned = np.maximum(align_disparity(pred_disp, gt_disp, valid), 1e-3)
    pd, gd = 1.0 / aligned[valid], 1.0 / gt_disp[valid]
    ratio = np.maximum(pd / gd, gd / pd)
    return {"abs_rel": float(np.mean(np.abs(pd - gd) / gd)), "delta1": float(np.mean(ratio < 1.25))}


def right_view_mask(disparity: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Right-image pixels that some valid left pixel lands on (x_r = x_l - d): where a warp can be scored."""
    h, w = disparity.shape
    ys, xs = np.nonzero(valid)
    xr = np.round(xs - disparity[ys, xs]).astype(int)
    inside = (xr >= 0) & (xr < w)
    landed = np.zeros((h, w), bool)
    landed[ys[inside], xr[inside]] = True
    return landed


def render_right(image: np.ndarray, disparity: np.ndarray, focal_px: float, baseline: float = 1.0) -> np.ndarray:
    """Lift the left image with ``disparity`` (pixels) to depth f*B/d and render it from the right camera."""
    from splat4d.config import InitConfig
    from splat4d.init import init_scene
    from splat4d.types import DepthMap

    h, w = disparity.shape
    depth = focal_px * baseline / np.maximum(disparity, 0.5)
    fov = float(np.degrees(2 * np.arctan(0.5 * h / focal_px)))
    dm = DepthMap(torch.from_numpy(depth.astype(np.float32)), torch.ones(h, w), kind="metric")
    init = init_scene(image, np.ones((h, w), np.float32), dm, InitConfig(fov_deg=fov, closed=False, solve_colors=0))
    scene = init.scene
    right = init.camera.c2w.clone()
    right[0, 0, 3] += baseline  # the right camera sits +B along x
    cam = Cameras(right, init.camera.K, w, h)
    return rasterize(scene, cam, background=torch.ones(3)).rgb[0].clamp(0, 1).numpy()


def load_middlebury(scale: float = 0.35) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-image's Middlebury motorcycle pair at ``scale``: left, right (float [0, 1]), the ground-truth left
    disparity in pixels at that scale (0 where unknown) and its valid mask."""
    import cv2
    import skimage.data

    left, right, disp = skimage.data.stereo_motorcycle()
    h, w = int(left.shape[0] * scale), int(left.shape[1] * scale)
    left = cv2.resize(left, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    right = cv2.resize(right, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    finite = np.isfinite(disp)
    disp_s = cv2.resize(np.where(finite, disp, 0).astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST) * scale
    valid = cv2.resize(finite.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    return left, right, disp_s, valid & (disp_s > 0)


def evaluate_middlebury(cfg: RunConfig, scale: float = 0.35) -> dict:
    from splat4d.depth import make_depth_estimator

    left, right, disp_s, valid = load_middlebury(scale)
    h, w = disp_s.shape
    # Ours: the configured depth backend on the whole frame (scene mode), as disparity (1/z up to scale and shift).
    depth = make_depth_estimator(cfg.depth, cfg.init.fov_deg, cfg.init.distance)(left, np.ones((h, w), np.float32))
    z = depth.depth.numpy().astype(np.float64)
    pred_disp = 1.0 / np.maximum(z, 1e-6) if depth.kind == "metric" else (-z if depth.kind == "relative" else z)
    metrics = depth_metrics(pred_disp, disp_s, valid)
    # Right-view synthesis, scored on the right-image pixels that a valid-disparity left pixel lands on (the rest,
    # e.g. the strip the left camera never saw, has no ground truth to warp from).
    focal = 0.8 * w  # any focal works: disparity fixes depth/baseline consistently
    gt_fill = np.where(valid, disp_s, np.median(disp_s[valid]))
    aligned = np.maximum(align_disparity(pred_disp, disp_s, valid), 0.5)
    score_mask = torch.from_numpy(right_view_mask(disp_s, valid))
    rt = torch.from_numpy(right)
    ours = render_right(left, aligned, focal)
    upper = render_right(left, gt_fill, focal)
    from splat4d.depth.stereo import sgbm_disparity, fill_invalid

    sgbm, sgbm_conf = sgbm_disparity(left, right, num_disparities=int(np.ceil(disp_s[valid].max() / 16) * 16 + 16))
    sure = valid & (sgbm_conf > 0.5)
    stereo = render_right(left, np.maximum(fill_invalid(sgbm, sgbm_conf), 0.5), focal)
    metrics.update({
        "right_psnr_ours": psnr(torch.from_numpy(ours), rt, score_mask),
        "right_psnr_gt_disparity": psnr(torch.from_numpy(upper), rt, score_mask),
        "right_psnr_unshifted_left": psnr(torch.from_numpy(left), rt, score_mask),
        "right_psnr_stereo_sgbm": psnr(torch.from_numpy(stereo), rt, score_mask),
        "stereo_sgbm": {**depth_metrics(np.where(sure, sgbm, 1.0), disp_s, sure),
                        "coverage": float(sure.sum() / valid.sum())},
        "size": [w, h],
    })
    metrics["_images"] = (right, ours, upper, left)
    return metrics


# Reporting ---------------------------------------------------------------------------------------------------------
def contact_sheet(objects: list[dict], middlebury: dict | None, path: Path, per_object: int = 6) -> None:
    from PIL import Image, ImageDraw

    tiles = []
    for obj in objects:
        imgs = obj["_images"]
        pick = np.linspace(0, len(imgs) // 2 - 1, per_object).round().astype(int)  # the lower ring, around
        row = [np.concatenate([t.numpy() if isinstance(t, torch.Tensor) else t for t in imgs[i]], 0) for i in pick]
        tiles.append(np.concatenate(row, 1))
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 8), (0, width - t.shape[1]), (0, 0)), constant_values=1.0) for t in tiles]
    sheet = np.concatenate(tiles, 0)
    if middlebury is not None:
        mb = np.concatenate(middlebury["_images"], 1)
        scale = width / mb.shape[1]
        import cv2

        mb = cv2.resize(mb, (width, max(1, int(mb.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        sheet = np.concatenate([sheet, mb], 0)
    img = Image.fromarray((np.clip(sheet, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    y = 0
    for obj, t in zip(objects, tiles):
        draw.text((4, y + 2), f"{obj['object']}: rows GT / ours / depth-warp", fill=(0, 0, 0))
        y += t.shape[0]
    if middlebury is not None:
        draw.text((4, y + 2), "Middlebury: right GT | ours | GT-disparity warp | left", fill=(0, 0, 0))
    img.save(path)


def print_table(objects: list[dict], middlebury: dict | None) -> None:
    print("\n| object | split | PSNR ours | PSNR depth-warp | PSNR ref (c) | SSIM ours | SSIM warp | IoU ours | "
          "IoU warp |")
    print("|---|---|---|---|---|---|---|---|---|")
    for obj in objects:
        for split in (*SPLITS, "all"):
            o, b = obj["splits"][split]["ours"], obj["splits"][split]["baseline"]
            c = obj["splits"][split]["silhouette_oracle"]
            print(f"| {obj['object']} | {split} | {o['psnr']:.2f} | {b['psnr']:.2f} | {c['psnr']:.2f} | "
                  f"{o['ssim']:.3f} | {b['ssim']:.3f} | {o['iou']:.3f} | {b['iou']:.3f} |")
    if objects:
        mean = np.mean([o["splits"]["all"]["ours"]["psnr"] for o in objects])
        wins = sum(o["splits"]["all"]["ours"]["psnr"] > o["splits"]["all"]["baseline"]["psnr"] for o in objects)
        ref = np.mean([o["splits"]["all"]["silhouette_oracle"]["psnr"] for o in objects])
        print(f"\nmean held-out PSNR (ours): {mean:.2f} dB (goal >= 20); beats the depth-warp baseline on "
              f"{wins}/{len(objects)} objects (goal: all); reference (c), true silhouette in flat mean colour: "
              f"{ref:.2f} dB")
        print("input-view PSNR: " + ", ".join(f"{o['object']} {o['input_psnr']:.1f}" for o in objects))
        print("seconds (fit steps): " + ", ".join(f"{o['object']} {o['seconds']:.1f} ({o['fit_steps']})" for o in objects))
        if any(o["elevation_deg"] is not None for o in objects):
            print("input elevation (truth): " + ", ".join(f"{o['object']} {o['elevation_deg']:.1f} "
                                                         f"({o['true_elevation_deg']:.0f})" for o in objects
                                                         if o["elevation_deg"] is not None))
    if middlebury:
        m = middlebury
        print(f"\nMiddlebury motorcycle ({m['size'][0]}x{m['size'][1]}): depth AbsRel {m['abs_rel']:.3f}, "
              f"delta1 {m['delta1']:.3f}; right-view PSNR ours {m['right_psnr_ours']:.2f} dB, GT-disparity warp "
              f"{m['right_psnr_gt_disparity']:.2f} dB (goal: within 2 dB), unshifted left "
              f"{m['right_psnr_unshifted_left']:.2f} dB")
        st = m["stereo_sgbm"]
        print(f"  with the right image too (stereo SGBM, issue 7's backend): AbsRel {st['abs_rel']:.3f}, delta1 "
              f"{st['delta1']:.3f} on {100 * st['coverage']:.0f}% of valid pixels; right view "
              f"{m['right_psnr_stereo_sgbm']:.2f} dB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--spp", type=int, default=64)
    ap.add_argument("--objects", nargs="+", default=list(OBJECTS), choices=ALL_OBJECTS)
    ap.add_argument("--gt", type=Path, default=Path("bench_results/gt_objects"))
    ap.add_argument("--out", type=Path, default=Path("bench_results/quality"))
    ap.add_argument("--no-middlebury", action="store_true")
    ap.add_argument("--seed", type=int, default=0,
                    help="the runs' random seed (the spread over seeds is the benchmark's noise floor)")
    ap.add_argument("--multiview", type=int, default=0, metavar="FRAMES",
                    help="also run --multiview on a FRAMES-frame, 90-degree arc video of each object (0 = off)")
    ap.add_argument("--depth-oracle", choices=("truth", "front"), default=None,
                    help="replace the depth stage by the true surfaces of the input view ('truth'), or by the true "
                         "front with the configured backend's thickness behind it ('front'): what init and fit make "
                         "of a perfect shape, and what the backend's thickness is worth")
    ap.add_argument("--set", nargs="*", default=[], metavar="SECTION.FIELD=VALUE",
                    help="override settings, e.g. --set depth.thickness=0.8 fit.iterations=300 (YAML values)")
    ap.add_argument("--cut-bottom", type=float, default=0.0, metavar="FRACTION",
                    help="give each object's input view as a photo whose bottom edge cuts off this fraction of the "
                         "silhouette's height (white below, marked outside the photo); the held-out views still "
                         "show the whole object")
    args = ap.parse_args()

    cfg = load_preset(args.preset, RunConfig())
    cfg = replace(cfg, load=replace(cfg.load, resolution=args.res), seed=args.seed)
    for item in args.set:
        dotted, value = item.split("=", 1)
        section, name = dotted.split(".", 1)
        cfg = apply_overrides(cfg, {section: {name: yaml.safe_load(value)}}, where="--set")
    args.out.mkdir(parents=True, exist_ok=True)
    objects = []
    for name in args.objects:
        folder = args.gt / name
        if not (folder / "cameras.json").is_file() or json.loads((folder / "cameras.json").read_text())["width"] != args.res:
            make_object(name, args.gt, args.res, args.spp)
        objects.append(evaluate_object(folder, cfg, args.depth_oracle, args.cut_bottom))
        print(f"{name}: all-view PSNR {objects[-1]['splits']['all']['ours']['psnr']:.2f} dB", file=sys.stderr)
    middlebury = None if args.no_middlebury else evaluate_middlebury(cfg)
    print_table(objects, middlebury)
    multiview = [evaluate_multiview(args.gt / name, cfg, args.multiview, args.spp) for name in args.objects] \
        if args.multiview else []
    if multiview:
        print(f"\nmulti-view mode, a {args.multiview}-frame video over a 90-degree arc from the input camera "
              "(held-out PSNR, the same 24 views; single image in brackets):")
        print("| object | front | sides | back | all | seconds |\n|---|---|---|---|---|---|")
        for mv, single in zip(multiview, objects):
            if "error" in mv:
                print(f"| {mv['object']} | failed: {mv['error'][:90]} |||||")
                continue
            cells = " | ".join(f"{mv['splits'][sp]['psnr']:.2f} ({single['splits'][sp]['ours']['psnr']:.2f})"
                               for sp in (*SPLITS, "all"))
            print(f"| {mv['object']} | {cells} | {mv['seconds']:.1f} |")
    contact_sheet(objects, middlebury, args.out / "contact_sheet.png")
    strip = lambda d: {k: v for k, v in d.items() if not k.startswith("_")}  # noqa: E731
    report = {"preset": args.preset, "resolution": args.res, "seed": args.seed, "overrides": args.set,
              "depth_oracle": args.depth_oracle, "cut_bottom": args.cut_bottom,
              "objects": [strip(o) for o in objects],
              "middlebury": strip(middlebury) if middlebury else None, "multiview": multiview}
    (args.out / "quality.json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.out / 'quality.json'} and {args.out / 'contact_sheet.png'}")


if __name__ == "__main__":
    main()

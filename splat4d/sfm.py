"""Camera poses of a video that moves around a still object: a small incremental structure-from-motion.

SIFT features on the object (OpenCV; with sub-pixel corners too when SIFT alone registers too few frames),
ratio-test matches between frames, the first pair with enough parallax from the essential matrix (five-point RANSAC,
cheirality check), every further frame by PnP (RANSAC) against the points seen so far, new points triangulated as
frames register, and a final bundle adjustment of all poses and points (Levenberg-Marquardt, points eliminated by
the Schur complement, Huber weights). Intrinsics are known (splat4d's assumed field of view). Poses come out in
camera 0's frame with an arbitrary scale; :func:`to_splat4d_world` puts them in splat4d's world: camera 0 at (0, 0,
-distance) looking along +z, the scale tied to frame 0's depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from splat4d.config import SfmConfig
from splat4d.io.video import to_uint8
from splat4d.types import Cameras, Views, pinhole_project, rigid_transform


@dataclass
class SfmResult:
    w2c: np.ndarray
    """(T, 4, 4) world-to-camera in camera 0's frame (frame 0 is the identity); NaN for unregistered frames."""
    points: np.ndarray
    """(P, 3) triangulated points (camera 0's frame)."""
    registered: np.ndarray
    """(T,) bool."""
    reprojection_px: float
    """Median reprojection error after bundle adjustment."""
    observations: int
    """Point observations used by the bundle adjustment."""


class SfmError(RuntimeError):
    """Poses could not be estimated (too little texture, parallax or overlap between frames)."""


CORNER_SIZE = 12.0  # SIFT descriptor size (pixels of the 2x image) at a corner keypoint


def _features(images: np.ndarray, masks: np.ndarray, n: int, corners: bool = False):
    import cv2

    # Small, clean renders and crops have little contrast detail: a low contrast threshold and 2x upsampling keep
    # enough features on the object.
    sift = cv2.SIFT_create(nfeatures=n, contrastThreshold=0.01)
    kernel = np.ones((5, 5), np.uint8)
    out = []
    for image, mask in zip(images, masks):
        grey = cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2GRAY)
        m = cv2.dilate((mask > 0.5).astype(np.uint8) * 255, kernel)
        big = cv2.resize(grey, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        mask_big = cv2.resize(m, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        kp = list(sift.detect(big, mask_big))
        if corners:
            # Corners too (Shi-Tomasi, sub-pixel), described by SIFT at a fixed size: printed patterns (checks,
            # stripes) have many sharp corners but few of the blobs SIFT detects.
            # Inside the object only: the outline's "corners" are no fixed points of its surface.
            inner = cv2.erode(cv2.resize((mask > 0.5).astype(np.uint8) * 255, None, fx=2, fy=2,
                                         interpolation=cv2.INTER_NEAREST), np.ones((9, 9), np.uint8))
            found = cv2.goodFeaturesToTrack(big, maxCorners=n, qualityLevel=0.01, minDistance=6, mask=inner)
            if found is not None:
                found = cv2.cornerSubPix(big, found.astype(np.float32), (5, 5), (-1, -1),
                                         (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.01))
                kp += [cv2.KeyPoint(float(x), float(y), CORNER_SIZE) for x, y in found.reshape(-1, 2)]
        kp, desc = sift.compute(big, kp) if kp else ((), None)
        # OpenCV puts pixel centres at integers, splat4d's K at +0.5: (x_big + 0.5) / 2 in the original image.
        pts = (np.array([k.pt for k in kp], np.float64).reshape(-1, 2) + 0.5) / 2
        out.append((pts, desc if desc is not None else np.zeros((0, 128), np.float32)))
    return out


def _match(d1: np.ndarray, d2: np.ndarray, ratio: float) -> np.ndarray:
    """(M, 2) index pairs passing the ratio test both ways."""
    import cv2

    if len(d1) < 2 or len(d2) < 2:
        return np.zeros((0, 2), int)
    bf = cv2.BFMatcher(cv2.NORM_L2)

    def one_way(a, b):
        best = {}
        for pair in bf.knnMatch(a, b, k=2):
            if len(pair) == 2 and pair[0].distance < ratio * pair[1].distance:
                best[pair[0].queryIdx] = pair[0].trainIdx
        return best

    fwd, bwd = one_way(d1, d2), one_way(d2, d1)
    return np.array([(i, j) for i, j in fwd.items() if bwd.get(j) == i], int).reshape(-1, 2)


# Projection: splat4d's pinhole (``splat4d.types``, the same maths as ``Cameras.project``), applied to the
# world-to-camera poses this module estimates (float64 numpy arrays, NaN for unregistered frames) directly, rather
# than to a ``Cameras`` holding their inverses.


def _f64(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(array, dtype=torch.float64)


def _to_pixels(K: np.ndarray, pc: np.ndarray) -> np.ndarray:
    """(N, 2) pixel coordinates (centres at +0.5) of camera-frame points ``pc`` (N, 3) under intrinsics K."""
    return pinhole_project(_f64(pc), _f64(K)[None])[0][0].numpy()


def _project(K: np.ndarray, w2c: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N, 2) and camera z (N,) of the world points ``X`` (N, 3) seen from the pose ``w2c``."""
    pc = rigid_transform(_f64(w2c)[None], _f64(X))[0].numpy()
    return _to_pixels(K, pc), pc[:, 2]


def _sample(K: np.ndarray, w2c: np.ndarray, X: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The values of ``image`` (H, W) at the pixels the points ``X`` (N, 3) project to from camera ``w2c``, and which
    points land in front of the camera and inside the image (their value is 0 otherwise)."""
    uv, z = _project(K, w2c, X)
    h, w = image.shape[:2]
    with np.errstate(invalid="ignore"):  # points on the camera plane project to infinity; they are not ``ok``
        u, v = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    ok = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)  # as ``Cameras.in_image``
    values = np.zeros(len(X), image.dtype)
    values[ok] = image[v[ok], u[ok]]
    return values, ok


def _triangulate(K, w2c_a, w2c_b, pa, pb):
    import cv2

    Xh = cv2.triangulatePoints(K @ w2c_a[:3], K @ w2c_b[:3], pa.T, pb.T)
    return (Xh[:3] / Xh[3]).T


def _pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, np.ravel(t)
    return w2c


def estimate_poses(images: np.ndarray, masks: np.ndarray, K: np.ndarray, cfg: SfmConfig | None = None,
                   progress: bool = False) -> SfmResult:
    """Poses of T frames (T, H, W, 3) in [0, 1] with object masks (T, H, W) and shared intrinsics K (3, 3).

    SIFT keypoints first; when they give no poses or poses for fewer than ``cfg.min_registered`` of the frames
    (printed patterns: checks and stripes have few SIFT blobs and many look-alike ones), once more with corner
    keypoints added, keeping the result that registers more frames."""
    cfg = cfg or SfmConfig()
    try:
        plain = _estimate_poses(images, masks, K, cfg, progress, corners=False)
    except SfmError as error:
        plain = error
    if isinstance(plain, SfmResult) and plain.registered.mean() >= cfg.min_registered:
        return plain
    try:
        with_corners = _estimate_poses(images, masks, K, cfg, progress, corners=True)
    except SfmError as error:
        if isinstance(plain, SfmResult):
            return plain
        raise SfmError(f"{plain} (with corner features too: {error})") from None
    if isinstance(plain, SfmResult) and plain.registered.sum() >= with_corners.registered.sum():
        return plain
    return with_corners


def _estimate_poses(images: np.ndarray, masks: np.ndarray, K: np.ndarray, cfg: SfmConfig, progress: bool,
                    corners: bool) -> SfmResult:
    import cv2

    T = len(images)
    feats = _features(images, masks, cfg.features, corners)
    if min(len(f[0]) for f in feats[:2]) < 20:
        raise SfmError("fewer than 20 features on the object in the first frames: too little texture to track")
    track = [np.full(len(f[0]), -1, int) for f in feats]  # point id of each keypoint
    points: list[np.ndarray] = []
    w2c = np.full((T, 4, 4), np.nan)
    w2c[0] = np.eye(4)

    # First pair: frame 0 and the first frame with enough parallax.
    best = None
    for k in range(1, T):
        m = _match(feats[0][1], feats[k][1], cfg.ratio)
        if len(m) < 20:
            continue
        p0, pk = feats[0][0][m[:, 0]], feats[k][0][m[:, 1]]
        E, inl = cv2.findEssentialMat(p0, pk, K, cv2.RANSAC, 0.999, cfg.pnp_error_px)
        if E is None or E.shape != (3, 3):
            continue
        _, R, t, inl = cv2.recoverPose(E, p0, pk, K, mask=inl)
        ok = inl.ravel() > 0
        if ok.sum() < 20:
            continue
        pose = _pose(R, t)
        X = _triangulate(K, w2c[0], pose, p0[ok], pk[ok])
        rays0 = X / np.linalg.norm(X, axis=1, keepdims=True)
        ck = -R.T @ t.ravel()
        raysk = (X - ck) / np.linalg.norm(X - ck, axis=1, keepdims=True)
        parallax = float(np.degrees(np.median(np.arccos(np.clip((rays0 * raysk).sum(1), -1, 1)))))
        if best is None or parallax > best[0]:
            best = (parallax, k, pose, m[ok], X)
        if parallax >= cfg.min_parallax_deg:
            break
    if best is None:
        raise SfmError("no frame shares enough matched features with the first one")
    _, k0, pose, m, X = best
    w2c[k0] = pose
    for (i, j), x in zip(m, X):
        track[0][i] = track[k0][j] = len(points)
        points.append(x)

    result = _register_and_adjust(K, feats, track, points, w2c, [k for k in range(1, T) if k != k0], cfg, progress)
    return _silhouette_check(result, masks, K, cfg.silhouette_agreement)


def _silhouette_check(result: SfmResult, masks: np.ndarray, K: np.ndarray, agreement: float) -> SfmResult:
    """Every point of a still object projects inside the object's silhouette in every frame, not only where it was
    matched. The points inside frame 0's silhouette (the others are stray triangulations) are projected into every
    registered frame; one where fewer than ``agreement`` of them land inside its mask (dilated by 1 px) has a wrong
    pose and is unregistered. A coarse check: on the benchmark's textured test object correct poses score 0.96-1.0
    and a 1.6-degree error at 80 degrees 0.5; poses built from a repetitive dot pattern's wrong matches still score
    0.85-0.97."""
    import cv2

    kernel = np.ones((3, 3), np.uint8)

    def inside(k: int, points: np.ndarray) -> np.ndarray:
        m = cv2.dilate((masks[k] > 0.5).astype(np.uint8), kernel)
        values, ok = _sample(K, result.w2c[k], points, m)
        return ok & (values > 0)

    core = result.points[inside(0, result.points)]
    registered = result.registered.copy()
    for k in np.nonzero(registered)[0][1:]:
        if len(core) == 0 or inside(k, core).mean() < agreement:
            registered[k] = False
    if not registered.all():
        w2c = result.w2c.copy()
        w2c[~registered] = np.nan
        return SfmResult(w2c, result.points, registered, result.reprojection_px, result.observations)
    return result


def _register_and_adjust(K, feats, track, points, w2c, order, cfg: SfmConfig, progress: bool) -> SfmResult:
    """Register the frames of ``order`` one by one (PnP against the known points, then new points triangulated
    with their registered neighbours) and bundle-adjust everything."""
    import cv2
    from tqdm.auto import tqdm

    T = len(feats)
    for k in tqdm(order, desc="camera poses", disable=not progress, leave=False):
        done = [j for j in range(T) if np.isfinite(w2c[j, 0, 0])]
        near = sorted(done, key=lambda j: abs(j - k))[:cfg.match_window]
        matches, seen = {}, {}  # keypoint of frame k -> point id (first registered neighbour wins)
        for j in near:
            matches[j] = _match(feats[j][1], feats[k][1], cfg.ratio)
            for a, b in matches[j]:
                if track[j][a] >= 0 and b not in seen:
                    seen[b] = track[j][a]
        pose = None
        if len(seen) >= cfg.min_inliers:
            kps = np.array(list(seen))
            obj = np.array([points[seen[b]] for b in kps])
            img = feats[k][0][kps]
            ok, rvec, tvec, inliers = cv2.solvePnPRansac(obj, img, K, None, reprojectionError=cfg.pnp_error_px,
                                                         iterationsCount=300, flags=cv2.SOLVEPNP_EPNP)
            if ok and inliers is not None and len(inliers) >= cfg.min_inliers:
                inl = inliers.ravel()
                rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], K, None, rvec, tvec)
                pose = _pose(cv2.Rodrigues(rvec)[0], tvec)
                track[k][kps[inl]] = [seen[b] for b in kps[inl]]  # only PnP inliers extend their tracks
        if pose is None:  # too few known points seen from here: left unregistered
            continue
        w2c[k] = pose
        # New points from matches with registered neighbours that no point covers yet.
        for j in near:
            mm = matches[j]
            new = [(a, b) for a, b in mm if track[j][a] < 0 and track[k][b] < 0]
            if not new:
                continue
            new = np.array(new)
            X = _triangulate(K, w2c[j], w2c[k], feats[j][0][new[:, 0]], feats[k][0][new[:, 1]])
            for (a, b), x in zip(new, X):
                good = True
                for frame, idx in ((j, a), (k, b)):
                    uv, z = _project(K, w2c[frame], x[None])
                    good &= bool(z[0] > 0 and np.linalg.norm(uv[0] - feats[frame][0][idx]) < 2 * cfg.pnp_error_px)
                if good:
                    track[j][a] = track[k][b] = len(points)
                    points.append(x)

    registered = np.isfinite(w2c[:, 0, 0])
    if registered.sum() < 2:
        raise SfmError("only one frame could be registered")
    pts = np.array(points)
    obs = [(f, int(pid), feats[f][0][i]) for f in range(T) if registered[f]
           for i, pid in enumerate(track[f]) if pid >= 0]
    w2c, pts, err = _bundle_adjust(K, w2c, registered, pts, obs, cfg.bundle_iterations)
    return SfmResult(w2c, pts, registered, err, len(obs))


def _skew(v: np.ndarray) -> np.ndarray:
    """(N, 3) -> (N, 3, 3) cross-product matrices."""
    z = np.zeros(len(v))
    return np.stack([np.stack([z, -v[:, 2], v[:, 1]], -1), np.stack([v[:, 2], z, -v[:, 0]], -1),
                     np.stack([-v[:, 1], v[:, 0], z], -1)], -2)


def _bundle_adjust(K, w2c, registered, pts, obs, iterations: int):
    """Levenberg-Marquardt on the reprojection error of all points in all registered frames (frame 0 fixed), the
    points eliminated by the Schur complement, Huber weights (1 px) by iterative reweighting; ``iterations`` LM
    steps at most. An object filmed with a normal lens from a few of its sizes away is a near-degenerate case (the
    bas-relief ambiguity: a turn around the object and a turn of the camera differ by a tenth of a pixel in two
    views), so the essential matrix of the first pair can be degrees off; only the joint adjustment of all frames
    pulls the poses back.

    ``obs`` are (frame, point id, observed pixel (2,)) triples. Returns the adjusted (T, 4, 4) world-to-camera poses
    (NaN where not registered), the (N, 3) points and the median reprojection error (pixels, larger axis)."""
    problem = _BundleProblem.build(K, [f for f in range(len(w2c)) if registered[f] and f != 0], obs)
    estimate = _BundleEstimate({f: w2c[f][:3, :3].copy() for f in [0] + problem.frames},
                               {f: w2c[f][:3, 3].copy() for f in [0] + problem.frames},
                               np.array(pts, np.float64).reshape(-1, 3))
    damping = 1e-3
    cost = _robust_cost(problem, estimate)
    for _ in range(max(0, iterations)):
        normal = _normal_equations(problem, estimate)
        estimate, cost, damping = _damped_step(problem, normal, estimate, cost, damping)
        if damping > 1e8:  # no step lowers the cost any more
            break

    out = np.full_like(w2c, np.nan)
    for f in [0] + problem.frames:
        out[f] = _pose(estimate.R[f], estimate.t[f])
    _, uv = _reprojections(problem, estimate)
    err = float(np.median(np.abs(uv - problem.uv).max(1))) if len(problem.uv) else float("nan")
    return out, estimate.points, err


@dataclass
class _BundleProblem:
    """What stays fixed during a bundle adjustment: the observations and who sees what. M observations, C free
    poses (the registered frames but frame 0)."""

    K: np.ndarray
    """(3, 3) intrinsics shared by all frames."""
    frames: list[int]
    """The frames with a free pose, in the order of their slots in the camera blocks."""
    frame: np.ndarray
    """(M,) frame of each observation."""
    point: np.ndarray
    """(M,) point id of each observation."""
    uv: np.ndarray
    """(M, 2) observed pixel coordinates."""
    posed: np.ndarray
    """Indices of the observations from a free pose (not frame 0)."""
    slot: np.ndarray
    """(M,) slot of each observation's pose among ``frames`` (-1 for frame 0)."""
    pair_a: np.ndarray
    pair_c: np.ndarray
    """Every ordered pair (a, c) of posed observations of one point (a == c included): the Schur complement's
    camera-camera terms."""

    @staticmethod
    def build(K: np.ndarray, frames: list[int], obs) -> _BundleProblem:
        slot = {f: i for i, f in enumerate(frames)}
        frame = np.array([o[0] for o in obs], int)
        point = np.array([o[1] for o in obs], int)
        uv = np.array([o[2] for o in obs], np.float64).reshape(-1, 2)
        posed = np.nonzero(frame != 0)[0]
        groups: dict[int, list[int]] = {}  # point id -> its posed observations
        for m in posed:
            groups.setdefault(int(point[m]), []).append(int(m))
        pair_a = np.array([a for ms in groups.values() for a in ms for _ in ms], int)
        pair_c = np.array([c for ms in groups.values() for _ in ms for c in ms], int)
        return _BundleProblem(K, frames, frame, point, uv, posed, np.array([slot.get(f, -1) for f in frame], int),
                              pair_a, pair_c)


@dataclass
class _BundleEstimate:
    """The unknowns of a bundle adjustment: world-to-camera rotation and translation per frame, and the points."""

    R: dict[int, np.ndarray]
    t: dict[int, np.ndarray]
    points: np.ndarray
    """(N, 3)"""


@dataclass
class _NormalEquations:
    """The Gauss-Newton system ``J^T w J d = -J^T w r`` of the Huber-weighted reprojection error, by blocks."""

    U: np.ndarray
    """(C, 6, 6) pose-pose blocks."""
    V: np.ndarray
    """(N, 3, 3) point-point blocks."""
    W: np.ndarray
    """(M, 6, 3) pose-point block of each observation (zero for frame 0's)."""
    g_pose: np.ndarray
    """(C, 6) gradient ``J^T w r`` of the poses."""
    g_point: np.ndarray
    """(N, 3) gradient of the points."""


def _reprojections(problem: _BundleProblem, estimate: _BundleEstimate) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3) camera-frame points and (M, 2) pixels of all observations."""
    # Written out per observation (each row has its own pose, and the Jacobian needs the camera-frame points); the
    # pixels are splat4d's pinhole.
    Rs = np.stack([estimate.R[f] for f in problem.frame])
    pc = np.einsum("nij,nj->ni", Rs, estimate.points[problem.point]) + np.stack([estimate.t[f] for f in problem.frame])
    return pc, _to_pixels(problem.K, pc)


def _robust_cost(problem: _BundleProblem, estimate: _BundleEstimate) -> float:
    """Huber cost (1 px) of the reprojection errors, plus a large penalty per point behind its camera."""
    pc, uv = _reprojections(problem, estimate)
    r = np.linalg.norm(uv - problem.uv, axis=1)
    behind = pc[:, 2] <= 1e-6
    huber = np.where(r <= 1.0, 0.5 * r * r, r - 0.5)
    return float(huber.sum() + 1e6 * behind.sum())


def _jacobians(problem: _BundleProblem, estimate: _BundleEstimate, pc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, 2, 6) derivatives of each observation's pixel by its pose (left update: rotation vector, then
    translation) and (M, 2, 3) by its point, at the camera-frame points ``pc`` (M, 3)."""
    f_xy = np.array([problem.K[0, 0], problem.K[1, 1]])
    z = pc[:, 2:3]
    # The pinhole's derivative by the camera-frame point, written out: d(f x / z + c) / d(x, y, z).
    d_proj = np.zeros((len(pc), 2, 3))
    d_proj[:, 0, 0] = f_xy[0] / z[:, 0]
    d_proj[:, 1, 1] = f_xy[1] / z[:, 0]
    d_proj[:, :, 2] = -(pc[:, :2] / z) * f_xy / z
    J_pose = np.concatenate([d_proj @ -_skew(pc), d_proj], axis=2)
    J_point = d_proj @ np.stack([estimate.R[f] for f in problem.frame])
    return J_pose, J_point


def _normal_equations(problem: _BundleProblem, estimate: _BundleEstimate) -> _NormalEquations:
    """The normal equations at ``estimate``, with iteratively reweighted least squares' Huber weights (1 px)."""
    pc, uv = _reprojections(problem, estimate)
    res = uv - problem.uv  # (M, 2)
    norm = np.linalg.norm(res, axis=1)
    w = np.where(norm <= 1.0, 1.0, 1.0 / np.maximum(norm, 1e-12))
    J_pose, J_point = _jacobians(problem, estimate, pc)
    JpT = np.swapaxes(J_pose, 1, 2) * w[:, None, None]
    JxT = np.swapaxes(J_point, 1, 2) * w[:, None, None]
    posed, slot, point = problem.posed, problem.slot, problem.point
    C, N = len(problem.frames), len(estimate.points)
    U, V, W = np.zeros((C, 6, 6)), np.zeros((N, 3, 3)), np.zeros((len(pc), 6, 3))
    g_pose, g_point = np.zeros((C, 6)), np.zeros((N, 3))
    np.add.at(U, slot[posed], (JpT @ J_pose)[posed])
    np.add.at(V, point, JxT @ J_point)
    W[posed] = (JpT @ J_point)[posed]
    np.add.at(g_pose, slot[posed], np.einsum("nij,nj->ni", JpT, res)[posed])
    np.add.at(g_point, point, np.einsum("nij,nj->ni", JxT, res))
    return _NormalEquations(U, V, W, g_pose, g_point)


def _damped_step(problem: _BundleProblem, normal: _NormalEquations, estimate: _BundleEstimate, cost: float,
                 damping: float) -> tuple[_BundleEstimate, float, float]:
    """One Levenberg-Marquardt step: the damping grows (x5) until a step lowers the cost, which is accepted (the new
    estimate, its cost, the damping eased /3), or passes 1e8 (the estimate, cost and damping stay as they are)."""
    C = len(problem.frames)
    while True:
        S, b, V_inv = _schur_complement(problem, normal, damping)
        try:
            d_pose = np.linalg.solve(S, b).reshape(C, 6) if C else np.zeros((0, 6))
        except np.linalg.LinAlgError:
            damping *= 10
            continue
        d_point = _back_substitute(problem, normal, V_inv, d_pose)
        trial = _apply_step(problem, estimate, d_pose, d_point)
        trial_cost = _robust_cost(problem, trial)
        if trial_cost < cost:
            return trial, trial_cost, max(damping / 3, 1e-9)
        damping *= 5
        if damping > 1e8:
            return estimate, cost, damping


def _schur_complement(problem: _BundleProblem, normal: _NormalEquations,
                      damping: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The damped system reduced to the poses, ``S d_pose = b`` (S (6C, 6C), b (6C,)), and the inverses of the damped
    point blocks (N, 3, 3) for the back-substitution."""
    U, V, W = normal.U, normal.V, normal.W
    slot, point, posed, a, c = problem.slot, problem.point, problem.posed, problem.pair_a, problem.pair_c
    C = len(problem.frames)
    V_damped = V + damping * (np.eye(3) * np.maximum(np.diagonal(V, axis1=1, axis2=2), 1e-9)[:, None, :] + 1e-9)
    V_inv = np.linalg.inv(V_damped)
    WV = np.einsum("nij,njk->nik", W, V_inv[point])  # (M, 6, 3)
    # S = U + damping - sum over points of W_kp V_p^-1 W_lp^T (cameras k, l sharing point p), block-wise.
    blocks = np.zeros((C * C, 6, 6))
    damp = damping * np.maximum(np.diagonal(U, axis1=1, axis2=2), 1e-9)[:, :, None] * np.eye(6)
    blocks[np.arange(C) * (C + 1)] = U + damp
    np.add.at(blocks, slot[a] * C + slot[c], -(WV[a] @ np.swapaxes(W[c], 1, 2)))
    S = blocks.reshape(C, C, 6, 6).transpose(0, 2, 1, 3).reshape(6 * C, 6 * C)
    b = -normal.g_pose.copy()
    np.add.at(b, slot[posed], np.einsum("nij,nj->ni", WV[posed], normal.g_point[point[posed]]))
    return S, b.reshape(-1), V_inv


def _back_substitute(problem: _BundleProblem, normal: _NormalEquations, V_inv: np.ndarray,
                     d_pose: np.ndarray) -> np.ndarray:
    """(N, 3) point updates given the pose updates (C, 6): ``d_point = V^-1 (-g_point - sum_k W_k^T d_pose_k)``."""
    posed, point = problem.posed, problem.point
    rhs = -normal.g_point.copy()
    np.add.at(rhs, point[posed], -np.einsum("nji,nj->ni", normal.W[posed], d_pose[problem.slot[posed]]))
    return np.einsum("nij,nj->ni", V_inv, rhs)


def _apply_step(problem: _BundleProblem, estimate: _BundleEstimate, d_pose: np.ndarray,
                d_point: np.ndarray) -> _BundleEstimate:
    """The estimate moved by the updates: each free pose turned by ``exp([d_pose[:3]]x)`` on the left and shifted by
    ``d_pose[3:]``, the points shifted by ``d_point``."""
    import cv2

    R, t = dict(estimate.R), dict(estimate.t)
    for slot, f in enumerate(problem.frames):
        d = d_pose[slot]
        dR = cv2.Rodrigues(d[:3])[0]
        R[f] = dR @ estimate.R[f]
        t[f] = dR @ estimate.t[f] + d[3:]
    return _BundleEstimate(R, t, estimate.points + d_point)


def to_splat4d_world(result: SfmResult, distance: float, K: np.ndarray | None = None,
                     depth0: np.ndarray | None = None) -> np.ndarray:
    """(T, 4, 4) camera-to-world in splat4d's world (OpenCV axes, world = camera 0's axes, camera 0 at
    (0, 0, -distance)). The reconstruction's free scale is fixed to agree with ``depth0`` (H, W), the depth splat4d
    initialised frame 0's surface with (0 = unknown; K its intrinsics): the median ratio of that depth to the points'
    depth where they project. Without it the points' median depth is put at ``distance``."""
    P = result.points
    z = P[:, 2]
    s = None
    if depth0 is not None and K is not None:
        d, ok = _sample(K, np.eye(4), P, depth0)  # the points are in camera 0's frame
        ok &= d > 0
        if ok.sum() >= 10:
            s = float(np.median(d[ok] / z[ok]))
    if s is None:
        s = distance / float(np.median(z[z > 0]))
    c2w = np.full_like(result.w2c, np.nan)
    for k in range(len(c2w)):
        if result.registered[k]:
            inv = np.linalg.inv(result.w2c[k])
            inv[:3, 3] = s * inv[:3, 3] + np.array([0.0, 0.0, -distance])
            c2w[k] = inv
    return c2w


def observed_views(images: np.ndarray, masks: np.ndarray, camera: Cameras, cfg: SfmConfig, distance: float,
                   depth0: np.ndarray | None = None, name: str = "the video", progress: bool = False) -> Views:
    """The frames after the first with their estimated camera poses, in splat4d's world (frame 0 is the input
    camera at ``distance``), as supervisory views (weight 1: they are real observations). Frames that could not be
    registered are left out; too few registered is an ``InputError``."""
    from splat4d.load import InputError
    from splat4d.runner import log

    K = camera.K[0].double().numpy()
    try:
        sfm = estimate_poses(images, masks, K, cfg, progress=progress)
    except SfmError as err:
        raise InputError(f"camera poses of {name}: {err}. --multiview needs a textured object filmed from "
                         "overlapping viewpoints; for a still camera use --motion") from None
    registered = int(sfm.registered.sum())
    if registered < max(2, cfg.min_registered * len(images)):
        raise InputError(f"camera poses of {name}: only {registered} of {len(images)} frames registered "
                         f"(--sfm.min-registered {cfg.min_registered}); film more slowly or a more textured "
                         "object, or use --motion for a still camera")
    c2w = torch.from_numpy(to_splat4d_world(sfm, distance, K, depth0)).float()
    keep = [k for k in range(1, len(images)) if sfm.registered[k]]
    log(f"          poses: {registered}/{len(images)} frames, {len(sfm.points)} points, median reprojection "
        f"{sfm.reprojection_px:.2f} px")
    cams = Cameras(c2w[keep], camera.K[:1].expand(len(keep), 3, 3).clone(), camera.width, camera.height)
    return Views(torch.from_numpy(images[keep]).float(), torch.from_numpy(masks[keep]).float(), cams)


def far_from(targets: Cameras, cameras: Cameras, min_angle_deg: float) -> Cameras:
    """The target cameras whose direction from the object centre (origin) is at least ``min_angle_deg`` from every
    camera of ``cameras``."""
    a = torch.nn.functional.normalize(targets.centers().double(), dim=-1)
    b = torch.nn.functional.normalize(cameras.centers().double(), dim=-1)
    angle = torch.rad2deg(torch.acos((a @ b.T).clamp(-1, 1))).min(dim=1).values
    keep = torch.nonzero(angle >= min_angle_deg).flatten()
    return targets[keep] if len(keep) else Cameras(targets.c2w[:0], targets.K[:0], targets.width, targets.height)

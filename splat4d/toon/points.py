"""Correspondences between the views: the Toon3D labeler's ``points.json``, or feature matching.

``points.json`` (the layout of Toon3D's web labeler, written by ``splat4d label``)::

    {"points":      [[{"x": 12.5, "y": 40.0}, ...], ...],   # per image, point j = the same scene point everywhere
     "validPoints": [[true, false, ...], ...],              # per image per point: marked in this image
     "validImages": [true, ...],                            # per image: usable at all
     "polygons":    [[[{"x": ..., "y": ...}, ...], ...], ...]}  # per image, regions to leave out

Coordinates are in the image's own pixels, x right and y down, continuous with pixel (0, 0) covering [0, 1) x [0, 1)
(splat4d's convention, ``splat4d.types``). Images are listed in the sorted order of ``images/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MIN_SHARED_POINTS = 3
"""An image needs at least this many points it shares with another usable image (Toon3D's rule)."""


class PointsError(ValueError):
    """``points.json`` is malformed or does not fit the images."""


@dataclass
class ToonPoints:
    """Labelled correspondences over V images and P points."""

    xy: np.ndarray
    """(V, P, 2) pixel coordinates (x, y) in each image's own pixels; meaningless where ``valid`` is False."""
    valid: np.ndarray
    """(V, P) bool: point j is marked in image i."""
    valid_images: np.ndarray
    """(V,) bool: image i is usable."""
    polygons: list[list[np.ndarray]] = field(default_factory=list)
    """Per image, polygons (K, 2) to leave out (masked off)."""

    def __post_init__(self) -> None:
        if not self.polygons:
            self.polygons = [[] for _ in range(len(self.valid_images))]

    @property
    def num_images(self) -> int:
        return self.xy.shape[0]

    @property
    def num_points(self) -> int:
        return self.xy.shape[1]

    def select(self, images: np.ndarray) -> "ToonPoints":
        """The points of the images ``images`` (indices), in that order."""
        images = np.asarray(images, int)
        return ToonPoints(self.xy[images], self.valid[images], self.valid_images[images],
                          [self.polygons[i] for i in images])

    def scaled(self, factors: np.ndarray) -> "ToonPoints":
        """Coordinates multiplied per image by ``factors`` (V, 2) (x and y), as when the images are resized."""
        factors = np.asarray(factors, np.float64)
        return ToonPoints(self.xy * factors[:, None, :], self.valid.copy(), self.valid_images.copy(),
                          [[poly * factors[i] for poly in polys] for i, polys in enumerate(self.polygons)])

    def shared_counts(self) -> np.ndarray:
        """(V,) per image: how many of its points are also marked in another usable image."""
        usable = self.valid & self.valid_images[:, None]
        seen = usable.sum(0)
        return (usable & (seen[None] >= 2)).sum(1)

    def to_json(self) -> dict:
        """The labeler's layout (see the module docstring)."""
        return {
            "points": [[{"x": float(x), "y": float(y)} for x, y in image] for image in self.xy],
            "validPoints": self.valid.astype(bool).tolist(),
            "validImages": self.valid_images.astype(bool).tolist(),
            "polygons": [[[{"x": float(x), "y": float(y)} for x, y in poly] for poly in polys]
                         for polys in self.polygons],
        }


def _xy(item, where: str) -> tuple[float, float]:
    if isinstance(item, dict) and "x" in item and "y" in item:
        x, y = item["x"], item["y"]
    elif isinstance(item, (list, tuple)) and len(item) == 2:
        x, y = item
    else:
        raise PointsError(f"{where}: expected {{\"x\": ..., \"y\": ...}}, got {item!r}")
    try:
        x, y = float(x), float(y)
    except (TypeError, ValueError):
        raise PointsError(f"{where}: coordinates must be numbers, got {item!r}") from None
    if not (np.isfinite(x) and np.isfinite(y)):
        raise PointsError(f"{where}: coordinates must be finite, got {item!r}")
    return x, y


def parse_points(data: object, sizes: list[tuple[int, int]], name: str = "points.json") -> ToonPoints:
    """Check and read the labeler's layout for images of ``sizes`` [(width, height)]; a ``PointsError`` naming the
    first problem otherwise. Marked points outside their image are an error; missing ``validPoints`` /
    ``validImages`` / ``polygons`` default to all marked / all usable / none."""
    n = len(sizes)
    if not isinstance(data, dict) or "points" not in data:
        raise PointsError(f"{name}: expected an object with a 'points' list (one list of {{x, y}} per image)")
    points = data["points"]
    if not isinstance(points, list) or len(points) != n:
        got = len(points) if isinstance(points, list) else type(points).__name__
        raise PointsError(f"{name}: 'points' has {got} entries but images/ holds {n} images")
    if any(not isinstance(p, list) for p in points):
        raise PointsError(f"{name}: every entry of 'points' must be a list of {{x, y}}")
    num = {len(p) for p in points}
    if len(num) != 1:
        raise PointsError(f"{name}: every image needs the same number of points (point j is the same scene point in "
                          f"every image; use validPoints false where it is not visible), got {sorted(num)}")
    P = num.pop()
    xy = np.array([[_xy(q, f"{name}: points[{i}][{j}]") for j, q in enumerate(p)] for i, p in enumerate(points)],
                  np.float64).reshape(n, P, 2)
    valid = _bool_table(data.get("validPoints"), (n, P), f"{name}: validPoints")
    valid_images = _bool_table(data.get("validImages"), (n,), f"{name}: validImages")
    polygons_raw = data.get("polygons") or [[] for _ in range(n)]
    if not isinstance(polygons_raw, list) or len(polygons_raw) != n:
        raise PointsError(f"{name}: 'polygons' needs one list of polygons per image ({n})")
    polygons = []
    for i, polys in enumerate(polygons_raw):
        if not isinstance(polys, list):
            raise PointsError(f"{name}: polygons[{i}] must be a list of polygons")
        polygons.append([np.array([_xy(q, f"{name}: polygons[{i}][{k}]") for q in poly], np.float64).reshape(-1, 2)
                         for k, poly in enumerate(polys) if isinstance(poly, list) and len(poly) >= 3])
    for i, (w, h) in enumerate(sizes):
        out = valid[i] & ~((xy[i, :, 0] >= 0) & (xy[i, :, 0] <= w) & (xy[i, :, 1] >= 0) & (xy[i, :, 1] <= h))
        if out.any():
            j = int(np.nonzero(out)[0][0])
            raise PointsError(f"{name}: point {j} of image {i} at ({xy[i, j, 0]:.1f}, {xy[i, j, 1]:.1f}) lies "
                              f"outside the {w}x{h} image")
    return ToonPoints(xy, valid, valid_images, polygons)


def _bool_table(value, shape: tuple[int, ...], where: str) -> np.ndarray:
    if value is None:
        return np.ones(shape, bool)
    try:
        table = np.array(value, dtype=object)
    except ValueError:
        table = None
    if table is None or table.shape != shape or not all(isinstance(v, (bool, np.bool_)) for v in table.ravel()):
        raise PointsError(f"{where} must be {'x'.join(map(str, shape))} true/false values")
    return table.astype(bool)


def read_points(path: Path, sizes: list[tuple[int, int]]) -> ToonPoints:
    """``parse_points`` of the file ``path``; invalid JSON is a ``PointsError`` too."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise PointsError(f"{path} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    return parse_points(data, sizes, name=str(path))


def write_points(path: Path, points: ToonPoints) -> None:
    from splat4d.io.ply import atomic_write_json

    atomic_write_json(path, points.to_json())


def match_points(images: list[np.ndarray], ratio: float = 0.8, ransac_pixels: float = 3.0, max_features: int = 2000,
                 max_points: int = 300) -> ToonPoints:
    """Correspondences by feature matching when nobody labelled any: SIFT features (``splat4d.sfm``'s detector),
    mutual nearest neighbours under Lowe's ratio test, then RANSAC on the fundamental matrix. Image 0 is the
    reference: point j is a feature of image 0 matched into one or more other images (its track). Pairs between
    other images share the point through image 0."""
    import cv2

    from splat4d.sfm import _features, _match

    masks = [np.ones(im.shape[:2], np.float32) for im in images]
    feats = [_features(im[None], m[None], max_features)[0] for im, m in zip(images, masks)]
    ref_pts, ref_desc = feats[0]
    tracks: dict[int, dict[int, np.ndarray]] = {}
    for i in range(1, len(images)):
        pts, desc = feats[i]
        pairs = _match(ref_desc, desc, ratio)
        if len(pairs) >= 8:
            _, inlier = cv2.findFundamentalMat(ref_pts[pairs[:, 0]], pts[pairs[:, 1]], cv2.FM_RANSAC, ransac_pixels,
                                               0.999)
            pairs = pairs[inlier.ravel() > 0] if inlier is not None else pairs[:0]
        for a, b in pairs:
            tracks.setdefault(int(a), {0: ref_pts[a]})[i] = pts[b]
    # Longest tracks first, then spread out: at most ``max_points``, no two closer than 2 pixels in image 0.
    order = sorted(tracks, key=lambda a: -len(tracks[a]))
    kept: list[int] = []
    for a in order:
        if len(kept) >= max_points:
            break
        if all(np.linalg.norm(ref_pts[a] - ref_pts[b]) >= 2.0 for b in kept):
            kept.append(a)
    V, P = len(images), len(kept)
    xy, valid = np.zeros((V, P, 2)), np.zeros((V, P), bool)
    for j, a in enumerate(kept):
        for i, p in tracks[a].items():
            xy[i, j], valid[i, j] = p, True
    return ToonPoints(xy, valid, np.ones(V, bool))

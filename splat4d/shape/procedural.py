"""Procedural objects and an analytic ray caster: the training data of the shape prior (issue #12).

An object is a union of 1-4 *parts* (boxes sharp or rounded, cylinders, cones, capsules, spheres / ellipsoids, tori
and torus-segment handles, extruded random polygons, thin plates, lathes of random profiles: vases, bottles,
mushrooms with overhangs), resting on / attached to each other, world up = +Y. Each part has a material (solid,
checker, stripes, noise, gradient, decals) shaded Lambertian + a little specular under a random light and ambient.

Every primitive is a closed solid whose boundary the caster intersects exactly: quadrics for ellipsoids, slabs for
boxes, a union of cone frustums (quadric sides + disc caps) for cylinders / cones / lathes, edge planes + point-in-
polygon caps for extrusions, a quartic (batched companion-matrix eigenvalues, one Newton polish) for tori. For a
union of closed solids seen from outside, the ray's first entry is the smallest surface hit over all primitives and
its LAST exit the largest, so ``front`` / ``back`` depth need no interval bookkeeping.

A sample (:func:`render_sample`) imitates ``splat4d.segment.centre_and_pad``: a pinhole camera (vertical FoV 25-60
degrees, elevation -10..45 degrees, any azimuth, the object filling 25-85 % of the frame) looks at the object; the
projected silhouette's bounding box is centred and padded to a square with a 0.12 margin of the side on the longest
axis (found by a coarse pass over the frame, then one over the crop); the crop is rendered at ``resolution`` px,
pixels on a silhouette or part boundary again with 2x2 rays (soft edges like an area-resized photo), over white. Depths are camera-z; ``front``
and ``thickness`` are also given in crop units (lengths / the crop's world width at the object centre, see
``splat4d.shape.network``).

Speed (measured 2026-11-29 on this 2-core CPU, one thread, numpy float64): ~29 samples/s at 128 px with edge
supersampling on an idle core (~35/s without it); 11-15 samples/s while other processes share the CPU. The U-Net's
training step (batch 16) consumes 11-16 samples/s at 128 px, ~2x that at 96 px, so shards are generated ahead
(``tools/train_shape_prior.py --generate-only``), memory-mapped, and data is never the bottleneck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

PADDING = 0.12  # splat4d.segment.centre_and_pad's default margin


# ----------------------------------------------------------------------------------------------------- primitives
@dataclass
class Primitive:
    """One closed solid in its local frame, placed by ``rotation`` (3, 3, local -> world) and ``position`` (3,).

    kind / params: ``ellipsoid`` radii (3,); ``box`` half (3,); ``lathe`` ys (M+1,) increasing, rs (M+1,) >= 0 (the
    solid of revolution about local y of the piecewise-linear profile: cylinders, cones, frustums, vases); ``cup``
    the same (ys from 0) hollowed from the top by ``wall`` down to a floor at height ``floor`` (cups, bowls, pots);
    ``torus`` R, r, phi0, span (radians; ring in the local xz plane, the segment phi0..phi0+span about y, flat end
    caps when span < 2 pi); ``prism`` poly (K, 2) in local (x, z), h (extruded along y from 0 to h)."""

    kind: str
    params: dict
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    part: int = 0

    def local_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        if self.kind == "ellipsoid":
            r = np.asarray(p["radii"], float)
            return -r, r
        if self.kind == "box":
            h = np.asarray(p["half"], float)
            return -h, h
        if self.kind in ("lathe", "cup"):
            rm = float(np.max(p["rs"]))
            return np.array([-rm, p["ys"][0], -rm]), np.array([rm, p["ys"][-1], rm])
        if self.kind == "torus":
            e = p["R"] + p["r"]
            return np.array([-e, -p["r"], -e]), np.array([e, p["r"], e])
        if self.kind == "prism":
            poly = np.asarray(p["poly"], float)
            return (np.array([poly[:, 0].min(), 0.0, poly[:, 1].min()]),
                    np.array([poly[:, 0].max(), p["h"], poly[:, 1].max()]))
        raise ValueError(f"unknown primitive {self.kind!r}")

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        """World centre and radius of a sphere containing the solid (for culling rays)."""
        p = self.params
        if self.kind == "ellipsoid":
            return self.position, float(np.max(p["radii"]))
        if self.kind == "torus":
            return self.position, float(p["R"] + p["r"])
        if self.kind in ("lathe", "cup"):
            y0, y1 = float(p["ys"][0]), float(p["ys"][-1])
            centre = self.rotation @ np.array([0.0, (y0 + y1) / 2, 0.0]) + self.position
            return centre, float(np.hypot(np.max(p["rs"]), (y1 - y0) / 2))
        lo, hi = self.local_bounds()
        return self.rotation @ ((lo + hi) / 2) + self.position, float(np.linalg.norm(hi - lo) / 2)

    def world_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.local_bounds()
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        w = corners @ self.rotation.T + self.position
        return w.min(0), w.max(0)


def _roots2(a, b, c):
    """Real roots (t1 <= t2) of a t^2 + b t + c (nan where none); linear where |a| is tiny."""
    with np.errstate(all="ignore"):
        disc = b * b - 4 * a * c
        sq = np.sqrt(np.where(disc >= 0, disc, np.nan))
        lin = np.abs(a) < 1e-12
        q = -0.5 * (b + np.copysign(sq, b))  # numerically stable form
        r1 = np.where(lin, -c / b, q / np.where(lin, 1.0, a))
        r2 = np.where(lin, -c / b, c / q)
    return np.fmin(r1, r2), np.fmax(r1, r2)


def _ellipsoid(o, d, p):
    s = np.asarray(p["radii"], float)
    o2, d2 = o / s, d / s
    t1, t2 = _roots2((d2 * d2).sum(-1), 2 * (o2 * d2).sum(-1), (o2 * o2).sum(-1) - 1)
    n = (o + t1[:, None] * d) / (s * s)
    return t1, n, t2


def _box(o, d, p):
    h = np.asarray(p["half"], float)
    with np.errstate(all="ignore"):
        dd = np.where(d == 0, 1e-30, d)
        ta, tb = (-h - o) / dd, (h - o) / dd
    tlo, thi = np.minimum(ta, tb), np.maximum(ta, tb)
    axis = tlo.argmax(-1)
    tn, tf = tlo.max(-1), thi.min(-1)
    miss = tn > tf
    n = np.zeros_like(o)
    rows = np.arange(len(o))
    n[rows, axis] = -np.sign(d[rows, axis])
    return np.where(miss, np.nan, tn), n, np.where(miss, np.nan, tf)


def _lathe_sides(o, d, ys: np.ndarray, rs: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The ray parameters where rays ``o + t d`` (N, 3) meet the side of the surface of revolution about y of the
    profile (``ys`` increasing, ``rs``): two (N, M) candidates per frustum segment (nan where none), and each
    segment's slope k and intercept a (r = a + k y), from which :func:`_side_normals` gives the normals."""
    y0, y1, r0, r1 = ys[:-1], ys[1:], rs[:-1], rs[1:]
    k = (r1 - r0) / np.maximum(y1 - y0, 1e-12)
    a = r0 - k * y0
    ox, oy, oz = (o[:, i:i + 1] for i in range(3))
    dx, dy, dz = (d[:, i:i + 1] for i in range(3))
    A = dx * dx + dz * dz - k * k * dy * dy
    B = 2 * (ox * dx + oz * dz - k * dy * (a + k * oy))
    C = ox * ox + oz * oz - (a + k * oy) ** 2
    t1, t2 = _roots2(A, B, C)
    cand = []
    eps = 1e-9
    for t in (t1, t2):
        y = oy + t * dy
        ok = (y >= y0 - eps) & (y <= y1 + eps)
        cand.append(np.where(ok, t, np.nan))
    return cand, k, a


def _side_normals(pt: np.ndarray, k: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Normals (unnormalised, either sign) of the frustum sides of slopes ``k`` / intercepts ``a`` (per point) at
    points ``pt`` (N, 3)."""
    return np.stack([pt[:, 0], -k * (a + k * pt[:, 1]), pt[:, 2]], 1)


def _disc(o, d, y: float, r_out: float, r_in: float = 0.0) -> np.ndarray:
    """(N, 1) ray parameters where rays meet the horizontal disc (annulus from ``r_in``) of radius ``r_out`` at
    height ``y`` (nan where not)."""
    with np.errstate(all="ignore"):
        t = (y - o[:, 1]) / d[:, 1]
        x, z = o[:, 0] + t * d[:, 0], o[:, 2] + t * d[:, 2]
        rr = x * x + z * z
        return np.where((r_out > 0) & (rr <= r_out * r_out) & (rr >= r_in * r_in), t, np.nan)[:, None]


def _lathe(o, d, p):
    ys, rs = np.asarray(p["ys"], float), np.asarray(p["rs"], float)
    cand, k, a = _lathe_sides(o, d, ys, rs)
    # caps at both ends (internal joins are shared by neighbouring frustums and never the first/last hit)
    for yc, rc in ((ys[0], rs[0]), (ys[-1], rs[-1])):
        cand.append(_disc(o, d, yc, rc))
    allc = np.concatenate(cand, 1)  # (N, 2M + 2)
    tn, tf, idx = _first_last(allc)
    m = len(ys) - 1
    seg = np.where(idx < 2 * m, idx % m, 0)
    n = _side_normals(o + np.nan_to_num(tn)[:, None] * d, k[seg], a[seg])
    n[idx == 2 * m] = (0, -1, 0)
    n[idx == 2 * m + 1] = (0, 1, 0)
    return tn, n, tf


def _cup(o, d, p):
    """An open container: the solid of revolution of the outer profile (``ys`` from 0, ``rs``) hollowed from the
    top down to a floor at ``floor`` by the inner profile ``rs - wall`` (``wall`` < min rs). Its boundary is the
    outer side, the bottom disc, the inner side, the floor and the rim annulus; first entry and last exit are the
    nearest and farthest boundary hits."""
    ys, rs = np.asarray(p["ys"], float), np.asarray(p["rs"], float)
    wall, floor = float(p["wall"]), float(p["floor"])
    inner_ys = np.concatenate([[floor], ys[ys > floor]])
    inner_rs = np.interp(inner_ys, ys, rs) - wall
    outer, k_o, a_o = _lathe_sides(o, d, ys, rs)
    inner, k_i, a_i = _lathe_sides(o, d, inner_ys, inner_rs)
    caps = [_disc(o, d, ys[0], rs[0]), _disc(o, d, floor, inner_rs[0]), _disc(o, d, ys[-1], rs[-1], inner_rs[-1])]
    tn, tf, idx = _first_last(np.concatenate(outer + inner + caps, 1))
    m_o, m_i = len(ys) - 1, len(inner_ys) - 1
    k, a = np.concatenate([k_o, k_o, k_i, k_i]), np.concatenate([a_o, a_o, a_i, a_i])
    sides = idx < 2 * (m_o + m_i)
    seg = np.where(sides, idx, 0)
    n = _side_normals(o + np.nan_to_num(tn)[:, None] * d, k[seg], a[seg])
    n[~sides] = (0, 1, 0)
    return tn, n, tf


def _torus(o, d, p):
    R, r, phi0, span = float(p["R"]), float(p["r"]), float(p.get("phi0", 0.0)), float(p.get("span", 2 * np.pi))
    scale = np.linalg.norm(d, axis=1)
    u = d / scale[:, None]
    al = 1.0
    be = 2 * (o * u).sum(-1)
    ga = (o * o).sum(-1) + R * R - r * r
    c4 = np.full_like(be, al * al)
    c3 = 2 * al * be
    c2 = be * be + 2 * al * ga - 4 * R * R * (u[:, 0] ** 2 + u[:, 2] ** 2)
    c1 = 2 * be * ga - 8 * R * R * (o[:, 0] * u[:, 0] + o[:, 2] * u[:, 2])
    c0 = ga * ga - 4 * R * R * (o[:, 0] ** 2 + o[:, 2] ** 2)
    n = len(o)
    comp = np.zeros((n, 4, 4))
    comp[:, 1, 0] = comp[:, 2, 1] = comp[:, 3, 2] = 1.0
    comp[:, 0, :] = -np.stack([c3, c2, c1, c0], 1)  # c4 == 1
    roots = np.linalg.eigvals(comp) if n else np.zeros((0, 4), complex)
    t = roots.real
    real = np.abs(roots.imag) <= 1e-5 * (1 + np.abs(t))
    for _ in range(2):  # Newton polish of the real roots
        f = (((t + c3[:, None]) * t + c2[:, None]) * t + c1[:, None]) * t + c0[:, None]
        df = ((4 * t + 3 * c3[:, None]) * t + 2 * c2[:, None]) * t + c1[:, None]
        with np.errstate(all="ignore"):
            t = np.where(np.abs(df) > 1e-12, t - f / df, t)
    pts = o[:, None] + t[..., None] * u[:, None]
    full = span >= 2 * np.pi - 1e-9
    ok = real
    if not full:
        ang = np.mod(np.arctan2(pts[..., 2], pts[..., 0]) - phi0, 2 * np.pi)
        ok = ok & (ang <= span)
    cand = [np.where(ok, t, np.nan)]
    cap_n = []
    if not full:
        for phi, sgn in ((phi0, -1.0), (phi0 + span, 1.0)):
            tang = np.array([-np.sin(phi), 0.0, np.cos(phi)])
            centre = R * np.array([np.cos(phi), 0.0, np.sin(phi)])
            with np.errstate(all="ignore"):
                tc = ((centre - o) @ tang) / (u @ tang)
            q = o + tc[:, None] * u - centre
            cand.append(np.where((q * q).sum(-1) <= r * r, tc, np.nan)[:, None])
            cap_n.append(sgn * tang)
    allc = np.concatenate(cand, 1)
    tn, tf, idx = _first_last(allc)
    pt = o + np.nan_to_num(tn)[:, None] * u
    rho = np.maximum(np.hypot(pt[:, 0], pt[:, 2]), 1e-12)
    ring = np.stack([R * pt[:, 0] / rho, np.zeros(n), R * pt[:, 2] / rho], 1)
    nrm = pt - ring
    for j, cn in enumerate(cap_n):
        nrm[idx == 4 + j] = cn
    return tn / scale, nrm, tf / scale


def _prism(o, d, p):
    poly = np.asarray(p["poly"], float)
    h = float(p["h"])
    area = 0.5 * np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1])
    if area < 0:
        poly = poly[::-1]
    v0, e = poly, np.roll(poly, -1, 0) - poly
    ox, oz, dx, dz = o[:, :1], o[:, 2:], d[:, :1], d[:, 2:]
    with np.errstate(all="ignore"):
        den = dx * e[:, 1] - dz * e[:, 0]
        wx, wz = v0[:, 0] - ox, v0[:, 1] - oz
        t = (wx * e[:, 1] - wz * e[:, 0]) / den
        s = (wx * dz - wz * dx) / den
    y = o[:, 1:2] + t * d[:, 1:2]
    side = np.where((s >= 0) & (s <= 1) & (y >= 0) & (y <= h) & (np.abs(den) > 1e-15), t, np.nan)
    caps = []
    for yc in (0.0, h):
        with np.errstate(all="ignore"):
            tc = (yc - o[:, 1]) / d[:, 1]
        px, pz = o[:, 0] + tc * d[:, 0], o[:, 2] + tc * d[:, 2]
        caps.append(np.where(_inside_polygon(px, pz, poly), tc, np.nan)[:, None])
    allc = np.concatenate([side] + caps, 1)
    tn, tf, idx = _first_last(allc)
    k = len(poly)
    en = np.stack([e[:, 1], np.zeros(k), -e[:, 0]], 1)
    n = en[np.minimum(idx, k - 1)]
    n[idx == k] = (0, -1, 0)
    n[idx == k + 1] = (0, 1, 0)
    return tn, n, tf


def _inside_polygon(px, pz, poly):
    x0, z0 = poly[:, 0], poly[:, 1]
    x1, z1 = np.roll(x0, -1), np.roll(z0, -1)
    pzc = pz[:, None]
    with np.errstate(all="ignore"):
        cross = (z0 > pzc) != (z1 > pzc)
        xint = (x1 - x0) * (pzc - z0) / (z1 - z0) + x0
    return (np.sum(cross & (px[:, None] < xint), 1) % 2) == 1


def _first_last(cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of candidate hits (N, K) (nan = invalid): smallest, largest (nan when none) and the smallest's index."""
    bad = np.isnan(cand)
    lo = np.where(bad, np.inf, cand)
    idx = lo.argmin(1)
    tn = lo[np.arange(len(cand)), idx]
    tf = np.where(bad, -np.inf, cand).max(1)
    none = ~np.isfinite(tn)
    return np.where(none, np.nan, tn), np.where(none, np.nan, tf), idx


_CASTERS = {"ellipsoid": _ellipsoid, "box": _box, "lathe": _lathe, "cup": _cup, "torus": _torus, "prism": _prism}


@dataclass
class Hits:
    """Per ray: ``front`` / ``back`` ray parameter of the first entry / last exit (inf / -inf on a miss; camera-z
    when the directions have unit camera-z), ``normal`` (N, 3) unit world normal at the front hit facing the ray,
    ``part`` (N,) the part hit first (-1 on a miss)."""

    front: np.ndarray
    back: np.ndarray
    normal: np.ndarray
    part: np.ndarray

    @property
    def hit(self) -> np.ndarray:
        return np.isfinite(self.front)


@dataclass
class Warp:
    """A linear deformation of the whole object about ``centre``: world point P = centre + ``matrix`` (p - centre)
    for a point p of the undeformed object. :func:`squash_along` makes the one the training data use."""

    centre: np.ndarray
    matrix: np.ndarray

    @cached_property
    def inverse(self) -> np.ndarray:
        return np.linalg.inv(self.matrix)

    def to_object(self, points: np.ndarray) -> np.ndarray:
        """Undeformed-object coordinates of world ``points`` (N, 3)."""
        return self.centre + (points - self.centre) @ self.inverse.T

    def up(self) -> np.ndarray:
        """The unit direction the undeformed object's vertical axis (+Y) takes in the world."""
        u = self.matrix[:, 1]
        return u / np.linalg.norm(u)


def squash_along(axis: np.ndarray, factor: float, centre: np.ndarray) -> Warp:
    """Scale by ``factor`` along the unit ``axis`` (the view direction in the data): seen along that axis the
    silhouette barely changes (exactly, for an orthographic camera) while the depth, the thickness, the normals
    and so the shading and the texture's foreshortening all do."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    return Warp(np.asarray(centre, float), np.eye(3) + (factor - 1.0) * np.outer(a, a))


def cast(prims: list[Primitive], origins: np.ndarray, dirs: np.ndarray, warp: Warp | None = None) -> Hits:
    """Intersect rays ``origins`` + t ``dirs`` (N, 3), origins outside every solid, with the union of ``prims``
    (deformed by ``warp``: the ray is mapped into the undeformed object, where the same t is the same point, and
    the normals are mapped back by the inverse transpose)."""
    if warp is not None:
        inv = warp.inverse
        hits = cast(prims, warp.to_object(np.atleast_2d(np.asarray(origins, float))), np.asarray(dirs, float) @ inv.T)
        normal = hits.normal @ inv  # (inv^T n) as rows
        norm = np.linalg.norm(normal, axis=1, keepdims=True)
        hits.normal = np.where(norm > 0, normal / np.maximum(norm, 1e-30), 0)
        return hits
    o = np.broadcast_to(np.asarray(origins, float), dirs.shape)
    d = np.asarray(dirs, float)
    n = len(d)
    front, back = np.full(n, np.inf), np.full(n, -np.inf)
    normal, part = np.zeros((n, 3)), np.full(n, -1)
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    for prim in prims:
        centre, radius = prim.bounding_sphere()
        radius = radius * 1.0001 + 1e-9
        oc = o - centre
        b = (oc * dn).sum(-1)
        sel = np.nonzero(b * b - ((oc * oc).sum(-1) - radius * radius) >= 0)[0]  # bounding-sphere cull
        if not len(sel):
            continue
        ol = (o[sel] - prim.position) @ prim.rotation
        dl = d[sel] @ prim.rotation
        with np.errstate(invalid="ignore"):
            tn, nl, tf = _CASTERS[prim.kind](ol, dl, prim.params)
        good = np.isfinite(tn) & (tf > 0)
        tn = np.where(good, np.maximum(tn, 0), np.inf)
        tf = np.where(good, tf, -np.inf)
        closer = tn < front[sel]
        idx = sel[closer]
        front[idx] = tn[closer]
        normal[idx] = nl[closer] @ prim.rotation.T
        part[idx] = prim.part
        back[sel] = np.maximum(back[sel], tf)
    norm = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = np.where(norm > 0, normal / np.maximum(norm, 1e-30), 0)
    flip = (normal * d).sum(-1) > 0
    normal[flip] *= -1
    return Hits(front, back, normal, part)


# ------------------------------------------------------------------------------------------------------- objects
def rot_x(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@dataclass
class Material:
    """``kind`` in solid / checker / stripes / noise / gradient / decal; colours (3,) in [0, 1]; texture params."""

    kind: str
    c1: np.ndarray
    c2: np.ndarray
    freq: float = 4.0
    axis: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0, 0.0]))
    spots: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # decals: (x, y, z, radius) in part frame
    waves: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # noise: (kx, ky, kz, phase)
    specular: float = 0.0

    def albedo(self, p: np.ndarray) -> np.ndarray:
        """Colour (N, 3) at part-frame points ``p`` (N, 3) (the part's size ~ 1)."""
        if self.kind == "solid":
            w = np.zeros(len(p))
        elif self.kind == "checker":
            w = (np.floor(p * self.freq).sum(1) % 2).astype(float)
        elif self.kind == "stripes":
            w = (np.sin(2 * np.pi * self.freq * (p @ self.axis)) > 0).astype(float)
        elif self.kind == "noise":
            w = np.sin(p @ self.waves[:, :3].T + self.waves[:, 3]).sum(1)
            w = np.clip(0.5 + 0.35 * w / max(1, len(self.waves)) ** 0.5, 0, 1)
        elif self.kind == "gradient":
            w = np.clip(0.5 + 0.5 * (p @ self.axis), 0, 1)
        elif self.kind == "decal":
            w = np.zeros(len(p))
            for x, y, z, rad in self.spots:
                w = np.maximum(w, (np.sum((p - (x, y, z)) ** 2, 1) < rad * rad).astype(float))
        else:
            raise ValueError(self.kind)
        return self.c1 * (1 - w[:, None]) + self.c2 * w[:, None]


@dataclass
class Part:
    """Primitives sharing one material and one texture frame (``rotation``, ``position``, ``size``)."""

    prims: list[Primitive]
    material: Material
    rotation: np.ndarray
    position: np.ndarray
    size: float
    kind: str = ""


@dataclass
class ProceduralObject:
    parts: list[Part]

    @property
    def prims(self) -> list[Primitive]:
        return [p for part in self.parts for p in part.prims]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        b = [p.world_bounds() for p in self.prims]
        return np.min([x[0] for x in b], 0), np.max([x[1] for x in b], 0)


def _random_colour(rng) -> np.ndarray:
    import colorsys

    h, s, v = rng.random(), rng.choice([rng.uniform(0, 0.25), rng.uniform(0.25, 1.0)]), rng.uniform(0.15, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def random_material(rng) -> Material:
    kind = rng.choice(["solid", "solid", "checker", "stripes", "noise", "gradient", "decal"])
    c1, c2 = _random_colour(rng), _random_colour(rng)
    m = Material(str(kind), c1, c2, freq=float(rng.uniform(1.5, 8)), axis=_unit(rng.normal(size=3)),
                 specular=float(rng.choice([0.0, rng.uniform(0, 0.4)])))
    if kind == "decal":
        n = int(rng.integers(1, 5))
        m.spots = np.column_stack([rng.uniform(-1, 1, (n, 3)), rng.uniform(0.1, 0.5, n)])
    if kind == "noise":
        k = int(rng.integers(2, 6))
        m.waves = np.column_stack([rng.normal(0, rng.uniform(2, 10), (k, 3)), rng.uniform(0, 2 * np.pi, k)])
    return m


def _unit(v):
    return np.asarray(v, float) / np.linalg.norm(v)


def _profile(rng, kind: str, height: float, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """A lathe profile (ys, rs): vase / bottle / bowl-ish / random smooth."""
    m = int(rng.integers(5, 10))
    ys = np.linspace(0, height, m + 1)
    s = ys / height
    if kind == "bottle":
        neck = rng.uniform(0.15, 0.45)
        shoulder = rng.uniform(0.5, 0.8)
        rs = np.where(s < shoulder, 1.0, neck + (1 - neck) * np.clip((shoulder + 0.2 - s) / 0.2, 0, 1))
    elif kind == "vase":
        a, b = rng.uniform(0.3, 1.0, 2)
        rs = 0.5 + 0.5 * np.sin(np.pi * (s * rng.uniform(0.8, 1.6) + rng.uniform(0, 1))) * a + 0.2 * b * s
    elif kind == "bowl":
        rs = rng.uniform(0.3, 0.6) + (1 - rng.uniform(0.3, 0.6)) * np.sqrt(np.clip(s, 0, 1))
    else:
        rs = np.cumsum(rng.uniform(-0.3, 0.3, m + 1)) + 1.0
    rs = np.clip(rs, 0.15, None)
    rs = radius * rs / rs.max()
    if rng.random() < 0.3:
        rs[-1] = 0.0  # closed to a point
    return ys, rs


def make_part(rng, kind: str, size: float) -> Part:
    """One part of type ``kind`` at the origin with its base on y = 0, overall size ~ ``size``."""
    mat = random_material(rng)
    eye, zero = np.eye(3), np.zeros(3)
    ar = lambda lo, hi: float(size * rng.uniform(lo, hi))  # noqa: E731
    prims: list[Primitive] = []
    if kind == "box":
        h = np.array([ar(0.2, 0.6), ar(0.2, 0.6), ar(0.2, 0.6)])
        prims.append(Primitive("box", {"half": h}, eye, np.array([0, h[1], 0])))
    elif kind == "plate":
        h = np.array([ar(0.3, 0.7), ar(0.015, 0.05), ar(0.3, 0.7)])
        if rng.random() < 0.5:
            h = h[[0, 2, 1]] if rng.random() < 0.5 else h[[1, 0, 2]]
        prims.append(Primitive("box", {"half": h}, eye, np.array([0, h[1], 0])))
    elif kind == "roundbox":
        h = np.array([ar(0.2, 0.6), ar(0.2, 0.6), ar(0.2, 0.6)])
        rad = float(min(h) * rng.uniform(0.15, 0.8))
        core = h - rad
        c = np.array([0, h[1], 0])
        for i in range(3):
            e = core.copy()
            e[i] = h[i]
            prims.append(Primitive("box", {"half": e}, eye, c))
        for sx in (-1, 1):
            for sy in (-1, 1):
                for sz in (-1, 1):
                    prims.append(Primitive("ellipsoid", {"radii": np.full(3, rad)}, eye, c + core * (sx, sy, sz)))
        for axis in range(3):  # 12 edge cylinders along each axis
            rot = {0: rot_z(np.pi / 2), 1: eye, 2: rot_x(np.pi / 2)}[axis]
            others = [i for i in range(3) if i != axis]
            for s1 in (-1, 1):
                for s2 in (-1, 1):
                    off = np.zeros(3)
                    off[others[0]], off[others[1]] = s1 * core[others[0]], s2 * core[others[1]]
                    prims.append(Primitive("lathe", {"ys": np.array([-core[axis], core[axis]]),
                                                     "rs": np.array([rad, rad])}, rot, c + off))
    elif kind in ("cylinder", "cone", "frustum"):
        r, hgt = ar(0.15, 0.5), ar(0.2, 1.2)
        r1 = {"cylinder": r, "cone": 0.0, "frustum": r * rng.uniform(0.3, 1.6)}[kind]
        prims.append(Primitive("lathe", {"ys": np.array([0, hgt]), "rs": np.array([r, r1])}))
    elif kind == "sphere":
        r = ar(0.2, 0.5)
        radii = np.full(3, r) if rng.random() < 0.4 else np.array([ar(0.15, 0.6), ar(0.15, 0.6), ar(0.15, 0.6)])
        prims.append(Primitive("ellipsoid", {"radii": radii}, eye, np.array([0, radii[1], 0])))
    elif kind == "capsule":
        r, hgt = ar(0.1, 0.35), ar(0.1, 0.9)
        prims += [Primitive("lathe", {"ys": np.array([r, r + hgt]), "rs": np.array([r, r])}),
                  Primitive("ellipsoid", {"radii": np.full(3, r)}, eye, np.array([0, r, 0])),
                  Primitive("ellipsoid", {"radii": np.full(3, r)}, eye, np.array([0, r + hgt, 0]))]
    elif kind == "torus":
        R = ar(0.25, 0.5)
        r = R * rng.uniform(0.12, 0.5)
        if rng.random() < 0.5:  # lying flat
            prims.append(Primitive("torus", {"R": R, "r": r}, eye, np.array([0, r, 0])))
        else:  # standing
            prims.append(Primitive("torus", {"R": R, "r": r}, rot_x(np.pi / 2), np.array([0, R + r, 0])))
    elif kind == "extrusion":
        k = int(rng.integers(3, 9))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = size * rng.uniform(0.15, 0.55, k)
        if rng.random() < 0.4:
            rad[:] = rad.mean()  # regular-ish
        poly = np.column_stack([rad * np.cos(ang), rad * np.sin(ang)])
        h = ar(0.05, 0.9)
        prims.append(Primitive("prism", {"poly": poly, "h": h}))
    elif kind in ("vase", "bottle", "bowl", "lathe"):
        ys, rs = _profile(rng, kind, ar(0.4, 1.3), ar(0.15, 0.5))
        prims.append(Primitive("lathe", {"ys": ys, "rs": rs}))
    elif kind in ("cup", "open bowl"):
        r = ar(0.2, 0.5)
        s = np.linspace(0, 1, int(rng.integers(4, 8)) + 1)
        if kind == "cup":  # a cup, mug, pot or glass: straight or flaring walls
            hgt = ar(0.3, 1.0)
            rs = r * (rng.uniform(0.6, 1.0) + (1 - rng.uniform(0.6, 1.0)) * s)
        else:  # a bowl: round walls, wider than deep
            hgt = r * rng.uniform(0.4, 1.0)
            rs = r * (rng.uniform(0.35, 0.6) + 0.5 * np.sqrt(s))
        rs = r * rs / rs.max()
        wall = float(rs.min() * rng.uniform(0.05, 0.25))
        prims.append(Primitive("cup", {"ys": hgt * s, "rs": rs, "wall": wall,
                                       "floor": float(hgt * rng.uniform(0.05, 0.25))}))
    elif kind == "mushroom":
        rs_stem, h_stem = ar(0.06, 0.18), ar(0.2, 0.7)
        prims.append(Primitive("lathe", {"ys": np.array([0, h_stem]), "rs": np.array([rs_stem * rng.uniform(1, 1.5), rs_stem])}))
        R, hc = ar(0.3, 0.6), ar(0.1, 0.4)
        m = 8
        th = np.linspace(0, np.pi / 2, m + 1)
        under = rng.uniform(0.05, 0.3) * R
        ys = np.concatenate([[h_stem - under], h_stem + hc * np.sin(th)])
        rs = np.concatenate([[rs_stem], R * np.cos(th)])
        prims.append(Primitive("lathe", {"ys": ys, "rs": rs}))  # the cap overhangs its own base ring
    else:
        raise ValueError(kind)
    return Part(prims, mat, np.eye(3), np.zeros(3), size, kind)


def place(part: Part, rotation: np.ndarray, position: np.ndarray) -> Part:
    """The part rigidly moved: world = rotation @ x + position."""
    for p in part.prims:
        p.rotation = rotation @ p.rotation
        p.position = rotation @ p.position + position
    part.rotation = rotation @ part.rotation
    part.position = rotation @ part.position + position
    return part


def _handle(rng, body_lo, body_hi, size) -> Part:
    """A torus segment on the +x side of the body's bounding box, ring plane vertical (x-y)."""
    hgt = body_hi[1] - body_lo[1]
    R = float(np.clip(hgt * rng.uniform(0.2, 0.4), 0.05 * size, 0.5 * size))
    r = R * rng.uniform(0.12, 0.3)
    span = rng.uniform(0.9, 1.2) * np.pi
    prim = Primitive("torus", {"R": R, "r": r, "phi0": -span / 2, "span": span})
    part = Part([prim], random_material(rng), np.eye(3), np.zeros(3), size, "handle")
    cy = body_lo[1] + hgt * rng.uniform(0.4, 0.6)
    # ring in local xz -> world xy: rotate about x by -90 degrees (local z -> world y)
    return place(part, rot_x(-np.pi / 2), np.array([body_hi[0] - 0.3 * R, cy, (body_lo[2] + body_hi[2]) / 2]))


HANDLE_BODIES = ("box", "roundbox", "cylinder", "frustum", "vase", "bottle", "bowl", "capsule", "cup")
PART_KINDS = ["box", "box", "roundbox", "roundbox", "cylinder", "cylinder", "cone", "frustum", "sphere", "capsule",
              "torus", "extrusion", "extrusion", "plate", "vase", "bottle", "bowl", "lathe", "mushroom"]


def deep_sink_depth(rng, height: float, height_below: float) -> float:
    """How far a part of ``height`` stacked on one of ``height_below`` sinks into it: 5-45% of the smaller."""
    return float(rng.uniform(0.05, 0.45)) * min(height, height_below)


def random_object(seed: int, sink: float = 0.0, cups: float = 0.0) -> ProceduralObject:
    """1-4 parts in random relative poses (base on the ground y = 0, others stacked on / beside / a handle).
    A stacked part sinks 5% of its height into the part below; with probability ``sink`` (per object, its own
    random stream, so the object is otherwise the same) each stacked part sinks 5-45% of the smaller of the two
    heights instead (a snowman's head, a ball in a cup, a lid), so the overlap of stacked round parts in the
    picture is no cue of the camera's elevation: with a fixed 5% a sphere on a sphere only overlaps its base much
    when seen from above (shape_prior_v4 read a level snowman as seen from 29 degrees). With probability ``cups``
    (its own stream too) the base is an open container instead, a cup or a bowl (a handle as other bodies): seen
    from above its inside shows, the commonest cue of a high camera in photos of objects."""
    rng = np.random.default_rng(seed)
    sinks = np.random.default_rng([seed, 5])
    deep_sink = sinks.random() < sink
    containers = np.random.default_rng([seed, 6])
    n = int(rng.choice([1, 1, 2, 2, 3, 4]))
    parts: list[Part] = []
    base_kind = str(rng.choice(PART_KINDS))
    if containers.random() < cups:
        base_kind = str(containers.choice(["cup", "cup", "open bowl"]))
    base = make_part(rng, base_kind, 1.0)
    r = rng.random()
    if r < 0.15 and base.kind in ("cylinder", "capsule", "box", "roundbox", "extrusion", "bottle", "vase", "frustum"):
        rot = rot_y(rng.uniform(0, 2 * np.pi)) @ rot_z(np.pi / 2)  # lying down
    elif r < 0.25:
        rot = random_rotation(rng)
    else:
        rot = rot_y(rng.uniform(0, 2 * np.pi)) @ rot_x(rng.normal(0, 0.08))
    place(base, rot, np.zeros(3))
    lo, hi = _bounds([base])
    place(base, np.eye(3), np.array([-(lo[0] + hi[0]) / 2, -lo[1], -(lo[2] + hi[2]) / 2]))
    parts.append(base)
    for _ in range(n - 1):
        lo, hi = _bounds(parts)
        mode = rng.choice(["top", "top", "beside", "handle"])
        if mode == "handle" and base.kind in HANDLE_BODIES and not any(p.kind == "handle" for p in parts):
            part = _handle(rng, *_bounds([parts[0]]), 1.0)
            parts.append(part)
            continue
        part = make_part(rng, str(rng.choice(PART_KINDS)), float(rng.uniform(0.35, 0.9)))
        place(part, rot_y(rng.uniform(0, 2 * np.pi)) if rng.random() < 0.8 else random_rotation(rng), np.zeros(3))
        plo, phi = _bounds([part])
        if mode != "beside":
            top = parts[-1]
            tlo, thi = _bounds([top])
            x = rng.uniform(tlo[0], thi[0]) * 0.6 + 0.4 * (tlo[0] + thi[0]) / 2
            z = rng.uniform(tlo[2], thi[2]) * 0.6 + 0.4 * (tlo[2] + thi[2]) / 2
            y = thi[1] - plo[1] - 0.05 * (phi[1] - plo[1])  # slightly sunk in: attached
            if deep_sink:
                y = thi[1] - plo[1] - deep_sink_depth(sinks, phi[1] - plo[1], thi[1] - tlo[1])
            place(part, np.eye(3), np.array([x - (plo[0] + phi[0]) / 2, y, z - (plo[2] + phi[2]) / 2]))
        else:
            ang = rng.uniform(0, 2 * np.pi)
            dirv = np.array([np.cos(ang), 0, np.sin(ang)])
            ext_self = 0.5 * np.abs(dirv) @ (hi - lo)
            ext_new = 0.5 * np.abs(dirv) @ (phi - plo)
            c = (lo + hi) / 2 + dirv * (ext_self + ext_new) * rng.uniform(0.75, 0.98)
            place(part, np.eye(3), np.array([c[0] - (plo[0] + phi[0]) / 2, -plo[1], c[2] - (plo[2] + phi[2]) / 2]))
        parts.append(part)
    return numbered(parts)


def numbered(parts: list[Part]) -> ProceduralObject:
    """The object of ``parts``, each primitive labelled with the index of its part (the shading's per-part
    materials)."""
    for i, part in enumerate(parts):
        for prim in part.prims:
            prim.part = i
    return ProceduralObject(parts)


def _bounds(parts):
    b = [p.world_bounds() for part in parts for p in part.prims]
    return np.min([x[0] for x in b], 0), np.max([x[1] for x in b], 0)


# -------------------------------------------------------------------------------------------------------- camera
@dataclass
class Camera:
    """Pinhole at ``position`` with orthonormal ``right``, ``up``, ``forward`` (image x right, y up)."""

    position: np.ndarray
    right: np.ndarray
    up: np.ndarray
    forward: np.ndarray

    @staticmethod
    def look_at(position, target, world_up=(0.0, 1.0, 0.0)) -> "Camera":
        f = _unit(np.asarray(target, float) - np.asarray(position, float))
        r = _unit(np.cross(world_up, f))
        return Camera(np.asarray(position, float), r, np.cross(f, r), f)

    def rays(self, x0: float, y1: float, side: float, res: int) -> np.ndarray:
        """Directions (res * res, 3), unit camera-z, through pixel centres of the window of tan-plane coordinates
        [x0, x0 + side] x [y1 - side, y1] (row 0 at the top)."""
        c = (np.arange(res) + 0.5) * side / res
        xs, ys = x0 + c, y1 - c
        a, b = np.meshgrid(xs, ys)
        return a.reshape(-1, 1) * self.right + b.reshape(-1, 1) * self.up + self.forward

    def depth_of(self, point) -> float:
        return float((np.asarray(point) - self.position) @ self.forward)


@dataclass
class Sample:
    """One training sample at ``resolution`` px. ``rgb`` (H, W, 3) float32 over white, ``alpha`` (H, W) coverage,
    ``front_z`` / ``back_z`` camera-z of the first entry / last exit (nan off the object: alpha < 0.5),
    ``normal`` (H, W, 3) (camera frame: x right, y up, z forward), ``elevation_deg``, ``z_ref`` camera-z of the
    object's centre, ``crop_world_width`` = crop side in tan-plane units * z_ref."""

    rgb: np.ndarray
    alpha: np.ndarray
    front_z: np.ndarray
    back_z: np.ndarray
    normal: np.ndarray
    elevation_deg: float
    z_ref: float
    crop_world_width: float
    fov_deg: float

    @property
    def front(self) -> np.ndarray:
        """(z_front - z_ref) / crop_world_width (nan off the object)."""
        return (self.front_z - self.z_ref) / self.crop_world_width

    @property
    def thickness(self) -> np.ndarray:
        return (self.back_z - self.front_z) / self.crop_world_width


def _window(mask: np.ndarray, x0: float, y1: float, side: float, padding: float) -> tuple[float, float, float]:
    """The centre_and_pad square (x0, y1, side) in tan-plane coordinates of ``mask``'s bounding box, ``mask``
    rendered over the window (x0, y1, side)."""
    res = mask.shape[0]
    ys, xs = np.nonzero(mask)
    px = side / res
    bx0, bx1 = x0 + xs.min() * px, x0 + (xs.max() + 1) * px
    by1, by0 = y1 - ys.min() * px, y1 - (ys.max() + 1) * px
    s = max(bx1 - bx0, by1 - by0) / (1 - 2 * padding)
    cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
    return cx - s / 2, cy + s / 2, s


def random_camera(rng, obj: ProceduralObject, elevation_deg: float | None = None, azimuth: float | None = None
                  ) -> tuple[Camera, float, float, np.ndarray]:
    """(camera, fov_deg, elevation_deg, centre): elevation -10..45 (or ``elevation_deg``), azimuth uniform (or
    ``azimuth``, radians; the same draws are made either way), FoV 25..60, the object filling 25-85 % of it."""
    lo, hi = obj.bounds()
    centre = (lo + hi) / 2
    radius = 0.5 * float(np.linalg.norm(hi - lo))
    fov = float(rng.uniform(25, 60))
    elev = float(rng.uniform(-10, 45))
    if elevation_deg is not None:
        elev = float(elevation_deg)
    azim = float(rng.uniform(0, 2 * np.pi))
    if azimuth is not None:
        azim = float(azimuth)
    fill = float(rng.uniform(0.3, 0.95))
    dist = max(radius / math.sin(math.radians(fov / 2) * fill), radius * 1.3)
    e = math.radians(elev)
    pos = centre + dist * np.array([math.cos(e) * math.cos(azim), math.sin(e), math.cos(e) * math.sin(azim)])
    target = centre + rng.normal(0, 0.1 * radius, 3)  # the object is not always at the photo's centre
    return Camera.look_at(pos, target), fov, elev, centre


def render_crop(obj: ProceduralObject, cam: Camera, fov_deg: float, centre: np.ndarray, resolution: int = 128,
                supersample: int = 2, padding: float = PADDING, light: np.ndarray | None = None,
                ambient: float = 0.35, elevation_deg: float | None = None, warp: Warp | None = None) -> Sample:
    """Render the centre_and_pad crop of ``obj`` (deformed by ``warp``) seen by ``cam`` (vertical FoV
    ``fov_deg``). The elevation label, unless given, is the angle of the object's vertical axis (deformed by
    ``warp``) towards the camera: the camera's height above the object's horizon."""
    prims = obj.prims
    tan = math.tan(math.radians(fov_deg) / 2)
    # 1. coarse mask over the frame, then over the first crop, to place the padded square
    win = (-tan, tan, 2 * tan)
    for coarse in (64, 64):
        hits = cast(prims, cam.position, cam.rays(*win, coarse), warp)
        m = hits.hit.reshape(coarse, coarse)
        if not m.any():
            raise ValueError("object not in view")
        win = _window(m, *win, padding)
    # 2. the crop at one ray per pixel; pixels on a silhouette or part boundary again with 2x2 rays (soft edges
    #    like an area-resized photo, at ~10 % of the cost of supersampling everything)
    res = resolution
    dirs = cam.rays(*win, res)
    hits = cast(prims, cam.position, dirs, warp)
    if light is None:
        light = _unit([0.3, 0.8, -0.5])
    colour = _shade(obj, cam, dirs, hits, light, ambient, warp)
    hit = hits.hit.astype(float)
    front, back = np.where(hits.hit, hits.front, 0), np.where(hits.hit, hits.back, 0)
    nrm = np.where(hits.hit[:, None], hits.normal, 0)
    if supersample > 1:
        pid = hits.part.reshape(res, res)
        pad = np.pad(pid, 1, mode="edge")
        edge = np.zeros((res, res), bool)
        for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
            edge |= pad[dy:dy + res, dx:dx + res] != pid
        idx = np.flatnonzero(edge)
        if len(idx):
            k = supersample
            px = win[2] / res
            offs = ((np.arange(k) + 0.5) / k - 0.5) * px
            oa, ob = [g.reshape(-1) for g in np.meshgrid(offs, offs)]
            sub = (dirs[idx][:, None] + oa[None, :, None] * cam.right - ob[None, :, None] * cam.up).reshape(-1, 3)
            sh = cast(prims, cam.position, sub, warp)
            sc = _shade(obj, cam, sub, sh, light, ambient, warp).reshape(len(idx), k * k, 3)
            sub_hit = sh.hit.reshape(len(idx), k * k)
            cnt = np.maximum(sub_hit.sum(1), 1)
            hit[idx] = sub_hit.mean(1)
            colour[idx] = sc.mean(1)
            front[idx] = np.where(sub_hit, sh.front.reshape(len(idx), -1), 0).sum(1) / cnt
            back[idx] = np.where(sub_hit, sh.back.reshape(len(idx), -1), 0).sum(1) / cnt
            nrm[idx] = np.where(sub_hit[..., None], sh.normal.reshape(len(idx), -1, 3), 0).sum(1)
    alpha = hit.reshape(res, res)
    rgb = colour.reshape(res, res, 3)
    nrm_cam = np.stack([nrm @ cam.right, nrm @ cam.up, nrm @ cam.forward], 1).reshape(res, res, 3)
    nrm_cam = nrm_cam / np.maximum(np.linalg.norm(nrm_cam, axis=-1, keepdims=True), 1e-9)
    on = alpha >= 0.5
    front = np.where(on, front.reshape(res, res), np.nan)
    back = np.where(on, back.reshape(res, res), np.nan)
    z_ref = cam.depth_of(centre)
    if elevation_deg is None:
        v = cam.position - centre
        up = warp.up() if warp is not None else np.array([0.0, 1.0, 0.0])
        elevation_deg = math.degrees(math.asin(float(up @ v) / np.linalg.norm(v)))
    return Sample(rgb.astype(np.float32), alpha.astype(np.float32), front.astype(np.float32), back.astype(np.float32),
                  np.where(on[..., None], nrm_cam, 0).astype(np.float32), float(elevation_deg), z_ref,
                  win[2] * z_ref, fov_deg)


def _shade(obj: ProceduralObject, cam: Camera, dirs: np.ndarray, hits: Hits, light: np.ndarray,
           ambient: float, warp: Warp | None = None) -> np.ndarray:
    """Colour (N, 3) of the rays' front hits, white on a miss: albedo * (ambient + (1 - ambient) * Lambert) plus a
    Blinn-Phong highlight of the part's ``specular`` strength."""
    hit = hits.hit
    pts = cam.position + np.where(hit, hits.front, 0)[:, None] * dirs
    if warp is not None:
        pts = warp.to_object(pts)  # the texture is painted on the undeformed object
    albedo = np.ones((len(dirs), 3))
    for i, part in enumerate(obj.parts):
        sel = hits.part == i
        if sel.any():
            albedo[sel] = part.material.albedo((pts[sel] - part.position) @ part.rotation / part.size)
    nrm = hits.normal
    lam = np.clip(nrm @ light, 0, None)
    half = _unit_rows(_unit_rows(-dirs) + light)
    specular = np.array([part.material.specular for part in obj.parts] + [0.0])
    spec = specular[hits.part] * np.clip((nrm * half).sum(1), 0, None) ** 30
    colour = np.clip(albedo * (ambient + (1 - ambient) * lam)[:, None] + spec[:, None], 0, 1)
    colour[~hit] = 1.0
    return colour


def _unit_rows(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _facing_box(rng, r: float, t: float, wide: bool = False) -> Primitive:
    """A box r high (half-height), 0.5-1.2 r wide (``wide``: 1.2-2.4 r, a landscape face), t deep along z,
    standing on y = 0."""
    h = np.array([r * (rng.uniform(1.2, 2.4) if wide else rng.uniform(0.5, 1.2)), r, t / 2])
    return Primitive("box", {"half": h}, np.eye(3), np.array([0, h[1], 0]))


def _facing_lathe(ys: np.ndarray, rs: np.ndarray, r: float) -> Primitive:
    """The lathe profile (``ys`` from 0, ``rs``) with its axis turned from y to z and centred on it: the face looks
    along z, the centre at height r."""
    return Primitive("lathe", {"ys": ys - ys[-1] / 2, "rs": rs}, rot_x(np.pi / 2), np.array([0, r, 0]))


def cutout_outline(rng, r: float, vertices: int = 64) -> np.ndarray:
    """(``vertices``, 2) a random smooth closed outline, star-shaped about the origin, at most ``r`` from it: a
    radius of 1 plus 2-6 random harmonics, whose dents may reach 0.15 of the largest radius (a C, a leaf, a
    cloud, a star, a logo's shape)."""
    theta = np.linspace(0.0, 2 * np.pi, vertices, endpoint=False)
    rad = np.ones(vertices)
    for k in range(1, int(rng.integers(2, 7)) + 1):
        rad += float(rng.uniform(0.0, 0.5)) / k ** 0.6 * np.cos(k * theta + float(rng.uniform(0, 2 * np.pi)))
    rad = np.maximum(rad, 0.15 * rad.max())
    rad *= r / rad.max()
    return np.column_stack([rad * np.cos(theta), rad * np.sin(theta)])


def faceon_object(rng, thick: bool = False, kind: str | None = None, wide: bool = False) -> ProceduralObject:
    """An object standing upright with its face towards +z: thin (``thick`` False: a disc -- a plate, a coin, a
    clock --, a thin board -- a sign, a book, a picture -- or a shallow dish, thickness 2-8 % of its height) or one
    that looks the same face-on but is deep (``thick``: a box or a cylinder seen end-on, 0.5-1.5x as deep as high),
    so the outline alone does not say which. ``kind`` ("deep box" or "can", with ``thick``) fixes which deep one;
    ``wide`` makes a box's (a board's, a deep box's) face 1.2-2.4x as wide as high (a shoebox, a book lying).
    ``kind`` "cut-out" (without ``thick``): a thin slab of 1-3 overlapping random outlines (:func:`cutout_outline`):
    a sign, a sticker, a logo cut out of its background, which face-on is read level, not as a dish from above."""
    if kind == "cut-out" and not thick:
        mat = random_material(rng)
        r = float(rng.uniform(0.35, 0.7))
        t = float(r * rng.uniform(0.03, 0.12))
        prims = []
        for i in range(1 if rng.random() < 0.7 else int(rng.integers(2, 4))):
            ri = r if i == 0 else r * float(rng.uniform(0.4, 0.8))
            at = np.zeros(2) if i == 0 else rng.uniform(-0.6, 0.6, 2) * r
            poly = cutout_outline(rng, ri)
            prims.append(Primitive("prism", {"poly": poly, "h": t}, rot_x(np.pi / 2),
                                   np.array([at[0], r + at[1], -t / 2])))
        return ProceduralObject([Part(prims, mat, np.eye(3), np.zeros(3), 1.0, kind)])
    if thick:
        mat = random_material(rng)
        r = float(rng.uniform(0.35, 0.7))
        kind = str(rng.choice(["deep box", "can"])) if kind is None else kind
        t = float(2 * r * rng.uniform(0.5, 1.5))
        box = kind == "deep box"
    else:
        kind = str(rng.choice(["disc", "disc", "board", "dish"]))
        mat = random_material(rng)
        r = float(rng.uniform(0.35, 0.7))
        t = float(r * rng.uniform(0.03, 0.12))
        box = kind == "board"
    if box:
        prim = _facing_box(rng, r, t, wide)
    elif kind == "dish":  # a thin base, a sloped wall, a lip
        prim = _facing_lathe(np.array([0.0, t, 1.8 * t, 2.2 * t]), np.array([0.55 * r, 0.6 * r, 0.95 * r, r]), r)
    else:  # a disc, or a can end-on
        prim = _facing_lathe(np.array([0.0, t]), np.array([r, r]), r)
    return ProceduralObject([Part([prim], mat, np.eye(3), np.zeros(3), 1.0, kind)])


def figure_object(rng) -> ProceduralObject:
    """A figure: a round body (a ball, an egg, a chamfered drum, a frustum), sometimes a second ball on
    it (a snowman), a round head on top, each sunk 5-45% of the smaller height into the part below, and sometimes
    a hat (a cone, a cylinder): toys, figurines, snowmen, bottles with a ball stopper. Level, its outline is a stack
    of overlapping round shapes, which from above a row of round parts receding from the camera can also be."""
    def ball(r: float, aspect: float) -> Primitive:
        return Primitive("ellipsoid", {"radii": np.array([r, r * aspect, r])})

    width = float(rng.uniform(0.3, 0.5))
    kind = str(rng.choice(["ball", "ball", "egg", "capsule", "frustum"]))
    if kind in ("ball", "egg"):
        body = ball(width, 1.0 if kind == "ball" else float(rng.uniform(1.1, 1.5)))
    elif kind == "capsule":
        body = Primitive("lathe", {"ys": np.array([-0.6, -0.45, 0.45, 0.6]) * width * rng.uniform(1, 1.8),
                                   "rs": np.array([0.6, 1.0, 1.0, 0.6]) * width})
    else:
        body = Primitive("lathe", {"ys": np.array([-1.0, 1.0]) * width * rng.uniform(0.8, 1.5),
                                   "rs": np.array([1.0, rng.uniform(0.5, 0.9)]) * width})
    stack = [body]
    if rng.random() < 0.35:  # a middle ball
        stack.append(ball(width * float(rng.uniform(0.65, 0.9)), 1.0))
    stack.append(ball(width * float(rng.uniform(0.4, 0.8)), float(rng.uniform(0.9, 1.15))))
    if rng.random() < 0.35:
        r_hat = float(stack[-1].params["radii"][0] * rng.uniform(0.5, 1.1))
        tip = 0.0 if rng.random() < 0.6 else r_hat * float(rng.uniform(0.6, 1.0))
        stack.append(Primitive("lathe", {"ys": np.array([0.0, r_hat * rng.uniform(1.0, 2.5)]),
                                         "rs": np.array([r_hat, tip])}))
    parts, top = [], None
    for prim in stack:
        lo, hi = prim.local_bounds()
        if top is None:
            y = -lo[1]
        else:
            y = top - lo[1] - deep_sink_depth(rng, hi[1] - lo[1], height)
        prim.position = np.array([float(rng.normal(0, 0.03 * width)), y, float(rng.normal(0, 0.03 * width))])
        top, height = y + hi[1], hi[1] - lo[1]
        parts.append(Part([prim], random_material(rng), np.eye(3), np.zeros(3), 1.0, "figure"))
    return numbered(parts)


def saucer_object(rng) -> ProceduralObject:
    """Something standing on a saucer or a plate, most often a cup or a bowl (a cup with a handle half the time),
    else any other part (food on a plate, a pot on a stand): a wide disc under a smaller object, the way a coffee
    cup is photographed, from above. The saucer (1.3-2.2x as wide as the object's footprint) is either solid (a
    flat base rising to a lip) or a shallow dish whose inside shows; the object stands centred on its top or
    floor."""
    if rng.random() < 0.7:
        item = make_part(rng, str(rng.choice(["cup", "cup", "open bowl"])), 1.0)
    else:
        item = make_part(rng, str(rng.choice([k for k in PART_KINDS if k != "plate"])), float(rng.uniform(0.5, 1.0)))
    place(item, rot_y(rng.uniform(0, 2 * np.pi)), np.zeros(3))
    parts = [item]
    lo, hi = _bounds(parts)
    if item.kind == "cup" and rng.random() < 0.5:
        parts.append(_handle(rng, lo, hi, 1.0))
        lo, hi = _bounds(parts)
    footprint = 0.5 * max(hi[0] - lo[0], hi[2] - lo[2])
    radius = footprint * float(rng.uniform(1.3, 2.2))
    height = radius * float(rng.uniform(0.05, 0.14))
    ys = np.array([0.0, 0.45, 0.8, 1.0]) * height
    rs = np.array([0.55, 0.6, 0.93, 1.0]) * radius
    if rng.random() < 0.5:  # solid: a base rising to a lip
        saucer, seat = Primitive("lathe", {"ys": ys, "rs": rs}), height
    else:  # a shallow dish, its inside showing
        floor = 0.35 * height
        saucer = Primitive("cup", {"ys": ys, "rs": rs, "wall": float(0.05 * radius), "floor": float(floor)})
        seat = floor
    base = Part([saucer], random_material(rng), np.eye(3), np.zeros(3), 1.0, "saucer")
    shift = np.array([rng.normal(0, 0.04 * radius) - (lo[0] + hi[0]) / 2, seat - lo[1],
                      rng.normal(0, 0.04 * radius) - (lo[2] + hi[2]) / 2])
    for part in parts:
        place(part, np.eye(3), shift)
    return numbered([base] + parts)


ATTACHED_BODIES = ("box", "box", "roundbox", "cylinder", "extrusion")
ATTACHED_PARTS = ("box", "box", "roundbox", "lens", "sphere")


def attached_object(rng) -> ProceduralObject:
    """A body (a box, a cylinder, a prism) with 1-2 parts fixed to its front face (+z) at any height: a lens on
    a camera, a drawer, a knob, a block in front of a taller one. An attached part is about 0.4-1.3x the body's
    width (it may overhang the sides), sinks 0-30% of its depth into the face and need not touch the ground, so
    that neither the ground contact nor the outline says how far it stands out: the occlusion and the texture do.
    Seen from the front (within 45 degrees of +z)."""
    body = make_part(rng, str(rng.choice(ATTACHED_BODIES)), 1.0)
    parts = [body]
    lo, hi = _bounds(parts)
    size = hi - lo
    for _ in range(int(rng.choice([1, 1, 2]))):
        kind = str(rng.choice(ATTACHED_PARTS))
        scale = float(rng.uniform(0.4, 1.3)) * max(size[0], 0.5 * size[1])
        if kind == "lens":  # a cylinder along z
            r, depth = 0.5 * scale * rng.uniform(0.4, 0.9), scale * rng.uniform(0.2, 0.9)
            barrel = Primitive("lathe", {"ys": np.array([0.0, depth]), "rs": np.array([r, r * rng.uniform(0.8, 1.1)])})
            part = Part([barrel], random_material(rng), np.eye(3), np.zeros(3), scale, "lens")
            place(part, rot_x(np.pi / 2), np.zeros(3))
        else:
            part = make_part(rng, kind, scale)
        plo, phi = _bounds([part])
        psize = phi - plo
        x = lo[0] + size[0] * rng.uniform(0.2, 0.8)
        y = lo[1] + psize[1] / 2 + max(size[1] - psize[1], 0.0) * rng.uniform(0, 1)
        z = hi[2] + psize[2] * (0.5 - rng.uniform(0.0, 0.3))
        place(part, np.eye(3), np.array([x, y, z]) - (plo + phi) / 2)
        parts.append(part)
    return numbered(parts)


STEEP_ELEVATIONS = (45.0, 80.0)  # degrees: render_sample(steep=...)'s cameras looking down steeply


def render_sample(seed: int, resolution: int = 128, supersample: int = 2, squash: float = 0.0,
                  level: float = 0.0, flat: float = 0.0, faceon: float = 0.0, faceon_thick: float = 0.0,
                  sink: float = 0.0, cups: float = 0.0, figures: float = 0.0, faceon_boxes: float = 0.0,
                  saucers: float = 0.0, attached: float = 0.0, faceon_wide: float = 0.0, steep: float = 0.0,
                  faceon_cutouts: float = 0.0, faceon_square: float = 0.0, level_exact: float = 0.0) -> Sample:
    """The procedural training sample number ``seed`` (deterministic).

    ``squash``: the probability that the object is scaled along the view direction (:func:`squash_along`, factor
    0.35-1.6, log-uniform): the same silhouette over a different depth, so thickness has to be read from the
    shading and the texture rather than the outline; the elevation label follows the object's tilted vertical
    axis, atan(factor * tan(elevation)). ``level``: the probability of a near-level camera (elevation -4..6
    degrees). ``flat``: the probability of shadeless light (ambient 0.85-1: a bright overcast sky or an
    environment light, as in the quality benchmark's renders), so shape must come from the outline and the texture.
    ``faceon``: the probability that the object is a thin one (:func:`faceon_object`) seen within 35 degrees of
    its face; ``faceon_thick`` the fraction of those that are deep instead (a box or a cylinder end-on, the same
    picture); ``faceon_boxes`` the fraction of them that are a deep box whatever ``faceon_thick`` says, so that a
    rectangle seen face-on is mostly a box (a package, a book) while a disc stays mostly thin (a plate).
    ``sink``: the probability that stacked parts sink deeper into each other, ``cups`` that the object stands on an
    open container (both :func:`random_object`); ``figures`` that it is a :func:`figure_object`; ``saucers`` that
    it is a :func:`saucer_object` (a cup on a saucer), seen from 10-45 degrees above unless ``level`` says level;
    ``attached`` that it is an :func:`attached_object` (parts fixed to a body's front face) seen from the front;
    ``faceon_wide`` the fraction of the face-on boxes and boards whose face is wider than high. ``steep``: the
    probability that the camera looks down from 45-80 degrees (``STEEP_ELEVATIONS``: a cup on its saucer, food on a
    plate, a flat lay; the other options' range stops at 45), whatever ``level`` and ``saucers`` say, unless the
    object is a face-on or an attached one (seen from the front). ``faceon_cutouts``: the fraction of the
    face-on objects that are thin cut-outs (``faceon_object(kind="cut-out")``: a sign, a sticker, a logo's shape)
    whatever ``faceon_thick`` and ``faceon_boxes`` say, which
    shape_prior_v17, never shown one, read at 36 degrees on average when seen level. ``faceon_square``: the fraction
    of the face-on objects turned exactly face-on (no side shows) and not squashed along the view, so that a
    rectangle with no side showing is as often a box as the face-on boxes outnumber the boards (v10 reads a deep box
    turned exactly face-on at 0.59-0.79 of its thickness, turned 20-35 degrees at 1.00-1.09). ``level_exact``: the
    fraction of the near-level cameras (``level``) exactly level, elevation 0 (a camera at the object's height, as
    product photos and the quality benchmark's inputs are shot), so that where the picture cannot tell -4 from 6
    degrees the likeliest reading is level rather than the band's middle (v10 reads the benchmark's level snowman
    at 3 degrees and leans its head towards the camera; told 0 it beats the geometric backend).
    Each draws from its own random stream: with all 0 the samples are the data of shape_prior_v1."""
    rng = np.random.default_rng([seed, 1])
    extra = np.random.default_rng([seed, 2])
    more = np.random.default_rng([seed, 3])
    factor = math.exp(extra.uniform(math.log(0.35), math.log(1.6))) if extra.random() < squash else 1.0
    level_elevation = extra.uniform(-4.0, 6.0) if extra.random() < level else None
    if level_elevation is not None and np.random.default_rng([seed, 15]).random() < level_exact:
        level_elevation = 0.0
    flat_ambient = float(more.uniform(0.85, 1.0)) if more.random() < flat else None
    thin = more.random() < faceon
    deep = np.random.default_rng([seed, 4]).random() < faceon_thick
    deep_box = np.random.default_rng([seed, 8]).random() < faceon_boxes
    figure_rng = np.random.default_rng([seed, 7])
    figure = figure_rng.random() < figures and not thin
    saucer_rng = np.random.default_rng([seed, 9])
    saucer = saucer_rng.random() < saucers and not (thin or figure)
    if saucer and level_elevation is None:
        level_elevation = float(saucer_rng.uniform(10.0, 45.0))
    attached_rng = np.random.default_rng([seed, 10])
    attach = attached_rng.random() < attached and not (thin or figure or saucer)
    wide = np.random.default_rng([seed, 11]).random() < faceon_wide
    cutout = np.random.default_rng([seed, 13]).random() < faceon_cutouts
    deep, deep_box = deep and not cutout, deep_box and not cutout
    steep_rng = np.random.default_rng([seed, 12])
    if steep_rng.random() < steep and not (thin or attach):
        level_elevation = float(steep_rng.uniform(*STEEP_ELEVATIONS))
    face_turn = more.uniform(-1, 1) * math.radians(35)
    face_back = more.random() < 0.5  # seen from the object's back
    if thin and np.random.default_rng([seed, 14]).random() < faceon_square:
        face_turn, factor = 0.0, 1.0  # exactly face-on, not squashed
    face_azimuth = float(np.pi / 2 + face_turn + np.pi * face_back)
    for attempt in range(5):
        if thin:
            obj = faceon_object(more, thick=deep or deep_box,
                                kind="deep box" if deep_box else "cut-out" if cutout else None, wide=wide)
        elif saucer:
            obj = saucer_object(saucer_rng)
        elif attach:
            obj = attached_object(attached_rng)
        else:
            obj = figure_object(figure_rng) if figure else random_object(seed * 7 + attempt, sink, cups)
        front_azimuth = float(np.pi / 2 + attached_rng.uniform(-1, 1) * math.radians(45)) if attach else None
        cam, fov, _elev, centre = random_camera(rng, obj, level_elevation, face_azimuth if thin else front_azimuth)
        # light from the camera's side of the object, mostly above, random ambient
        toward = -cam.forward
        light = _unit(toward * rng.uniform(0.2, 1.0) + np.array([0, rng.uniform(0.2, 1.2), 0]) + rng.normal(0, 0.6, 3))
        ambient = float(rng.uniform(0.15, 0.6)) if flat_ambient is None else flat_ambient
        warp = squash_along(centre - cam.position, factor, centre) if factor != 1.0 else None
        try:
            return render_crop(obj, cam, fov, centre, resolution, supersample, light=light, ambient=ambient,
                               warp=warp)
        except ValueError:
            continue
    raise RuntimeError(f"sample {seed}: no view of the object in 5 attempts")


SHARD_FIELDS = ("rgb", "alpha", "front", "thickness", "elevation")


def make_shard(seeds, resolution: int = 128, **options) -> dict[str, np.ndarray]:
    """Samples ``seeds`` (:func:`render_sample` with ``options``) as arrays: rgb (N, H, W, 3) uint8 over white,
    alpha (N, H, W) uint8, front / thickness (N, H, W) float16 in crop units (nan off the object), elevation (N,)
    float32 degrees."""
    out = {k: [] for k in SHARD_FIELDS}
    for seed in seeds:
        s = render_sample(int(seed), resolution, **options)
        out["rgb"].append(np.round(s.rgb * 255).astype(np.uint8))
        out["alpha"].append(np.round(s.alpha * 255).astype(np.uint8))
        out["front"].append(s.front.astype(np.float16))
        out["thickness"].append(s.thickness.astype(np.float16))
        out["elevation"].append(np.float32(s.elevation_deg))
    return {k: np.stack(v) for k, v in out.items()}


def write_shard(folder, name: str, seeds, resolution: int = 128, **options) -> None:
    """:func:`make_shard` saved as ``folder/name.<field>.npy`` (memory-mappable); the ``.done`` marker last."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, v in make_shard(seeds, resolution, **options).items():
        np.save(folder / f"{name}.{k}.npy", v)
    (folder / f"{name}.done").write_text(f"{len(seeds)}\n")

"""EWA projection of 3D Gaussians on the CPU in numba, forward and backward: the maths of gsplat's
``_torch_impl._fully_fused_projection`` (pinhole) with ``_quat_scale_to_covar_preci``, fused per Gaussian.

gsplat's torch version runs ~90 tiny batched matrix products and element-wise passes over (C, N, 3, 3) tensors; at
50k Gaussians that is 25-30 ms forward and ~45 ms backward on two cores, a third of a training step's rendering.
Here one pass per Gaussian computes the camera-space mean and covariance, the clamped Jacobian, the 2D covariance
plus ``eps2d``, its inverse (the conic) and the depth; the backward pass recomputes those and applies the chain rule
by hand (the same formulas as gsplat's CUDA ``projection_ewa_3dgs_fused_bwd``), summing over cameras per Gaussian
(parallel over Gaussians, so no atomics). Tested against gsplat's torch functions (values and gradients) and by
gradcheck in float64.

Per Gaussian (quaternion q = (w, x, y, z), normalised here; activated scales s; world-to-camera R, t; K):
    Sigma = (R_q S)(R_q S)^T,  p = R m + t,  Sigma_c = R Sigma R^T
    J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]] with tx = z clamp(x/z, -lim_x-, lim_x+) (gsplat's 1.3x FoV
    clamp; ty likewise),  cov2d = J Sigma_c J^T + eps2d I,  det = max(|cov2d|, 1e-10)
    means2d = (K[0, :] p, K[1, :] p) / z,  conic = (cov2d_11, -cov2d_01, cov2d_00) / det,  depth = z
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

DET_MIN = 1e-10


# 3x3 matrices are row-major 9-tuples and 2x3 ones 6-tuples: numba keeps them in registers (no allocation per
# Gaussian, no BLAS call for a 3x3 product).
@njit(cache=True)
def _mm(a, b):
    return (a[0] * b[0] + a[1] * b[3] + a[2] * b[6], a[0] * b[1] + a[1] * b[4] + a[2] * b[7],
            a[0] * b[2] + a[1] * b[5] + a[2] * b[8],
            a[3] * b[0] + a[4] * b[3] + a[5] * b[6], a[3] * b[1] + a[4] * b[4] + a[5] * b[7],
            a[3] * b[2] + a[4] * b[5] + a[5] * b[8],
            a[6] * b[0] + a[7] * b[3] + a[8] * b[6], a[6] * b[1] + a[7] * b[4] + a[8] * b[7],
            a[6] * b[2] + a[7] * b[5] + a[8] * b[8])


@njit(cache=True)
def _t(a):
    return (a[0], a[3], a[6], a[1], a[4], a[7], a[2], a[5], a[8])


@njit(cache=True)
def _rotmat(w, x, y, z):
    return (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y))


@njit(cache=True)
def _covariance(q0, q1, q2, q3, s0, s1, s2):
    """(normalised quaternion w, x, y, z, its norm, R_q, M = R_q S, Sigma = M M^T)."""
    n = np.sqrt(q0 * q0 + q1 * q1 + q2 * q2 + q3 * q3)
    w, x, y, z = q0 / n, q1 / n, q2 / n, q3 / n
    r = _rotmat(w, x, y, z)
    m = (r[0] * s0, r[1] * s1, r[2] * s2, r[3] * s0, r[4] * s1, r[5] * s2, r[6] * s0, r[7] * s1, r[8] * s2)
    return w, x, y, z, n, r, m, _mm(m, _t(m))


@njit(cache=True)
def _limits(K, width, height):
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    return ((width - cx) / fx + 0.15 * width / fx, cx / fx + 0.15 * width / fx,
            (height - cy) / fy + 0.15 * height / fy, cy / fy + 0.15 * height / fy)


@njit(cache=True)
def _project_one(m0, m1, m2, sigma, view, K, width, height):
    """Camera-space mean p, R, Sigma_c, the clamped tx, ty (and whether each was clamped) and the Jacobian J
    (2x3 as (J00, J02, J11, J12); J01 = J10 = 0) and cov2d = J Sigma_c J^T as (a, b, d)."""
    R = (view[0, 0], view[0, 1], view[0, 2], view[1, 0], view[1, 1], view[1, 2], view[2, 0], view[2, 1], view[2, 2])
    px = R[0] * m0 + R[1] * m1 + R[2] * m2 + view[0, 3]
    py = R[3] * m0 + R[4] * m1 + R[5] * m2 + view[1, 3]
    tz = R[6] * m0 + R[7] * m1 + R[8] * m2 + view[2, 3]
    sc = _mm(_mm(R, sigma), _t(R))
    lim_xp, lim_xn, lim_yp, lim_yn = _limits(K, width, height)
    ux, uy = px / tz, py / tz
    clamp_x = (ux < -lim_xn) or (ux > lim_xp)
    clamp_y = (uy < -lim_yn) or (uy > lim_yp)
    ux = min(max(ux, -lim_xn), lim_xp)
    uy = min(max(uy, -lim_yn), lim_yp)
    tx, ty = tz * ux, tz * uy
    fx, fy = K[0, 0], K[1, 1]
    j00, j02, j11, j12 = fx / tz, -fx * tx / (tz * tz), fy / tz, -fy * ty / (tz * tz)
    # rows of J Sigma_c: (j00 sc0 + j02 sc6, ...), (j11 sc3 + j12 sc6, ...)
    a0 = j00 * sc[0] + j02 * sc[6]
    a1 = j00 * sc[1] + j02 * sc[7]
    a2 = j00 * sc[2] + j02 * sc[8]
    b0 = j11 * sc[3] + j12 * sc[6]
    b1 = j11 * sc[4] + j12 * sc[7]
    b2 = j11 * sc[5] + j12 * sc[8]
    cov_a = a0 * j00 + a2 * j02
    cov_b = 0.5 * ((a1 * j11 + a2 * j12) + (b0 * j00 + b2 * j02))
    cov_d = b1 * j11 + b2 * j12
    return px, py, tz, R, sc, tx, ty, ux, uy, clamp_x, clamp_y, j00, j02, j11, j12, cov_a, cov_b, cov_d


SH_C0 = 0.2820947917738781  # gsplat's _eval_sh_bases_fast constants (Sloan's efficient SH)


@njit(cache=True, inline="always")
def _sh_bases(degree, x, y, z):
    """Real SH bases 0..15 at the unit direction (x, y, z), gsplat's ``_eval_sh_bases_fast`` (zeros beyond
    ``degree``)."""
    z0 = 0.0
    b1 = b2 = b3 = b4 = b5 = b6 = b7 = b8 = b9 = b10 = b11 = b12 = b13 = b14 = b15 = z0
    if degree >= 1:
        fa = -0.48860251190292
        b1 = fa * y
        b2 = -fa * z
        b3 = fa * x
    if degree >= 2:
        z2 = z * z
        fb = -1.092548430592079 * z
        fa2 = 0.5462742152960395
        c1 = x * x - y * y
        s1 = 2.0 * x * y
        b4 = fa2 * s1
        b5 = fb * y
        b6 = 0.9461746957575601 * z2 - 0.3153915652525201
        b7 = fb * x
        b8 = fa2 * c1
        if degree >= 3:
            fc = -2.285228997322329 * z2 + 0.4570457994644658
            fb3 = 1.445305721320277 * z
            fa3 = -0.5900435899266435
            c2 = x * c1 - y * s1
            s2 = x * s1 + y * c1
            b9 = fa3 * s2
            b10 = fb3 * s1
            b11 = fc * y
            b12 = z * (1.865881662950577 * z2 - 1.119528997770346)
            b13 = fc * x
            b14 = fb3 * c1
            b15 = fa3 * c2
    return (SH_C0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15)


@njit(cache=True, inline="always")
def _coef_dot(coeffs, g, degree, v0, v1, v2):
    """(w_0..w_15), w_k = sum_ch v_ch * coeffs[g, k, ch] for the bases of ``degree``, 0 beyond (written out: a
    runtime-indexed 16-tuple made the backward kernel's compile several seconds longer)."""
    w0 = v0 * coeffs[g, 0, 0] + v1 * coeffs[g, 0, 1] + v2 * coeffs[g, 0, 2]
    w1 = w2 = w3 = w4 = w5 = w6 = w7 = w8 = w9 = w10 = w11 = w12 = w13 = w14 = w15 = 0.0 * w0
    if degree >= 1:
        w1 = v0 * coeffs[g, 1, 0] + v1 * coeffs[g, 1, 1] + v2 * coeffs[g, 1, 2]
        w2 = v0 * coeffs[g, 2, 0] + v1 * coeffs[g, 2, 1] + v2 * coeffs[g, 2, 2]
        w3 = v0 * coeffs[g, 3, 0] + v1 * coeffs[g, 3, 1] + v2 * coeffs[g, 3, 2]
    if degree >= 2:
        w4 = v0 * coeffs[g, 4, 0] + v1 * coeffs[g, 4, 1] + v2 * coeffs[g, 4, 2]
        w5 = v0 * coeffs[g, 5, 0] + v1 * coeffs[g, 5, 1] + v2 * coeffs[g, 5, 2]
        w6 = v0 * coeffs[g, 6, 0] + v1 * coeffs[g, 6, 1] + v2 * coeffs[g, 6, 2]
        w7 = v0 * coeffs[g, 7, 0] + v1 * coeffs[g, 7, 1] + v2 * coeffs[g, 7, 2]
        w8 = v0 * coeffs[g, 8, 0] + v1 * coeffs[g, 8, 1] + v2 * coeffs[g, 8, 2]
    if degree >= 3:
        w9 = v0 * coeffs[g, 9, 0] + v1 * coeffs[g, 9, 1] + v2 * coeffs[g, 9, 2]
        w10 = v0 * coeffs[g, 10, 0] + v1 * coeffs[g, 10, 1] + v2 * coeffs[g, 10, 2]
        w11 = v0 * coeffs[g, 11, 0] + v1 * coeffs[g, 11, 1] + v2 * coeffs[g, 11, 2]
        w12 = v0 * coeffs[g, 12, 0] + v1 * coeffs[g, 12, 1] + v2 * coeffs[g, 12, 2]
        w13 = v0 * coeffs[g, 13, 0] + v1 * coeffs[g, 13, 1] + v2 * coeffs[g, 13, 2]
        w14 = v0 * coeffs[g, 14, 0] + v1 * coeffs[g, 14, 1] + v2 * coeffs[g, 14, 2]
        w15 = v0 * coeffs[g, 15, 0] + v1 * coeffs[g, 15, 1] + v2 * coeffs[g, 15, 2]
    return (w0, w1, w2, w3, w4, w5, w6, w7,
            w8, w9, w10, w11, w12, w13, w14, w15)


@njit(cache=True, inline="always")
def _sh_grad_dir(degree, x, y, z, coeffs, g, v0, v1, v2):
    """sum_k w_k * d basis_k / d(x, y, z) at the unit direction (the derivatives of :func:`_sh_bases`), with
    w_k = sum_ch v_ch * coeffs[g, k, ch]."""
    w = _coef_dot(coeffs, g, degree, v0, v1, v2)
    gx = gy = gz = 0.0
    if degree >= 1:
        fa = -0.48860251190292
        gy += fa * w[1]
        gz -= fa * w[2]
        gx += fa * w[3]
    if degree >= 2:
        fb = -1.092548430592079
        fa2 = 0.5462742152960395
        # b4 = fa2 2xy, b5 = fb z y, b6 = .946 z^2 - .315, b7 = fb z x, b8 = fa2 (x^2 - y^2)
        gx += fa2 * 2.0 * y * w[4] + fb * z * w[7] + fa2 * 2.0 * x * w[8]
        gy += fa2 * 2.0 * x * w[4] + fb * z * w[5] - fa2 * 2.0 * y * w[8]
        gz += fb * y * w[5] + 2.0 * 0.9461746957575601 * z * w[6] + fb * x * w[7]
        if degree >= 3:
            z2 = z * z
            fc = -2.285228997322329 * z2 + 0.4570457994644658
            dfc = -2.0 * 2.285228997322329 * z
            fb3 = 1.445305721320277
            fa3 = -0.5900435899266435
            c1 = x * x - y * y
            s1 = 2.0 * x * y
            dc2x, dc2y = 3.0 * c1, -6.0 * x * y  # c2 = x^3 - 3 x y^2
            ds2x, ds2y = 6.0 * x * y, 3.0 * c1  # s2 = 3 x^2 y - y^3
            gx += (fa3 * ds2x * w[9] + fb3 * z * 2.0 * y * w[10] + fc * w[13] + fb3 * z * 2.0 * x * w[14]
                   + fa3 * dc2x * w[15])
            gy += (fa3 * ds2y * w[9] + fb3 * z * 2.0 * x * w[10] + fc * w[11] - fb3 * z * 2.0 * y * w[14]
                   + fa3 * dc2y * w[15])
            gz += (fb3 * s1 * w[10] + dfc * y * w[11] + (3.0 * 1.865881662950577 * z2 - 1.119528997770346) * w[12]
                   + dfc * x * w[13] + fb3 * c1 * w[14])
    return gx, gy, gz


@njit(cache=True, inline="always")
def _sh_sum(coeffs, g, ch, degree, b):
    """sum_k b_k coeffs[g, k, ch] over the bases of ``degree`` (written out, constant tuple indices)."""
    acc = b[0] * coeffs[g, 0, ch]
    if degree >= 1:
        acc += b[1] * coeffs[g, 1, ch] + b[2] * coeffs[g, 2, ch] + b[3] * coeffs[g, 3, ch]
    if degree >= 2:
        acc += b[4] * coeffs[g, 4, ch] + b[5] * coeffs[g, 5, ch] + b[6] * coeffs[g, 6, ch]
        acc += b[7] * coeffs[g, 7, ch] + b[8] * coeffs[g, 8, ch]
    if degree >= 3:
        acc += b[9] * coeffs[g, 9, ch] + b[10] * coeffs[g, 10, ch] + b[11] * coeffs[g, 11, ch]
        acc += b[12] * coeffs[g, 12, ch] + b[13] * coeffs[g, 13, ch] + b[14] * coeffs[g, 14, ch]
        acc += b[15] * coeffs[g, 15, ch]
    return acc


@njit(cache=True, inline="always")
def _sh_channel_backward(coeffs, g, degree, ch, b, v_colour, out_v_coeffs):
    """Adds dL/dcoeffs[g, :, ch] of colour channel ``ch`` into ``out_v_coeffs``; returns the gradient that reaches
    the SH sum (``v_colour``, or 0 where clamp_min(sum + 0.5, 0) clamped)."""
    if _sh_sum(coeffs, g, ch, degree, b) + 0.5 < 0.0:  # torch.clamp_min passes the gradient where input >= min
        return 0.0
    v = np.float64(v_colour)
    out_v_coeffs[g, 0, ch] += v * b[0]
    if degree >= 1:
        out_v_coeffs[g, 1, ch] += v * b[1]
        out_v_coeffs[g, 2, ch] += v * b[2]
        out_v_coeffs[g, 3, ch] += v * b[3]
    if degree >= 2:
        out_v_coeffs[g, 4, ch] += v * b[4]
        out_v_coeffs[g, 5, ch] += v * b[5]
        out_v_coeffs[g, 6, ch] += v * b[6]
        out_v_coeffs[g, 7, ch] += v * b[7]
        out_v_coeffs[g, 8, ch] += v * b[8]
    if degree >= 3:
        out_v_coeffs[g, 9, ch] += v * b[9]
        out_v_coeffs[g, 10, ch] += v * b[10]
        out_v_coeffs[g, 11, ch] += v * b[11]
        out_v_coeffs[g, 12, ch] += v * b[12]
        out_v_coeffs[g, 13, ch] += v * b[13]
        out_v_coeffs[g, 14, ch] += v * b[14]
        out_v_coeffs[g, 15, ch] += v * b[15]
    return v


@njit(cache=True, inline="always")
def _unit_dir(m0, m1, m2, centers, c):
    """(means - camera centre) / max(norm, 1e-12) (torch's F.normalize) and the norm."""
    dx, dy, dz = m0 - centers[c, 0], m1 - centers[c, 1], m2 - centers[c, 2]
    nrm = max(np.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
    return dx / nrm, dy / nrm, dz / nrm, nrm


@njit(cache=True, inline="always")
def _scene_terms(quats, scales, opacities, g):
    """Gaussian g's world covariance (row-major 9-tuple) and support level 2 ln(255 opacity)."""
    sigma = _covariance(np.float64(quats[g, 0]), np.float64(quats[g, 1]), np.float64(quats[g, 2]),
                        np.float64(quats[g, 3]), np.float64(scales[g, 0]), np.float64(scales[g, 1]),
                        np.float64(scales[g, 2]))[7]
    level = 2.0 * np.log(max(np.float64(opacities[g]) * 255.0, 1e-30))  # d^T conic d <= level: alpha >= 1/255
    return sigma, level


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def scene_terms(quats, scales, opacities, out_sigmas, out_levels):
    """The camera-independent part of :func:`project_forward` for a scene rendered from many cameras (videos):
    out_sigmas (N, 9) world covariances, out_levels (N,) support levels, float64."""
    for g in prange(quats.shape[0]):
        sigma, level = _scene_terms(quats, scales, opacities, g)
        for i in range(9):
            out_sigmas[g, i] = sigma[i]
        out_levels[g] = level


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def project_forward(means, quats, scales, opacities, coeffs, degree, viewmats, Ks, centers, width, height, eps2d,
                    near, far, sigmas, levels, out_means2d, out_conics, out_depths, out_colors, out_extents,
                    out_valid):
    """means (N, 3), quats (N, 4), scales (N, 3), opacities (N,) activated, coeffs (N, K, 3) SH, viewmats (C, 4, 4),
    Ks (C, 3, 3), centers (C, 3) camera centres -> out_means2d (C, N, 2), out_conics (C, N, 3), out_depths (C, N),
    out_colors (C, N, 3) = clamp_min(SH_degree(dir) + 0.5, 0) (not written when ``degree`` < 0),
    out_extents (C, N, 2) and out_valid (C, N): :func:`splat4d.render.projection.support_extents` of the outputs
    (computed on their stored, rounded values). ``sigmas`` (N, 9) / ``levels`` (N,) from :func:`scene_terms`
    replace the covariance and level computed from quats, scales and opacities (the same values) when given
    (N rows; pass (0, 9) / (0,) arrays otherwise)."""
    n_cams = viewmats.shape[0]
    cached = sigmas.shape[0] == means.shape[0]
    for g in prange(means.shape[0]):
        if cached:
            sigma = (sigmas[g, 0], sigmas[g, 1], sigmas[g, 2], sigmas[g, 3], sigmas[g, 4], sigmas[g, 5],
                     sigmas[g, 6], sigmas[g, 7], sigmas[g, 8])
            level = levels[g]
        else:
            sigma, level = _scene_terms(quats, scales, opacities, g)
        m0, m1, m2 = np.float64(means[g, 0]), np.float64(means[g, 1]), np.float64(means[g, 2])
        for c in range(n_cams):
            K = Ks[c]
            t = _project_one(m0, m1, m2, sigma, viewmats[c], K, width, height)
            px, py, tz = t[0], t[1], t[2]
            a, b, d = t[15] + eps2d, t[16], t[17] + eps2d
            det = max(a * d - b * b, DET_MIN)
            out_means2d[c, g, 0] = (K[0, 0] * px + K[0, 1] * py + K[0, 2] * tz) / tz
            out_means2d[c, g, 1] = (K[1, 0] * px + K[1, 1] * py + K[1, 2] * tz) / tz
            out_conics[c, g, 0] = d / det
            out_conics[c, g, 1] = -b / det
            out_conics[c, g, 2] = a / det
            out_depths[c, g] = tz
            if degree == 0:
                for ch in range(3):
                    out_colors[c, g, ch] = max(SH_C0 * coeffs[g, 0, ch] + 0.5, 0.0)
            elif degree > 0:
                ux, uy, uz, _ = _unit_dir(m0, m1, m2, centers, c)
                bases = _sh_bases(degree, ux, uy, uz)
                for ch in range(3):
                    out_colors[c, g, ch] = max(_sh_sum(coeffs, g, ch, degree, bases) + 0.5, 0.0)
            # support box on the stored values (what the tile kernels see)
            ca, cb, cc = np.float64(out_conics[c, g, 0]), np.float64(out_conics[c, g, 1]), np.float64(out_conics[c, g, 2])
            mx, my, dz = np.float64(out_means2d[c, g, 0]), np.float64(out_means2d[c, g, 1]), np.float64(out_depths[c, g])
            cdet = ca * cc - cb * cb
            ex = np.sqrt(max(level * (cc / cdet), 0.0)) * (1.0 + 1e-4) + 1e-3
            ey = np.sqrt(max(level * (ca / cdet), 0.0)) * (1.0 + 1e-4) + 1e-3
            ok = (np.isfinite(mx) and np.isfinite(my) and np.isfinite(ca) and np.isfinite(cb) and np.isfinite(cc)
                  and np.isfinite(ex) and np.isfinite(ey) and dz > near and dz < far and cdet > 0 and level > 0
                  and mx + ex > 0 and mx - ex < width and my + ey > 0 and my - ey < height)
            out_valid[c, g] = ok
            out_extents[c, g, 0] = ex if ok else 0.0
            out_extents[c, g, 1] = ey if ok else 0.0


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def project_backward(means, quats, scales, coeffs, degree, viewmats, Ks, centers, width, height, eps2d, v_means2d,
                     v_conics, v_depths, v_colors, out_v_means, out_v_quats, out_v_scales, out_v_coeffs):
    """Gradients of the loss w.r.t. means, quats (the raw ones passed to the forward), scales and SH coeffs, summed
    over the cameras, from those w.r.t. the forward's outputs (means2d, conics, depths, colours)."""
    n_cams = viewmats.shape[0]
    n_coeffs = coeffs.shape[1]
    for g in prange(means.shape[0]):
        s0, s1, s2 = np.float64(scales[g, 0]), np.float64(scales[g, 1]), np.float64(scales[g, 2])
        w, x, y, z, n, rq, mm, sigma = _covariance(np.float64(quats[g, 0]), np.float64(quats[g, 1]),
                                                    np.float64(quats[g, 2]), np.float64(quats[g, 3]), s0, s1, s2)
        m0, m1, m2 = np.float64(means[g, 0]), np.float64(means[g, 1]), np.float64(means[g, 2])
        vm0 = vm1 = vm2 = 0.0
        vs = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        for k in range(n_coeffs):
            for ch in range(3):
                out_v_coeffs[g, k, ch] = 0.0
        for c in range(n_cams):
            K = Ks[c]
            (px, py, tz, R, sc, tx, ty, ux, uy, clamp_x, clamp_y, j00, j02, j11, j12, ca, cb,
             cd) = _project_one(m0, m1, m2, sigma, viewmats[c], K, width, height)
            # SH colours: colour = clamp_min(sum_k B_k(dir) coeff_k + 0.5, 0)
            if degree >= 0:
                if degree > 0:
                    dx, dy, dz, dn = _unit_dir(m0, m1, m2, centers, c)
                    bases = _sh_bases(degree, dx, dy, dz)
                else:
                    dx = dy = dz = dn = 0.0
                    bases = _sh_bases(0, 0.0, 0.0, 0.0)
                vc0 = _sh_channel_backward(coeffs, g, degree, 0, bases, v_colors[c, g, 0], out_v_coeffs)
                vc1 = _sh_channel_backward(coeffs, g, degree, 1, bases, v_colors[c, g, 1], out_v_coeffs)
                vc2 = _sh_channel_backward(coeffs, g, degree, 2, bases, v_colors[c, g, 2], out_v_coeffs)
                if degree > 0:
                    gx, gy, gz = _sh_grad_dir(degree, dx, dy, dz, coeffs, g, vc0, vc1, vc2)
                    dot = gx * dx + gy * dy + gz * dz  # through dir = v / |v|
                    vm0 += (gx - dx * dot) / dn
                    vm1 += (gy - dy * dot) / dn
                    vm2 += (gz - dz * dot) / dn
            a, b, d = ca + eps2d, cb, cd + eps2d
            det_raw = a * d - b * b
            det = max(det_raw, DET_MIN)
            g0, g1, g2 = v_conics[c, g, 0], v_conics[c, g, 1], v_conics[c, g, 2]
            # conic = (d, -b, a) / det -> a, b, d; det's own derivative only where it is not clamped
            va, vb, vd = g2 / det, -g1 / det, g0 / det
            if det_raw > DET_MIN:
                v_det = -(g0 * d - g1 * b + g2 * a) / (det * det)
                va += v_det * d
                vd += v_det * a
                vb -= v_det * 2.0 * b
            G00, G01, G11 = va, 0.5 * vb, vd  # dL/dcov2d, symmetric
            # J as 2x3: [[j00, 0, j02], [0, j11, j12]]
            J = (j00, 0.0, j02, 0.0, j11, j12)
            GJ = (G00 * J[0] + G01 * J[3], G00 * J[1] + G01 * J[4], G00 * J[2] + G01 * J[5],
                  G01 * J[0] + G11 * J[3], G01 * J[1] + G11 * J[4], G01 * J[2] + G11 * J[5])
            # v_sigma_c = J^T G J (3x3), v_J = 2 G J Sigma_c (2x3)
            vsc = (J[0] * GJ[0] + J[3] * GJ[3], J[0] * GJ[1] + J[3] * GJ[4], J[0] * GJ[2] + J[3] * GJ[5],
                   J[1] * GJ[0] + J[4] * GJ[3], J[1] * GJ[1] + J[4] * GJ[4], J[1] * GJ[2] + J[4] * GJ[5],
                   J[2] * GJ[0] + J[5] * GJ[3], J[2] * GJ[1] + J[5] * GJ[4], J[2] * GJ[2] + J[5] * GJ[5])
            vj00 = 2.0 * (GJ[0] * sc[0] + GJ[1] * sc[3] + GJ[2] * sc[6])
            vj02 = 2.0 * (GJ[0] * sc[2] + GJ[1] * sc[5] + GJ[2] * sc[8])
            vj11 = 2.0 * (GJ[3] * sc[1] + GJ[4] * sc[4] + GJ[5] * sc[7])
            vj12 = 2.0 * (GJ[3] * sc[2] + GJ[4] * sc[5] + GJ[5] * sc[8])
            fx, fy = K[0, 0], K[1, 1]
            tz2 = tz * tz
            v_tz = (-fx * vj00 - fy * vj11) / tz2 + 2.0 * (fx * tx * vj02 + fy * ty * vj12) / (tz2 * tz)
            v_tx = -fx * vj02 / tz2
            v_ty = -fy * vj12 / tz2
            vpx = vpy = 0.0
            if clamp_x:
                v_tz += v_tx * ux
            else:
                vpx += v_tx
            if clamp_y:
                v_tz += v_ty * uy
            else:
                vpy += v_ty
            gx, gy = v_means2d[c, g, 0], v_means2d[c, g, 1]
            num_x = K[0, 0] * px + K[0, 1] * py + K[0, 2] * tz
            num_y = K[1, 0] * px + K[1, 1] * py + K[1, 2] * tz
            vpx += (gx * K[0, 0] + gy * K[1, 0]) / tz
            vpy += (gx * K[0, 1] + gy * K[1, 1]) / tz
            v_tz += (gx * K[0, 2] + gy * K[1, 2]) / tz - (gx * num_x + gy * num_y) / tz2 + v_depths[c, g]
            vm0 += R[0] * vpx + R[3] * vpy + R[6] * v_tz
            vm1 += R[1] * vpx + R[4] * vpy + R[7] * v_tz
            vm2 += R[2] * vpx + R[5] * vpy + R[8] * v_tz
            add = _mm(_mm(_t(R), vsc), R)
            vs = (vs[0] + add[0], vs[1] + add[1], vs[2] + add[2], vs[3] + add[3], vs[4] + add[4], vs[5] + add[5],
                  vs[6] + add[6], vs[7] + add[7], vs[8] + add[8])
        # Sigma = M M^T with M = R_q S; v_sigma is symmetric: dL/dM = 2 v_sigma M
        vM = _mm(vs, mm)
        vR = (2 * vM[0] * s0, 2 * vM[1] * s1, 2 * vM[2] * s2, 2 * vM[3] * s0, 2 * vM[4] * s1, 2 * vM[5] * s2,
              2 * vM[6] * s0, 2 * vM[7] * s1, 2 * vM[8] * s2)
        out_v_scales[g, 0] = 2 * (vM[0] * rq[0] + vM[3] * rq[3] + vM[6] * rq[6])
        out_v_scales[g, 1] = 2 * (vM[1] * rq[1] + vM[4] * rq[4] + vM[7] * rq[7])
        out_v_scales[g, 2] = 2 * (vM[2] * rq[2] + vM[5] * rq[5] + vM[8] * rq[8])
        vw = 2.0 * (x * (vR[7] - vR[5]) + y * (vR[2] - vR[6]) + z * (vR[3] - vR[1]))
        vx = 2.0 * (-2.0 * x * (vR[4] + vR[8]) + y * (vR[3] + vR[1]) + z * (vR[6] + vR[2]) + w * (vR[7] - vR[5]))
        vy = 2.0 * (x * (vR[3] + vR[1]) - 2.0 * y * (vR[0] + vR[8]) + z * (vR[7] + vR[5]) + w * (vR[2] - vR[6]))
        vz = 2.0 * (x * (vR[6] + vR[2]) + y * (vR[7] + vR[5]) - 2.0 * z * (vR[0] + vR[4]) + w * (vR[3] - vR[1]))
        dot = w * vw + x * vx + y * vy + z * vz  # through the normalisation q / |q|
        out_v_quats[g, 0] = (vw - w * dot) / n
        out_v_quats[g, 1] = (vx - x * dot) / n
        out_v_quats[g, 2] = (vy - y * dot) / n
        out_v_quats[g, 3] = (vz - z * dot) / n
        out_v_means[g, 0] = vm0
        out_v_means[g, 1] = vm1
        out_v_means[g, 2] = vm2


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, coeffs, opacities, degree: int, viewmats, Ks, centers, width: int,
                height: int, eps2d: float, near: float, far: float):
        from splat4d.render.cpu import FOREGROUND, wait_for_background

        wait_for_background(FOREGROUND)
        n_cams, n = viewmats.shape[0], means.shape[0]
        dtype = means.dtype
        means2d = torch.empty(n_cams, n, 2, dtype=dtype)
        conics = torch.empty(n_cams, n, 3, dtype=dtype)
        depths = torch.empty(n_cams, n, dtype=dtype)
        colors = torch.empty(n_cams, n, 3, dtype=dtype) if degree >= 0 else torch.empty(0, 0, 3, dtype=dtype)
        extents = torch.empty(n_cams, n, 2, dtype=dtype)
        valid = torch.empty(n_cams, n, dtype=torch.bool)
        project_forward(_np(means), _np(quats), _np(scales), _np(opacities), _np(coeffs), degree, _np(viewmats),
                        _np(Ks), _np(centers), float(width), float(height), float(eps2d), float(near), float(far),
                        np.empty((0, 9)), np.empty(0), means2d.numpy(), conics.numpy(), depths.numpy(), colors.numpy(), extents.numpy(),
                        valid.numpy())
        ctx.save_for_backward(means, quats, scales, coeffs, viewmats, Ks, centers)
        ctx.size = (width, height, eps2d, degree)
        ctx.mark_non_differentiable(extents, valid)
        return means2d, conics, depths, colors, extents, valid

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, v_colors, _v_extents, _v_valid):
        from splat4d.render.cpu import wait_for_background

        wait_for_background()
        means, quats, scales, coeffs, viewmats, Ks, centers = ctx.saved_tensors
        width, height, eps2d, degree = ctx.size
        dtype = means.dtype
        zeros = lambda t, shape: torch.zeros(shape, dtype=dtype) if t is None else t.to(dtype)  # noqa: E731
        n_cams, n = viewmats.shape[0], means.shape[0]
        v_means2d = zeros(v_means2d, (n_cams, n, 2))
        v_conics = zeros(v_conics, (n_cams, n, 3))
        v_depths = zeros(v_depths, (n_cams, n))
        v_colors = zeros(v_colors, (n_cams, n, 3) if degree >= 0 else (0, 0, 3))
        v_means = torch.empty(n, 3, dtype=dtype)
        v_quats = torch.empty(n, 4, dtype=dtype)
        v_scales = torch.empty(n, 3, dtype=dtype)
        v_coeffs = torch.empty(coeffs.shape, dtype=dtype)
        project_backward(_np(means), _np(quats), _np(scales), _np(coeffs), degree, _np(viewmats), _np(Ks),
                         _np(centers), float(width), float(height), float(eps2d), _np(v_means2d), _np(v_conics),
                         _np(v_depths), _np(v_colors), v_means.numpy(), v_quats.numpy(), v_scales.numpy(),
                         v_coeffs.numpy())
        return (v_means, v_quats, v_scales, v_coeffs if degree >= 0 else None, None, None, None, None, None, None,
                None, None, None, None)


def project_full(means: Tensor, quats: Tensor, scales: Tensor, coeffs: Tensor, opacities: Tensor, degree: int,
                 viewmats: Tensor, Ks: Tensor, centers: Tensor, width: int, height: int, eps2d: float = 0.3,
                 near: float = 0.01, far: float = 1e10):
    """One fused pass per Gaussian: ``(means2d (C, N, 2), conics (C, N, 3), depths (C, N), colors (C, N, 3),
    extents (C, N, 2), valid (C, N))``. ``coeffs`` (N, K, 3) SH coefficients evaluated to degree ``degree`` from the
    camera ``centers`` (C, 3) as ``clamp_min(SH + 0.5, 0)`` (gsplat's bases); ``degree`` -1 skips the colours
    (an empty tensor is returned). ``opacities`` (N,) activated, for the support boxes (``extents``, ``valid``: the
    values of :func:`splat4d.render.projection.support_extents`, not differentiable). Differentiable w.r.t. means,
    quats, activated scales and coeffs (not the cameras). CPU tensors, float32 or float64."""
    dtype = means.dtype
    return _Project.apply(means, quats, scales, coeffs.to(dtype), opacities.detach().to(dtype), int(degree),
                          viewmats.to(dtype), Ks.to(dtype), centers.to(dtype), width, height, eps2d, near, far)


def project_gaussians(means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor, width: int,
                      height: int, eps2d: float = 0.3) -> tuple[Tensor, Tensor, Tensor]:
    """(means2d (C, N, 2), conics (C, N, 3), depths (C, N)) of Gaussians with ``means`` (N, 3), ``quats`` (N, 4,
    any norm), activated ``scales`` (N, 3) in cameras ``viewmats`` (C, 4, 4) world-to-camera and ``Ks`` (C, 3, 3);
    differentiable w.r.t. means, quats and scales (not the cameras). CPU tensors, float32 or float64."""
    n, dtype = means.shape[0], means.dtype
    out = project_full(means, quats, scales, means.new_zeros(n, 1, 3), means.new_ones(n), -1, viewmats, Ks,
                       viewmats.new_zeros(viewmats.shape[0], 3), width, height, eps2d)
    return out[0], out[1], out[2]

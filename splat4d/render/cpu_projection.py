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


@njit(parallel=True, cache=True, nogil=True)
def project_forward(means, quats, scales, viewmats, Ks, width, height, eps2d, out_means2d, out_conics, out_depths):
    """means (N, 3), quats (N, 4), scales (N, 3), viewmats (C, 4, 4), Ks (C, 3, 3) ->
    out_means2d (C, N, 2), out_conics (C, N, 3), out_depths (C, N)."""
    n_cams = viewmats.shape[0]
    for g in prange(means.shape[0]):
        sigma = _covariance(np.float64(quats[g, 0]), np.float64(quats[g, 1]), np.float64(quats[g, 2]),
                            np.float64(quats[g, 3]), np.float64(scales[g, 0]), np.float64(scales[g, 1]),
                            np.float64(scales[g, 2]))[7]
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


@njit(parallel=True, cache=True, nogil=True)
def project_backward(means, quats, scales, viewmats, Ks, width, height, eps2d, v_means2d, v_conics, v_depths,
                     out_v_means, out_v_quats, out_v_scales):
    """Gradients of the loss w.r.t. means, quats (the raw ones passed to the forward) and scales, summed over the
    cameras, from those w.r.t. the forward's three outputs."""
    n_cams = viewmats.shape[0]
    for g in prange(means.shape[0]):
        s0, s1, s2 = np.float64(scales[g, 0]), np.float64(scales[g, 1]), np.float64(scales[g, 2])
        w, x, y, z, n, rq, mm, sigma = _covariance(np.float64(quats[g, 0]), np.float64(quats[g, 1]),
                                                    np.float64(quats[g, 2]), np.float64(quats[g, 3]), s0, s1, s2)
        m0, m1, m2 = np.float64(means[g, 0]), np.float64(means[g, 1]), np.float64(means[g, 2])
        vm0 = vm1 = vm2 = 0.0
        vs = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        for c in range(n_cams):
            K = Ks[c]
            (px, py, tz, R, sc, tx, ty, ux, uy, clamp_x, clamp_y, j00, j02, j11, j12, ca, cb,
             cd) = _project_one(m0, m1, m2, sigma, viewmats[c], K, width, height)
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
    def forward(ctx, means, quats, scales, viewmats, Ks, width: int, height: int, eps2d: float):
        n_cams, n = viewmats.shape[0], means.shape[0]
        dtype = means.dtype
        means2d = torch.empty(n_cams, n, 2, dtype=dtype)
        conics = torch.empty(n_cams, n, 3, dtype=dtype)
        depths = torch.empty(n_cams, n, dtype=dtype)
        project_forward(_np(means), _np(quats), _np(scales), _np(viewmats), _np(Ks), float(width), float(height),
                        float(eps2d), means2d.numpy(), conics.numpy(), depths.numpy())
        ctx.save_for_backward(means, quats, scales, viewmats, Ks)
        ctx.size = (width, height, eps2d)
        return means2d, conics, depths

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths):
        means, quats, scales, viewmats, Ks = ctx.saved_tensors
        width, height, eps2d = ctx.size
        dtype = means.dtype
        zeros = lambda t, shape: torch.zeros(shape, dtype=dtype) if t is None else t.to(dtype)  # noqa: E731
        n_cams, n = viewmats.shape[0], means.shape[0]
        v_means2d = zeros(v_means2d, (n_cams, n, 2))
        v_conics = zeros(v_conics, (n_cams, n, 3))
        v_depths = zeros(v_depths, (n_cams, n))
        v_means = torch.empty(n, 3, dtype=dtype)
        v_quats = torch.empty(n, 4, dtype=dtype)
        v_scales = torch.empty(n, 3, dtype=dtype)
        project_backward(_np(means), _np(quats), _np(scales), _np(viewmats), _np(Ks), float(width), float(height),
                         float(eps2d), _np(v_means2d), _np(v_conics), _np(v_depths), v_means.numpy(),
                         v_quats.numpy(), v_scales.numpy())
        return v_means, v_quats, v_scales, None, None, None, None, None


def project_gaussians(means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor, width: int,
                      height: int, eps2d: float = 0.3) -> tuple[Tensor, Tensor, Tensor]:
    """(means2d (C, N, 2), conics (C, N, 3), depths (C, N)) of Gaussians with ``means`` (N, 3), ``quats`` (N, 4,
    any norm), activated ``scales`` (N, 3) in cameras ``viewmats`` (C, 4, 4) world-to-camera and ``Ks`` (C, 3, 3);
    differentiable w.r.t. means, quats and scales (not the cameras). CPU tensors, float32 or float64."""
    return _Project.apply(means, quats, scales, viewmats.to(means.dtype), Ks.to(means.dtype), width, height, eps2d)

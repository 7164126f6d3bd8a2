"""Numba tile kernels for 2D Gaussian compositing on the CPU (forward and backward).

Layout (gsplat's): the padded image of every camera is cut into ``tile x tile`` pixel tiles; ``tile_offsets[t] ..
tile_offsets[t+1]`` index the (tile, Gaussian) pairs of tile ``t`` in ``flat_ids``, sorted front to back. One thread
works on one tile; the inner loop runs over the tile's pixels, branch-free, so LLVM vectorises it (see
shared/notes/cpu-rasterizer.md for the measurements behind these choices).

Per pixel and Gaussian ``g`` (identical to gsplat's CUDA kernel):
    sigma = 0.5 * (a dx^2 + c dy^2) + b dx dy,  dx = mean_x - px,  px = pixel centre (x + 0.5)
    alpha = min(0.999, opacity * exp(-sigma));   skipped when sigma < 0 or alpha < 1/255
    the pixel stops (without this Gaussian) once T * (1 - alpha) <= 1e-4
Every Gaussian carries four features (r, g, b, depth) so one pass gives colour and expected depth.

Backward walks each tile back to front from the saved final transmittance and index of the last contributing pair,
recovering T by dividing by (1 - alpha). Gradients are written per pair (no atomics) and summed per Gaussian by the
caller with ``index_add_``: deterministic for any thread count.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

ALPHA_MIN = np.float32(1.0 / 255.0)
ALPHA_MAX = np.float32(0.999)
T_MIN = np.float32(1e-4)


LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


@intrinsic
def _pow2i(typingctx, n):
    """2.0 ** n as float32 for an int32 n in [-126, 127]: n + 127 shifted into the exponent bits (vectorises)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        bits = builder.shl(builder.add(args[0], ir.Constant(ir.IntType(32), 127)), ir.Constant(ir.IntType(32), 23))
        return builder.bitcast(bits, ir.FloatType())

    return sig, codegen


def _exp_neg(sigma):
    """exp(-max(sigma, 0)); numba implementation below."""
    raise NotImplementedError("numba only")


@overload(_exp_neg, inline="always", fastmath=True)
def _exp_neg_numba(sigma):
    """float32: exp(-sigma) = 2^n 2^f with n = round(-sigma log2 e) (clamped at -30: alpha is far below 1/255 there)
    and |f| <= 1/2, 2^f = exp(f ln 2) by its degree-6 Taylor polynomial, 2^n put into the exponent bits: branch-free
    and vectorised, about half the operations of the previous (Taylor_7(-sigma/16))^16, relative error 4.4e-7
    (was 1.6e-6) for sigma <= ln 255 (beyond, alpha < 1/255 is discarded). float64 (gradcheck): np.exp."""
    if sigma == types.float32:
        def impl(sigma):
            x = max(sigma * np.float32(-LOG2E), np.float32(-30.0))
            n = np.floor(x + np.float32(0.5))
            f = (x - n) * np.float32(LN2)
            p = np.float32(1.0) + f * (np.float32(1.0) + f * (np.float32(0.5) + f * (np.float32(1.0 / 6.0) + f * (
                np.float32(1.0 / 24.0) + f * (np.float32(1.0 / 120.0) + f * np.float32(1.0 / 720.0))))))
            return p * _pow2i(np.int32(n))
        return impl

    def impl64(sigma):
        return np.exp(-max(sigma, sigma * 0.0))
    return impl64


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def rasterize_forward(
    tile_offsets,  # (n_tiles + 1,) int64
    flat_ids,  # (M,) int64, index into the flattened (C*N) Gaussian arrays
    means2d,  # (C*N, 2) float32
    conics,  # (C*N, 3) float32
    feats,  # (C*N, 4) float32
    opacities,  # (C*N,) float32
    tile,  # int
    tiles_x,  # int
    tiles_y,  # int
    out_feats,  # (C, tiles_y*tile, tiles_x*tile, 4) float32
    out_T,  # (C, tiles_y*tile, tiles_x*tile) float32
    out_last,  # (C, tiles_y*tile, tiles_x*tile) int32, -1 where nothing contributed
):
    dt = means2d.dtype  # float32 in production, float64 for gradcheck
    n_px = tile * tile
    tiles_per_image = tiles_x * tiles_y
    n_tiles = tile_offsets.shape[0] - 1
    for t in prange(n_tiles):
        img = t // tiles_per_image
        local = t - img * tiles_per_image
        ty = local // tiles_x
        tx = local - ty * tiles_x
        px = np.empty(n_px, dt)
        py = np.empty(n_px, dt)
        for p in range(n_px):
            px[p] = np.float32(tx * tile + p % tile) + np.float32(0.5)
            py[p] = np.float32(ty * tile + p // tile) + np.float32(0.5)
        T = np.ones(n_px, dt)
        f0 = np.zeros(n_px, dt)
        f1 = np.zeros(n_px, dt)
        f2 = np.zeros(n_px, dt)
        f3 = np.zeros(n_px, dt)
        last = np.full(n_px, -1, np.int32)  # int32 keeps the loop's lanes as wide as float32
        start = tile_offsets[t]
        end = tile_offsets[t + 1]
        for k in range(start, end):
            g = flat_ids[k]
            mx = means2d[g, 0]
            my = means2d[g, 1]
            ca = conics[g, 0]
            cb = conics[g, 1]
            cc = conics[g, 2]
            op = opacities[g]
            c0 = feats[g, 0]
            c1 = feats[g, 1]
            c2 = feats[g, 2]
            c3 = feats[g, 3]
            for p in range(n_px):
                dx = mx - px[p]
                dy = my - py[p]
                sigma = np.float32(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                alpha = min(ALPHA_MAX, op * _exp_neg(sigma))
                tp = T[p]  # negative once the pixel stopped (its T is -tp): no separate flag to load and store
                ok = (sigma >= np.float32(0.0)) & (alpha >= ALPHA_MIN) & (tp > np.float32(0.0))
                next_t = tp * (np.float32(1.0) - alpha)
                inc = ok & (next_t > T_MIN)
                w = alpha * tp if inc else np.float32(0.0)
                f0[p] += w * c0
                f1[p] += w * c1
                f2[p] += w * c2
                f3[p] += w * c3
                T[p] = next_t if inc else (-tp if ok else tp)  # ok and not inc: stops before this Gaussian
                last[p] = np.int32(k) if inc else last[p]
            if (k - start) % 32 == 31:
                alive = 0
                for p in range(n_px):
                    alive += T[p] > np.float32(0.0)
                if alive == 0:
                    break
        for p in range(n_px):
            y = ty * tile + p // tile
            x = tx * tile + p % tile
            out_feats[img, y, x, 0] = f0[p]
            out_feats[img, y, x, 1] = f1[p]
            out_feats[img, y, x, 2] = f2[p]
            out_feats[img, y, x, 3] = f3[p]
            out_T[img, y, x] = abs(T[p])
            out_last[img, y, x] = last[p]


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def rasterize_backward(
    tile_offsets,
    flat_ids,
    means2d,
    conics,
    feats,
    opacities,
    tile,
    tiles_x,
    tiles_y,
    final_T,  # (C, Hp, Wp) float32
    last_ids,  # (C, Hp, Wp) int32
    grad_feats,  # (C, Hp, Wp, 4) float32: dL/d(accumulated features)
    grad_alpha,  # (C, Hp, Wp) float32: dL/d(alpha), alpha = 1 - final_T
    pair_grads,  # (M, 10) out: d/d(mean x, mean y, conic a, b, c, r, g, b, depth, opacity) per pair
):
    """Per pixel p and pair (walking back to front), with g_f = dL/dfeat_f(p), S(p) = sum over the pairs behind
    of w f.g (one scalar: the four feature sums are only ever needed dotted with g) and G(p) = dL/dalpha_p T_final:
        dL/dalpha = T_before (c.g) - (S - G) / (1 - alpha),   dL/dc = w g,   w = alpha T_before
    and through alpha = opacity exp(-sigma) (unclamped): dL/dsigma = -alpha dL/dalpha,
    dL/dopacity = alpha dL/dalpha / opacity; the mean and conic gradients are sums of dL/dsigma dx, dL/dsigma dy
    (and their products), combined with the conic once per pair."""
    dt = means2d.dtype  # float32 in production, float64 for gradcheck
    n_px = tile * tile
    tiles_per_image = tiles_x * tiles_y
    n_tiles = tile_offsets.shape[0] - 1
    for t in prange(n_tiles):
        start = tile_offsets[t]
        end = tile_offsets[t + 1]
        if end == start:
            continue
        img = t // tiles_per_image
        local = t - img * tiles_per_image
        ty = local // tiles_x
        tx = local - ty * tiles_x
        px = np.empty(n_px, dt)
        py = np.empty(n_px, dt)
        T = np.empty(n_px, dt)
        G = np.empty(n_px, dt)
        lastk = np.empty(n_px, np.int32)
        gf0 = np.empty(n_px, dt)
        gf1 = np.empty(n_px, dt)
        gf2 = np.empty(n_px, dt)
        gf3 = np.empty(n_px, dt)
        S = np.zeros(n_px, dt)
        kmax = start - 1
        for p in range(n_px):
            y = ty * tile + p // tile
            x = tx * tile + p % tile
            px[p] = np.float32(x) + np.float32(0.5)
            py[p] = np.float32(y) + np.float32(0.5)
            T[p] = final_T[img, y, x]
            G[p] = grad_alpha[img, y, x] * final_T[img, y, x]
            lastk[p] = last_ids[img, y, x]
            gf0[p] = grad_feats[img, y, x, 0]
            gf1[p] = grad_feats[img, y, x, 1]
            gf2[p] = grad_feats[img, y, x, 2]
            gf3[p] = grad_feats[img, y, x, 3]
            kmax = max(kmax, np.int64(lastk[p]))
        for k in range(kmax + 1, end):  # behind every pixel's last contribution: no gradient
            for j in range(10):
                pair_grads[k, j] = 0.0
        for k in range(kmax, start - 1, -1):
            g = flat_ids[k]
            mx = means2d[g, 0]
            my = means2d[g, 1]
            ca = conics[g, 0]
            cb = conics[g, 1]
            cc = conics[g, 2]
            op = opacities[g]
            c0 = feats[g, 0]
            c1 = feats[g, 1]
            c2 = feats[g, 2]
            c3 = feats[g, 3]
            k32 = np.int32(k)  # compared with the int32 last index: keeps the loop's lanes 32 bits wide
            zero = mx * np.float32(0.0)  # typed like the inputs
            acc_sx = zero  # sum of alpha dL/dalpha dx
            acc_sy = zero
            acc_xx = zero
            acc_xy = zero
            acc_yy = zero
            acc_sa = zero  # sum of alpha dL/dalpha
            acc_f0 = zero
            acc_f1 = zero
            acc_f2 = zero
            acc_f3 = zero
            for p in range(n_px):
                dx = mx - px[p]
                dy = my - py[p]
                sigma = np.float32(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                raw = op * _exp_neg(sigma)
                alpha = min(ALPHA_MAX, raw)
                ok = (k32 <= lastk[p]) & (sigma >= np.float32(0.0)) & (alpha >= ALPHA_MIN)
                ra = np.float32(1.0) / (np.float32(1.0) - alpha)
                t_before = T[p] * ra
                w = alpha * t_before if ok else np.float32(0.0)
                g0 = gf0[p]
                g1 = gf1[p]
                g2 = gf2[p]
                g3 = gf3[p]
                acc_f0 += w * g0
                acc_f1 += w * g1
                acc_f2 += w * g2
                acc_f3 += w * g3
                cg = c0 * g0 + c1 * g1 + c2 * g2 + c3 * g3
                sp = S[p]
                v_alpha = t_before * cg - (sp - G[p]) * ra
                sa = alpha * v_alpha if (ok & (raw <= ALPHA_MAX)) else np.float32(0.0)
                S[p] = sp + w * cg
                T[p] = t_before if ok else T[p]
                acc_sa += sa
                vx = sa * dx
                vy = sa * dy
                acc_sx += vx
                acc_sy += vy
                acc_xx += vx * dx
                acc_xy += vx * dy
                acc_yy += vy * dy
            # dL/dsigma = -sa; sigma = (a dx^2 + c dy^2) / 2 + b dx dy, dx = mean_x - pixel_x
            pair_grads[k, 0] = -(ca * acc_sx + cb * acc_sy)
            pair_grads[k, 1] = -(cb * acc_sx + cc * acc_sy)
            pair_grads[k, 2] = -np.float32(0.5) * acc_xx
            pair_grads[k, 3] = -acc_xy
            pair_grads[k, 4] = -np.float32(0.5) * acc_yy
            pair_grads[k, 5] = acc_f0
            pair_grads[k, 6] = acc_f1
            pair_grads[k, 7] = acc_f2
            pair_grads[k, 8] = acc_f3
            pair_grads[k, 9] = acc_sa / op


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def render_rgb(
    tile_offsets,  # (n_tiles + 1,) int64, one camera
    flat_ids,  # (M,) int64
    means2d,  # (N, 2)
    conics,  # (N, 3)
    colors,  # (N, 3)
    opacities,  # (N,)
    tile,
    tiles_x,
    tiles_y,
    background,  # (3,)
    out_rgb,  # (H, W, 3) out: clamp(colour + T * background, 0, 1)
):
    """Forward-only compositing of one image for videos and viewers: the maths of :func:`rasterize_forward` (same
    order, same early stop) without the state the backward pass needs (final T, last index, depth), the background
    composited and the result clamped to [0, 1] in place."""
    dt = means2d.dtype
    n_px = tile * tile
    height, width = out_rgb.shape[0], out_rgb.shape[1]
    for t in prange(tiles_x * tiles_y):
        ty = t // tiles_x
        tx = t - ty * tiles_x
        px = np.empty(n_px, dt)
        py = np.empty(n_px, dt)
        for p in range(n_px):
            px[p] = np.float32(tx * tile + p % tile) + np.float32(0.5)
            py[p] = np.float32(ty * tile + p // tile) + np.float32(0.5)
        T = np.ones(n_px, dt)  # negative once the pixel stopped, as in rasterize_forward
        f0 = np.zeros(n_px, dt)
        f1 = np.zeros(n_px, dt)
        f2 = np.zeros(n_px, dt)
        start = tile_offsets[t]
        end = tile_offsets[t + 1]
        for k in range(start, end):
            g = flat_ids[k]
            mx = means2d[g, 0]
            my = means2d[g, 1]
            ca = conics[g, 0]
            cb = conics[g, 1]
            cc = conics[g, 2]
            op = opacities[g]
            c0 = colors[g, 0]
            c1 = colors[g, 1]
            c2 = colors[g, 2]
            for p in range(n_px):
                dx = mx - px[p]
                dy = my - py[p]
                sigma = np.float32(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                alpha = min(ALPHA_MAX, op * _exp_neg(sigma))
                tp = T[p]
                ok = (sigma >= np.float32(0.0)) & (alpha >= ALPHA_MIN) & (tp > np.float32(0.0))
                next_t = tp * (np.float32(1.0) - alpha)
                inc = ok & (next_t > T_MIN)
                w = alpha * tp if inc else np.float32(0.0)
                f0[p] += w * c0
                f1[p] += w * c1
                f2[p] += w * c2
                T[p] = next_t if inc else (-tp if ok else tp)
            if (k - start) % 32 == 31:
                alive = 0
                for p in range(n_px):
                    alive += T[p] > np.float32(0.0)
                if alive == 0:
                    break
        for p in range(n_px):
            T[p] = abs(T[p])
        for p in range(n_px):
            y = ty * tile + p // tile
            x = tx * tile + p % tile
            if y < height and x < width:
                out_rgb[y, x, 0] = min(max(f0[p] + T[p] * background[0], np.float32(0.0)), np.float32(1.0))
                out_rgb[y, x, 1] = min(max(f1[p] + T[p] * background[1], np.float32(0.0)), np.float32(1.0))
                out_rgb[y, x, 2] = min(max(f2[p] + T[p] * background[2], np.float32(0.0)), np.float32(1.0))


@njit(cache=True, nogil=True)
def sort_valid(valid, depths, n):
    """The valid entries of the flattened (C*N,) ``valid`` / float32 ``depths`` (positive where valid) and their
    stable order by (camera = index // n, depth): ``(flat_valid, order)``, ``flat_valid[order]`` front to back per
    camera, ties in index order -- what a stable sort of ``camera << 32 | depth bits`` gives (positive float32
    depths order like their int32 bit patterns). An LSD radix sort on 8-bit digits that skips the digits all keys
    share (the camera's, for one camera): O(N) per pass, serial (a parallel sort cost more than it saved at 50k)."""
    total = valid.shape[0]
    m = 0
    for i in range(total):
        if valid[i]:
            m += 1
    flat_valid = np.empty(m, np.int64)
    keys = np.empty(m, np.uint64)
    bits = depths.view(np.uint32)
    j = 0
    for i in range(total):
        if valid[i]:
            flat_valid[j] = i
            keys[j] = (np.uint64(i // n) << np.uint64(32)) | np.uint64(bits[i])
            j += 1
    order = np.arange(m)
    tmp = np.empty(m, np.int64)
    count = np.zeros(257, np.int64)
    for shift in range(0, 64, 8):
        sh = np.uint64(shift)
        count[:] = 0
        for k in range(m):
            count[((keys[order[k]] >> sh) & np.uint64(255)) + 1] += 1
        if m == 0 or count[((keys[0] >> sh) & np.uint64(255)) + 1] == m:
            continue  # every key has this digit: the pass would not move anything
        for d in range(256):
            count[d + 1] += count[d]
        for k in range(m):
            d = (keys[order[k]] >> sh) & np.uint64(255)
            tmp[count[d]] = order[k]
            count[d] += 1
        order, tmp = tmp, order
    return flat_valid, order


@njit(parallel=True, cache=True, nogil=True)
def bin_boxes(order, flat_valid, means2d, extents, n, tile, tiles_x, tiles_y, n_tiles, tile_offsets, n_threads):
    """The whole CPU binning after the depth sort: ``flat_valid[order]`` lists the valid Gaussians (indices into
    the flattened (C*N, 2) ``means2d`` / ``extents``) front to back. Computes each one's tile box like
    :func:`splat4d.render.binning.bin_gaussians` (float32 ``floor((mean -+ extent) / tile)``, clamped to the
    image), counts the pairs per tile, fills ``tile_offsets`` (n_tiles + 1,) and returns the (M,) flat ids sorted
    by tile, then front to back: a counting sort (O(M), no comparison sort of the pairs), reading each Gaussian's
    box once, in sorted order. Parallel over ``n_threads`` contiguous chunks of the sorted list: each chunk counts
    its pairs per tile and writes them after the earlier chunks' pairs of that tile, so the result is the serial
    one for any thread count (deterministic, tested)."""
    m = order.shape[0]
    tiles_per_image = tiles_x * tiles_y
    ids = np.empty(m, np.int64)
    bx0 = np.empty(m, np.int32)
    bx1 = np.empty(m, np.int32)
    by0 = np.empty(m, np.int32)
    by1 = np.empty(m, np.int32)
    base = np.empty(m, np.int64)
    tf = np.float32(tile)
    xmax = np.float32(tiles_x - 1)
    ymax = np.float32(tiles_y - 1)
    zero = np.float32(0.0)
    n_chunks = max(1, min(n_threads, m // 4096))
    counts = np.zeros((n_chunks, n_tiles), np.int64)
    for c in prange(n_chunks):
        for j in range(c * m // n_chunks, (c + 1) * m // n_chunks):
            f = flat_valid[order[j]]
            mx = np.float32(means2d[f, 0])
            my = np.float32(means2d[f, 1])
            ex = np.float32(extents[f, 0])
            ey = np.float32(extents[f, 1])
            x0 = np.int32(min(max(np.floor((mx - ex) / tf), zero), xmax))
            x1 = np.int32(min(max(np.floor((mx + ex) / tf), zero), xmax))
            y0 = np.int32(min(max(np.floor((my - ey) / tf), zero), ymax))
            y1 = np.int32(min(max(np.floor((my + ey) / tf), zero), ymax))
            b = (f // n) * tiles_per_image
            ids[j] = f
            bx0[j] = x0
            bx1[j] = x1
            by0[j] = y0
            by1[j] = y1
            base[j] = b
            for ty in range(y0, y1 + 1):
                row = b + ty * tiles_x
                for tx in range(x0, x1 + 1):
                    counts[c, row + tx] += 1
    tile_offsets[0] = 0
    for t in range(n_tiles):
        total = 0
        for c in range(n_chunks):
            total += counts[c, t]
        tile_offsets[t + 1] = tile_offsets[t] + total
    fill = np.empty((n_chunks, n_tiles), np.int64)  # where chunk c writes its next pair of tile t
    for t in range(n_tiles):
        pos = tile_offsets[t]
        for c in range(n_chunks):
            fill[c, t] = pos
            pos += counts[c, t]
    flat_ids = np.empty(tile_offsets[n_tiles], np.int64)
    for c in prange(n_chunks):
        for j in range(c * m // n_chunks, (c + 1) * m // n_chunks):
            f = ids[j]
            for ty in range(by0[j], by1[j] + 1):
                row = base[j] + ty * tiles_x
                for tx in range(bx0[j], bx1[j] + 1):
                    t = row + tx
                    flat_ids[fill[c, t]] = f
                    fill[c, t] += 1
    return flat_ids


@njit(cache=True, nogil=True)
def sum_pairs(flat_ids, pair_grads, out):
    """out[flat_ids[k]] += pair_grads[k] for every pair, in pair order (serial: deterministic, no atomics); ``out``
    (C*N, 10) zeroed by the caller. torch's ``index_add_`` did this 5-10x slower."""
    n_cols = pair_grads.shape[1]
    for k in range(flat_ids.shape[0]):
        g = flat_ids[k]
        for j in range(n_cols):
            out[g, j] += pair_grads[k, j]

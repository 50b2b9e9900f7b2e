"""Compiled per-track kernels for the hot path: Kalman predict and update, box IoU and conversion.

With tens of tracks a step costs what its numpy calls cost, not what its arithmetic costs (a
Joseph-form update of 100 box tracks is ~60 k flops, ~30 numpy calls of 2-4 µs each). These
kernels do the same arithmetic in one compiled call over all tracks (numba, no Python per
track). They are compiled for their exact signatures when this module is imported, and cached
on disk, so the first ``Tracker.step`` never waits for a compiler (a real-time loop must not).

Each loop is written to be read against the equations it implements; ``fastmath`` stays off so
results are IEEE-exact and the same on every run.
"""

from __future__ import annotations

from typing import Any

import llvmlite.ir
import numba as nb
import numba.extending
import numpy as np


def compiled(signature: Any) -> Any:
    """Decorator: compile for exactly ``signature`` now (cached on disk), IEEE-exact; a division
    by zero gives inf/NaN as in numpy instead of raising (``error_model="numpy"``)."""
    return nb.njit(signature, cache=True, nogil=True, fastmath=False, boundscheck=False,
                   error_model="numpy")


# Signature types shared by every compiled kernel in the project (safety's kernels use them too):
# outputs (F*) are fresh C-contiguous arrays; inputs (IN*, IIN* int64, BIN* bool) any layout,
# read-only or not (a tracker publishes its state arrays read-only)
F1 = nb.float64[::1]
F2 = nb.float64[:, ::1]
F3 = nb.float64[:, :, ::1]
IN2 = nb.types.Array(nb.float64, 2, "A", readonly=True)
IN3 = nb.types.Array(nb.float64, 3, "A", readonly=True)
IN1 = nb.types.Array(nb.float64, 1, "A", readonly=True)
IIN1 = nb.types.Array(nb.int64, 1, "A", readonly=True)
BIN1 = nb.types.Array(nb.bool_, 1, "A", readonly=True)
BIN2 = nb.types.Array(nb.bool_, 2, "A", readonly=True)


def _fma_typer(typingctx: object, a: object, b: object, c: object) -> object:
    """a·b + c rounded once (LLVM's fma), for compiled code."""
    sig = nb.float64(nb.float64, nb.float64, nb.float64)

    def codegen(context: object, builder: object, signature: object, args: object) -> object:
        dbl = llvmlite.ir.DoubleType()
        fnty = llvmlite.ir.FunctionType(dbl, [dbl, dbl, dbl])
        fn = builder.module.declare_intrinsic("llvm.fma", [dbl], fnty)  # type: ignore[attr-defined]
        return builder.call(fn, args)  # type: ignore[attr-defined]

    return sig, codegen


#: a·b + c with one rounding (LLVM's fma intrinsic), callable from compiled code
fma: Any = nb.extending.intrinsic(_fma_typer)


@compiled(nb.types.Tuple((nb.int64[::1], nb.int64[:, ::1]))(IN2))
def _nonzero_columns(A):
    """Per row of A, the count and the column indices of its non-zero entries."""
    rows, cols = A.shape
    nnz = np.zeros(rows, np.int64)
    col = np.zeros((rows, cols), np.int64)
    for i in range(rows):
        for k in range(cols):
            if A[i, k] != 0.0:
                col[i, nnz[i]] = k
                nnz[i] += 1
    return nnz, col


@nb.njit(cache=True, nogil=True, fastmath=False, boundscheck=False, error_model="numpy")
def _kf_predict_body(x, P, F, Q):
    """x ← F x, P ← F P Fᵀ + Q for every track; P's result exactly symmetric.

    Works tracks-last (every innermost loop runs over the tracks, contiguous, so the compiler
    vectorises it) and skips F's zeros (10 of the box model's 49 entries are non-zero).
    """
    n, dx = x.shape
    nnz, col = _nonzero_columns(F)
    Pt = np.empty((dx, dx, n))
    for t in range(n):
        for k in range(dx):
            for m in range(dx):
                Pt[k, m, t] = P[t, k, m]
    x2 = np.empty((n, dx))
    for t in range(n):
        for i in range(dx):
            s = 0.0
            for q in range(nnz[i]):
                s += F[i, col[i, q]] * x[t, col[i, q]]
            x2[t, i] = s
    T = np.zeros((dx, dx, n))  # T = P Fᵀ: T[k, j] = Σ_m P[k, m] F[j, m]
    for k in range(dx):
        for j in range(dx):
            for q in range(nnz[j]):
                m = col[j, q]
                f = F[j, m]
                for t in range(n):
                    T[k, j, t] += Pt[k, m, t] * f
    U = np.zeros((dx, dx, n))  # U = F T = F P Fᵀ
    for i in range(dx):
        for j in range(dx):
            for q in range(nnz[i]):
                k = col[i, q]
                f = F[i, k]
                for t in range(n):
                    U[i, j, t] += f * T[k, j, t]
    P2 = np.empty((n, dx, dx))
    for t in range(n):
        for i in range(dx):
            for j in range(i, dx):
                v = 0.5 * (U[i, j, t] + U[j, i, t]) + 0.5 * (Q[i, j] + Q[j, i])
                P2[t, i, j] = v
                P2[t, j, i] = v
    return x2, P2


@compiled(nb.types.Tuple((F2, F3))(IN2, IN3, IN2, IN2))
def kf_predict_kernel(x, P, F, Q):
    """x ← F x, P ← F P Fᵀ + Q for every track; P's result exactly symmetric (see
    ``_kf_predict_body``)."""
    return _kf_predict_body(x, P, F, Q)


@nb.njit(cache=True, nogil=True, fastmath=False, boundscheck=False, error_model="numpy")
def _kf_update_body(x, P, z, R, H):
    """Joseph-form update of track t with measurement row t, for every track.

    The equations of filterpy's ``KalmanFilter.update``: y = z − H x, S = H P Hᵀ + R,
    S⁻¹ by Gauss-Jordan elimination (S is symmetric positive definite: no pivoting; a singular
    S gives non-finite values, never a silent answer), K = P Hᵀ S⁻¹, x' = x + K y,
    P' = (I − K H) P (I − K H)ᵀ + K R Kᵀ, evaluated as M = P − K (H P), P' = M + (K R − M Hᵀ) Kᵀ
    and symmetrised. Tracks-last inside (vectorised over tracks); H's zeros are skipped.
    Returns x', P', y, S and the NIS yᵀ S⁻¹ y.
    """
    n, dx = x.shape
    dz = H.shape[0]
    nnz, col = _nonzero_columns(H)
    Pt = np.empty((dx, dx, n))
    xt = np.empty((dx, n))
    yt = np.empty((dz, n))  # z here, y = z − H x below
    Rt = np.empty((dz, dz, n))
    for t in range(n):
        for i in range(dx):
            xt[i, t] = x[t, i]
            for j in range(dx):
                Pt[i, j, t] = P[t, i, j]
        for a in range(dz):
            yt[a, t] = z[t, a]
            for b in range(dz):
                Rt[a, b, t] = R[t, a, b]
    HP = np.zeros((dz, dx, n))
    for a in range(dz):
        for q in range(nnz[a]):
            k = col[a, q]
            h = H[a, k]
            for j in range(dx):
                for t in range(n):
                    HP[a, j, t] += h * Pt[k, j, t]
            for t in range(n):
                yt[a, t] -= h * xt[k, t]
    St = np.zeros((dz, dz, n))  # S = (H P) Hᵀ + R, symmetrised
    for a in range(dz):
        for b in range(dz):
            for q in range(nnz[b]):
                k = col[b, q]
                h = H[b, k]
                for t in range(n):
                    St[a, b, t] += HP[a, k, t] * h
    for a in range(dz):
        for b in range(a, dz):
            for t in range(n):
                v = 0.5 * (St[a, b, t] + St[b, a, t]) + 0.5 * (Rt[a, b, t] + Rt[b, a, t])
                St[a, b, t] = v
                St[b, a, t] = v
    A = St.copy()  # Gauss-Jordan: [S | I] → [I | S⁻¹]
    Si = np.zeros((dz, dz, n))
    for a in range(dz):
        for t in range(n):
            Si[a, a, t] = 1.0
    piv = np.empty(n)
    f = np.empty(n)
    for j in range(dz):
        for t in range(n):
            piv[t] = 1.0 / A[j, j, t]
        for b in range(dz):
            for t in range(n):
                A[j, b, t] *= piv[t]
                Si[j, b, t] *= piv[t]
        for a in range(dz):
            if a == j:
                continue
            for t in range(n):
                f[t] = A[a, j, t]
            for b in range(dz):
                for t in range(n):
                    A[a, b, t] -= f[t] * A[j, b, t]
                    Si[a, b, t] -= f[t] * Si[j, b, t]
    nis = np.zeros(n)
    for a in range(dz):
        for b in range(dz):
            for t in range(n):
                nis[t] += yt[a, t] * Si[a, b, t] * yt[b, t]
    K = np.zeros((dx, dz, n))  # K = P Hᵀ S⁻¹ = (H P)ᵀ S⁻¹ (P symmetric)
    for i in range(dx):
        for a in range(dz):
            for b in range(dz):
                for t in range(n):
                    K[i, a, t] += HP[b, i, t] * Si[b, a, t]
    for i in range(dx):  # x' = x + K y
        for a in range(dz):
            for t in range(n):
                xt[i, t] += K[i, a, t] * yt[a, t]
    for i in range(dx):  # M = P − K (H P), in place of Pt
        for j in range(dx):
            for a in range(dz):
                for t in range(n):
                    Pt[i, j, t] -= K[i, a, t] * HP[a, j, t]
    C = np.zeros((dx, dz, n))  # C = K R − M Hᵀ
    for i in range(dx):
        for b in range(dz):
            for a in range(dz):
                for t in range(n):
                    C[i, b, t] += K[i, a, t] * Rt[a, b, t]
            for q in range(nnz[b]):
                k = col[b, q]
                h = H[b, k]
                for t in range(n):
                    C[i, b, t] -= Pt[i, k, t] * h
    for i in range(dx):  # P' = M + C Kᵀ
        for j in range(dx):
            for b in range(dz):
                for t in range(n):
                    Pt[i, j, t] += C[i, b, t] * K[j, b, t]
    x2 = np.empty((n, dx))
    P2 = np.empty((n, dx, dx))
    y = np.empty((n, dz))
    S = np.empty((n, dz, dz))
    for t in range(n):
        for i in range(dx):
            x2[t, i] = xt[i, t]
            for j in range(i, dx):
                v = 0.5 * (Pt[i, j, t] + Pt[j, i, t])
                P2[t, i, j] = v
                P2[t, j, i] = v
        for a in range(dz):
            y[t, a] = yt[a, t]
            for b in range(dz):
                S[t, a, b] = St[a, b, t]
    return x2, P2, y, S, nis


@compiled(nb.types.Tuple((F2, F3, F2, F3, F1))(IN2, IN3, IN2, IN3, IN2))
def kf_update_kernel(x, P, z, R, H):
    """Joseph-form update of track t with measurement row t, for every track (see
    ``_kf_update_body``). Returns x', P', y, S and the NIS yᵀ S⁻¹ y."""
    return _kf_update_body(x, P, z, R, H)


@nb.njit(cache=True, nogil=True, fastmath=False, boundscheck=False, error_model="numpy")
def _kf_update_rows_body(x, P, z, R, H, match, scores, labels, det_scores, det_labels):
    """:func:`kf_update_rows_kernel`'s computation, callable from other compiled kernels."""
    n, dx = x.shape
    dz = H.shape[0]
    k = 0
    for t in range(n):
        if match[t] >= 0:
            k += 1
    xs = np.empty((k, dx))
    Ps = np.empty((k, dx, dx))
    zs = np.empty((k, dz))
    Rs = np.empty((k, dz, dz))
    r = 0
    for t in range(n):
        d = match[t]
        if d < 0:
            continue
        for i in range(dx):
            xs[r, i] = x[t, i]
            for j in range(dx):
                Ps[r, i, j] = P[t, i, j]
        for a in range(dz):
            zs[r, a] = z[d, a]
            for b in range(dz):
                Rs[r, a, b] = R[d, a, b]
        r += 1
    xu, Pu, yu, Su, nisu = _kf_update_body(xs, Ps, zs, Rs, H)
    x2 = np.empty((n, dx))
    P2 = np.empty((n, dx, dx))
    innov = np.full((n, dz + dz * dz + 1), np.nan)
    sc = np.empty(n)
    lb = np.empty(n, np.int64)
    r = 0
    for t in range(n):
        d = match[t]
        if d < 0:
            for i in range(dx):
                x2[t, i] = x[t, i]
                for j in range(dx):
                    P2[t, i, j] = P[t, i, j]
            sc[t] = scores[t]
            lb[t] = labels[t]
            continue
        for i in range(dx):
            x2[t, i] = xu[r, i]
            for j in range(dx):
                P2[t, i, j] = Pu[r, i, j]
        for a in range(dz):
            innov[t, a] = yu[r, a]
            for b in range(dz):
                innov[t, dz + a * dz + b] = Su[r, a, b]
        innov[t, dz + dz * dz] = nisu[r]
        sc[t] = det_scores[d]
        lb[t] = det_labels[d]
        r += 1
    return x2, P2, innov, sc, lb


@compiled(nb.types.Tuple((F2, F3, F2, F1, nb.int64[::1]))(
    IN2, IN3, IN2, IN3, IN2, IIN1, IN1, IIN1, IN1, IIN1))
def kf_update_rows_kernel(x, P, z, R, H, match, scores, labels, det_scores, det_labels):
    """Update the tracks with ``match[t] >= 0`` by detection ``match[t]`` (the others copied).

    One call for a tracker's whole update: gathers the matched rows, runs the same update as
    ``kf_update_kernel`` and scatters back, so x', P' and the score and label of the last
    associated detection come out for all N tracks. The innovation statistics come packed in
    one (N, dz + dz² + 1) array, row t = [y, S (row-major), NIS], NaN where not updated (each
    returned array costs a boxing; the consumer takes views).
    """
    return _kf_update_rows_body(x, P, z, R, H, match, scores, labels, det_scores, det_labels)


@compiled(F2(IN2, IN2))
def iou_kernel(a, b):
    """IoU of every box in ``a`` (T, 4) with every box in ``b`` (D, 4), boxes [x1, y1, x2, y2].

    A box with no positive area (inverted, zero-size or NaN corners) overlaps nothing: IoU 0.
    """
    na = a.shape[0]
    nb_ = b.shape[0]
    area_a = np.empty(na)
    for i in range(na):
        area_a[i] = max(a[i, 2] - a[i, 0], 0.0) * max(a[i, 3] - a[i, 1], 0.0)
    area_b = np.empty(nb_)
    for j in range(nb_):
        area_b[j] = max(b[j, 2] - b[j, 0], 0.0) * max(b[j, 3] - b[j, 1], 0.0)
    out = np.zeros((na, nb_))
    for i in range(na):
        if not area_a[i] > 0.0:  # NaN counts as no area
            continue
        for j in range(nb_):
            if not area_b[j] > 0.0:
                continue
            iw = min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0])
            ih = min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1])
            if iw > 0.0 and ih > 0.0:
                inter = iw * ih
                out[i, j] = inter / (area_a[i] + area_b[j] - inter)
    return out


@compiled(F2(IN2))
def z_to_xyxy_kernel(z):
    """SORT [u, v, s, r] (first four columns of ``z``) → [x1, y1, x2, y2]; w = √s √r, h = s / w.

    Negative area or aspect counts as zero (a zero-size box); NaN stays NaN. √s √r rather than
    √(s r): the product under- or overflows for extreme but representable boxes (a box 1e-200 px
    wide and 1 px high would become zero-size).
    """
    n = z.shape[0]
    out = np.empty((n, 4))
    for i in range(n):
        s = z[i, 2]
        r = z[i, 3]
        if s < 0.0:
            s = 0.0
        if r < 0.0:
            r = 0.0
        w = np.sqrt(s) * np.sqrt(r)
        h = s / w if w > 0.0 else 0.0
        out[i, 0] = z[i, 0] - 0.5 * w
        out[i, 1] = z[i, 1] - 0.5 * h
        out[i, 2] = z[i, 0] + 0.5 * w
        out[i, 3] = z[i, 1] + 0.5 * h
    return out


@compiled(nb.float64(nb.float64[::1], nb.int64, nb.int64))
def pairwise_sum(a, lo, n):  # pragma: no cover - compiled
    """Sum of a[lo:lo+n] in numpy's pairwise order (8 running sums per block of ≤ 128, halves
    beyond), so the result is bit-identical to ``ndarray.sum`` of the same values."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    if n <= 128:
        r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
        r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
        i = 8
        while i < n - n % 8:
            r0 += a[lo + i]
            r1 += a[lo + i + 1]
            r2 += a[lo + i + 2]
            r3 += a[lo + i + 3]
            r4 += a[lo + i + 4]
            r5 += a[lo + i + 5]
            r6 += a[lo + i + 6]
            r7 += a[lo + i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[lo + i]
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return pairwise_sum(a, lo, n2) + pairwise_sum(a, lo + n2, n - n2)

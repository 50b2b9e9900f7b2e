"""Gated data association: cost matrices (Mahalanobis, IoU) and one-to-one Hungarian assignment.

Each cost matrix is one compiled call over all (track, detection) pairs (Mahalanobis, IoU); the
assignment never returns a pair whose cost lies outside its gate.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from scipy.stats import chi2

from perception.detections import z_to_xyxy
from perception.kernels import F2, IN2, IN3, compiled, iou_kernel

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class Assignment(NamedTuple):
    """Result of :func:`associate`: ``matches`` (K, 2) rows [track, detection], plus leftovers."""

    matches: IntArray  # (K, 2) [track index, detection index]
    unmatched_tracks: IntArray  # (T - K,)
    unmatched_dets: IntArray  # (D - K,)


def chi2_gate(gate_probability: float, dim: int) -> float:
    """Squared-Mahalanobis gate that a true measurement passes with ``gate_probability`` (χ²)."""
    if not 0.0 < gate_probability < 1.0:
        raise ValueError(f"gate_probability must be in (0, 1), got {gate_probability}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return float(chi2.ppf(gate_probability, dim))


def _solve(S: FloatArray, y: FloatArray) -> FloatArray:
    """S⁻¹ y for stacks of (m, m) matrices and (m,) vectors; pseudo-inverse if one is singular."""
    try:
        out = np.linalg.solve(S, y[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.einsum("...ij,...j->...i", np.linalg.pinv(S), y)
    return np.asarray(out, dtype=np.float64)


@nb.njit(cache=True, nogil=True, fastmath=False, boundscheck=False, error_model="numpy")
def mahalanobis_body(zp, Sp, zd, Rd):
    """:func:`mahalanobis_kernel`'s computation, callable from other compiled kernels."""
    n_t, m = zp.shape
    n_d = zd.shape[0]
    d2 = np.empty((n_t, n_d))
    shared = True
    for j in range(1, n_d):
        for a in range(m):
            for b in range(m):
                if not Rd[j, a, b] == Rd[0, a, b]:
                    shared = False
    zt = np.empty((m, n_d))
    Rt = np.empty((m, m, n_d))
    for j in range(n_d):
        for a in range(m):
            zt[a, j] = zd[j, a]
            for b in range(m):
                Rt[a, b, j] = Rd[0 if shared else j, a, b]
    L = np.empty((m, m, n_d))
    Ls = np.empty((m, m))
    w = np.empty((m, n_d))
    v = np.empty(n_d)
    acc = np.empty(n_d)
    bad = 0
    for i in range(n_t):
        if shared:  # one factor for the row: S does not depend on the detection
            for a in range(m):
                for b in range(a + 1):
                    u = Sp[i, a, b] + Rt[a, b, 0]
                    for k in range(b):
                        u = u - Ls[a, k] * Ls[b, k]
                    if a == b:
                        Ls[a, b] = np.sqrt(u) if u > 0.0 else np.nan
                    else:
                        Ls[a, b] = u / Ls[b, b]
            for a in range(m):
                c = zp[i, a]
                for j in range(n_d):
                    v[j] = zt[a, j] - c
                for k in range(a):
                    f = Ls[a, k]
                    for j in range(n_d):
                        v[j] = v[j] - f * w[k, j]
                g = Ls[a, a]
                for j in range(n_d):
                    u = v[j] / g
                    w[a, j] = u
                    acc[j] = (0.0 if a == 0 else acc[j]) + u * u
        else:
            for a in range(m):
                for b in range(a + 1):
                    s = Sp[i, a, b]
                    for j in range(n_d):
                        v[j] = s + Rt[a, b, j]
                    for k in range(b):
                        for j in range(n_d):
                            v[j] = v[j] - L[a, k, j] * L[b, k, j]
                    if a == b:
                        for j in range(n_d):
                            L[a, a, j] = np.sqrt(v[j]) if v[j] > 0.0 else np.nan
                    else:
                        for j in range(n_d):
                            L[a, b, j] = v[j] / L[b, b, j]
            for a in range(m):
                c = zp[i, a]
                for j in range(n_d):
                    v[j] = zt[a, j] - c
                for k in range(a):
                    for j in range(n_d):
                        v[j] = v[j] - L[a, k, j] * w[k, j]
                for j in range(n_d):
                    u = v[j] / L[a, a, j]
                    w[a, j] = u
                    acc[j] = (0.0 if a == 0 else acc[j]) + u * u
        for j in range(n_d):
            d2[i, j] = acc[j]
            if not np.isfinite(acc[j]):
                bad += 1
    return d2, bad


@compiled(nb.types.Tuple((F2, nb.int64))(IN2, IN3, IN2, IN3))
def mahalanobis_kernel(zp, Sp, zd, Rd):
    """d²[i, j] = |L⁻¹ y|², y = z_j − ẑ_i, S = Sp_i + R_j = L Lᵀ (Cholesky), and the number of
    pairs whose S is not positive definite (their d² is non-finite). One call for all pairs.

    Detections-last (each innermost loop runs over the detections, so it vectorises); when all
    detections share one R, each track's factor is computed once instead of once per pair.
    """
    return mahalanobis_body(zp, Sp, zd, Rd)


def _resolve_singular(
    d2: FloatArray, zp: FloatArray, Sp: FloatArray, zd: FloatArray, Rd: FloatArray
) -> FloatArray:
    """``d2`` with its non-finite entries (S not positive definite) recomputed by a solve, or a
    pseudo-inverse where S is singular."""
    ti, di = np.nonzero(~np.isfinite(d2))
    y = zd[di] - zp[ti]
    d2[ti, di] = np.einsum("ni,ni->n", y, _solve(Sp[ti] + Rd[di], y))
    return d2


def mahalanobis_cost(
    z_pred: FloatArray, S_pred: FloatArray, z: FloatArray, R: FloatArray
) -> FloatArray:
    """Squared Mahalanobis distances d²[i, j] = yᵀ S⁻¹ y, y = z_j − ẑ_i, S = H P_i Hᵀ + R_j.

    ``z_pred`` (T, m) predicted measurements and ``S_pred`` (T, m, m) their covariances H P Hᵀ;
    ``z`` (D, m) detections with covariances ``R`` (D, m, m). Returns (T, D). Vectorized over
    all pairs (one compiled Cholesky per pair); the rare pair whose S is singular is solved with a
    pseudo-inverse instead.
    """
    zp = np.asarray(z_pred, dtype=np.float64)
    Sp = np.asarray(S_pred, dtype=np.float64)
    zd = np.asarray(z, dtype=np.float64)
    Rd = np.asarray(R, dtype=np.float64)
    n_t, n_d = zp.shape[0], zd.shape[0]
    if n_t == 0 or n_d == 0:
        return np.zeros((n_t, n_d))
    d2, bad = mahalanobis_kernel(zp, Sp, zd, Rd)
    return _resolve_singular(d2, zp, Sp, zd, Rd) if bad else d2


def iou_matrix(a_xyxy: FloatArray, b_xyxy: FloatArray) -> FloatArray:
    """Intersection over union of every box in ``a`` (T, 4) with every box in ``b`` (D, 4).

    One compiled call; a box with no positive area overlaps nothing (IoU 0).
    """
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(-1, 4)
    out: FloatArray = iou_kernel(a, b)
    return out


def iou_matrix_z(z_a: FloatArray, z_b: FloatArray) -> FloatArray:
    """:func:`iou_matrix` of boxes given as SORT measurements [u, v, s, r] (T, 4) and (D, 4).

    A box with non-positive area or aspect is empty and overlaps nothing.
    """
    za = np.asarray(z_a, dtype=np.float64).reshape(-1, 4)
    zb = np.asarray(z_b, dtype=np.float64).reshape(-1, 4)
    out: FloatArray = iou_kernel(z_to_xyxy(za), z_to_xyxy(zb))
    return out


def _one_to_one(cost: FloatArray, feasible: NDArray[np.bool_]) -> tuple[IntArray, IntArray]:
    """Gated one-to-one matches (rows ascending): as many as possible, then least total cost.

    When no track and no detection has two gated partners, the gated pairs are the unique
    answer and the Hungarian solver is skipped (the common case with well separated objects).
    Pairs outside the gate get a cost larger than any sum of feasible costs, so the Hungarian
    solution first maximises the number of gated matches, then minimises their total cost;
    infeasible pairs it was forced to pick are dropped afterwards.
    """
    ti, di = np.nonzero(feasible)  # ti ascending
    k = ti.shape[0]
    # (sets of a few ints are cheaper than the four array reductions that say the same)
    if k <= 1 or (len(set(ti.tolist())) == k and len(set(di.tolist())) == k):
        return ti, di
    fc = cost[feasible]
    lo = float(fc.min())
    span = float(fc.max()) - lo
    big = (min(cost.shape) + 1) * (span + 1.0)
    rows, cols = linear_sum_assignment(np.where(feasible, cost - lo, big))
    keep = feasible[rows, cols]
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


def associate(cost: FloatArray, gate: float) -> Assignment:
    """One-to-one assignment minimising total cost among pairs with ``cost <= gate``.

    First the number of gated matches is maximised, then their total cost minimised (Hungarian,
    scipy); pairs with non-finite cost are never matched. Matches come in ascending track order.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost must be (T, D), got shape {c.shape}")
    n_t, n_d = c.shape
    if n_t == 0 or n_d == 0:
        ti = di = np.zeros(0, np.int64)
    else:
        feasible = np.isfinite(c)
        feasible &= c <= gate
        ti, di = _one_to_one(c, feasible)
    t_mask = np.ones(n_t, bool)
    t_mask[ti] = False
    d_mask = np.ones(n_d, bool)
    d_mask[di] = False
    return Assignment(
        np.column_stack((ti, di)), np.flatnonzero(t_mask), np.flatnonzero(d_mask)
    )

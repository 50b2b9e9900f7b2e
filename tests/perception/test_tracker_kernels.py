"""Tracker kernels against the array formulations they replace (kept here as references):
the Mahalanobis cost matrix, the association cascade, the update of the matched rows and the
lifecycle rules give the same numbers bit for bit on seeded random cases."""

from __future__ import annotations

import numpy as np
import pytest

from perception.association import chi2_gate, mahalanobis_cost, mahalanobis_kernel
from perception.detections import Detections
from perception.kalman import kf_update
from perception.kernels import kf_update_rows_kernel
from perception.models import make_model
from perception.tracker import Tracker, _associate_kernel, _lifecycle_kernel

Arr = np.ndarray
_T, _C, _K, _D = 0, 1, 2, 3


def cholesky_d2_reference(zp: Arr, Sp: Arr, zd: Arr, Rd: Arr) -> Arr:
    """The former array formulation: S = L Lᵀ factored entry-wise over the (T, D) pair grid."""
    if bool(np.all(Rd == Rd[0])):
        Rd = Rd[:1]
    m = zp.shape[1]
    L: dict[tuple[int, int], Arr] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in range(m):
            for b in range(a + 1):
                v = Sp[:, None, a, b] + Rd[None, :, a, b]
                for k in range(b):
                    v = v - L[a, k] * L[b, k]
                L[a, b] = np.sqrt(np.where(v > 0.0, v, np.nan)) if a == b else v / L[b, b]
        w: list[Arr] = []
        d2 = np.zeros((zp.shape[0], zd.shape[0]))
        for a in range(m):
            v = zd[None, :, a] - zp[:, None, a]
            for k in range(a):
                v = v - L[a, k] * w[k]
            v = v / L[a, a]
            w.append(v)
            d2 = d2 + v * v
    return d2


def random_spd(rng: np.random.Generator, n: int, m: int, scale: float) -> Arr:
    A = rng.normal(0.0, scale, (n, m, m))
    return A @ np.swapaxes(A, 1, 2) + 0.01 * np.eye(m)


@pytest.mark.parametrize("seed", range(12))
def test_mahalanobis_kernel_equals_the_pair_grid_formulation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = (2, 4)[seed % 2]
    n_t, n_d = int(rng.integers(0, 9)), int(rng.integers(1, 9))
    zp = rng.normal(0.0, 5.0, (n_t, m))
    Sp = random_spd(rng, n_t, m, 1.0)
    zd = rng.normal(0.0, 5.0, (n_d, m))
    shared = seed % 3 == 0
    Rd = np.broadcast_to(random_spd(rng, 1, m, 0.5), (n_d, m, m)).copy() if shared \
        else random_spd(rng, n_d, m, 0.5)
    if seed % 4 == 1 and n_t:
        Sp[0] = -Rd[0]  # S = 0: not positive definite
    d2, bad = mahalanobis_kernel(zp, Sp, zd, Rd)
    ref = cholesky_d2_reference(zp, Sp, zd, Rd)
    np.testing.assert_array_equal(d2, ref)
    assert bad == int(np.count_nonzero(~np.isfinite(ref)))
    if n_t:
        full = mahalanobis_cost(zp, Sp, zd, Rd)
        assert np.all(np.isfinite(full))
        np.testing.assert_array_equal(full[np.isfinite(ref)], ref[np.isfinite(ref)])


def dets_at(rng: np.random.Generator, t: float, p: Arr, sigma: Arr | float) -> Detections:
    s = np.broadcast_to(np.asarray(sigma, float), (p.shape[0],))
    return Detections(z=p, R=s[:, None, None] ** 2 * np.eye(2), scores=rng.uniform(0, 1, len(p)),
                      labels=rng.integers(0, 4, len(p)), t=t)


@pytest.mark.parametrize("seed", range(20))
def test_associate_kernel_equals_the_cascade(seed: int) -> None:
    """When the kernel reports the simple case, its matches are the cascade's; a tracker's
    association (kernel or fallback) always equals the cascade on the full cost matrix."""
    rng = np.random.default_rng(seed)
    tr = Tracker("cv", n_init=2, init_window=3, gate_probability=0.99)
    p = rng.uniform(0.0, 30.0 if seed % 2 else 8.0, (int(rng.integers(2, 9)), 2))
    t = 0.0
    for _ in range(int(rng.integers(1, 4))):
        t += 0.1
        tr.step(t, dets_at(rng, t, p + rng.normal(0, 0.3, p.shape), 0.3))
    t += 0.1
    x, P = tr._predicted(t)
    q = np.concatenate([p, rng.uniform(0.0, 30.0, (int(rng.integers(0, 4)), 2))])
    d = dets_at(rng, t, q + rng.normal(0, 0.5, q.shape), rng.uniform(0.2, 0.6, len(q)))
    zp, Sp = tr._meas(x, P)
    ti, di = tr._cascade(mahalanobis_cost(zp, Sp, d.z, d.R))
    ref = np.full(len(tr), -1)
    ref[ti] = di
    match, n_left, simple = _associate_kernel(zp, Sp, d.z, d.R, tr._status, tr._gate,
                                              tr._recovery_gate)
    if simple:
        np.testing.assert_array_equal(match, ref)
        assert n_left == len(q) - len(ti)
    got, n_left2 = tr._associate(x, P, d)
    np.testing.assert_array_equal(got, ref)
    assert n_left2 == len(q) - len(ti)


@pytest.mark.parametrize("seed", range(8))
def test_update_rows_kernel_equals_the_update_of_the_gathered_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    dx, dz = (4, 2) if seed % 2 else (7, 4)
    n, m = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    x = rng.normal(0.0, 3.0, (n, dx))
    P = random_spd(rng, n, dx, 1.0)
    z = rng.normal(0.0, 3.0, (m, dz))
    R = random_spd(rng, m, dz, 0.3)
    H = np.eye(dz, dx)
    match = np.full(n, -1)
    rows = rng.permutation(n)[: min(n, m, int(rng.integers(0, n + 1)))]
    match[rows] = rng.permutation(m)[: rows.size]
    scores, labels = rng.uniform(0, 1, n), rng.integers(0, 5, n)
    ds, dl = rng.uniform(0, 1, m), rng.integers(0, 5, m)
    x2, P2, innov, sc, lb = kf_update_rows_kernel(x, P, z, R, H, match, scores, labels, ds, dl)
    ti = np.flatnonzero(match >= 0)
    di = match[ti]
    res = kf_update(x[ti], P[ti], z[di], R[di], H)
    ex, eP = x.copy(), P.copy()
    ex[ti], eP[ti] = res.x, res.P
    np.testing.assert_array_equal(x2, ex)
    np.testing.assert_array_equal(P2, eP)
    y = np.full((n, dz), np.nan)
    S = np.full((n, dz, dz), np.nan)
    nis = np.full(n, np.nan)
    y[ti], S[ti], nis[ti] = res.y, res.S, res.nis
    np.testing.assert_array_equal(innov[:, :dz], y)
    np.testing.assert_array_equal(innov[:, dz:dz + dz * dz].reshape(n, dz, dz), S)
    np.testing.assert_array_equal(innov[:, -1], nis)
    es, el = scores.copy(), labels.copy()
    es[ti], el[ti] = ds[di], dl[di]
    np.testing.assert_array_equal(sc, es)
    np.testing.assert_array_equal(lb, el)


def lifecycle_reference(
    status: Arr, hits: Arr, t_update: Arr, history: Arr, born_look: Arr, dup: Arr, updated: Arr,
    pos: Arr, cov: Arr, tf: float, measured: bool, tentative: bool, window_mask: int,
    n_init: int, first: int, max_coast: float, max_cov_trace: float, coalesce: bool,
    coalesce_gate: float, coalesce_steps: int,
) -> tuple[Arr, ...]:
    """The former mask formulation of the lifecycle rules (status, hits, t_update, history,
    dup, dead)."""
    n = status.shape[0]
    dead = np.zeros(n, bool)
    hits = hits + updated
    t_update = np.where(updated, tf, t_update)
    history = history.copy()
    dup = dup.copy()
    if measured:
        if tentative:
            history = ((history << 1) | updated) & window_mask
            tent = status == _T
            promote = tent & (np.bitwise_count(history) >= n_init)
            tent ^= promote
            dead |= tent & ~updated & (born_look <= first)
            status = np.where(tent, _T, _K - updated)
        else:
            status = np.where(updated, _C, _K)
    else:
        status = np.where(status == _C, _K, status)
    dead |= (tf - t_update) > max_coast
    dead |= ~(cov[:, 0, 0] + cov[:, 1, 1] <= max_cov_trace)
    if coalesce and n > 1:
        alive = ~dead
        shadowed = np.zeros(n, bool)
        eligible = (status != _T) & alive
        for j in range(n):
            for i in range(j):
                if not (eligible[i] and (not updated[i] or not updated[j])):
                    continue
                d = pos[j] - pos[i]
                S = cov[j] + cov[i]
                det = S[0, 0] * S[1, 1] - S[0, 1] * S[1, 0]
                q = (S[1, 1] * d[0] ** 2 - (S[0, 1] + S[1, 0]) * d[0] * d[1]
                     + S[0, 0] * d[1] ** 2)
                if det > 0.0 and q / det <= coalesce_gate:
                    shadowed[j] = True
        shadowed &= alive
        dup = np.where(shadowed, dup + 1, 0)
        dead |= dup >= coalesce_steps
    elif coalesce and n == 1:
        dup[:] = 0
    return status, hits, t_update, history, dup, dead


@pytest.mark.parametrize("seed", range(30))
def test_lifecycle_kernel_equals_the_mask_rules(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    status = rng.integers(0, 3, n)
    hits = rng.integers(1, 9, n)
    t_update = rng.uniform(0.0, 1.0, n)
    history = rng.integers(0, 32, n)
    born_look = rng.integers(0, 10, n)
    dup = rng.integers(0, 3, n)
    match = np.where(rng.random(n) < 0.6, rng.integers(0, 20, n), -1)
    pos = rng.uniform(0.0, 6.0, (n, 2))
    cov = random_spd(rng, n, 2, 1.5)
    if n > 2:
        cov[1, 0, 0] = np.nan
    tf = 1.0 + float(rng.uniform(0.0, 0.5))
    measured, tentative, coalesce = (bool(b) for b in rng.random(3) < (0.8, 0.5, 0.8))
    coalesce &= measured
    args = (tf, measured, tentative, 31, 3, int(rng.integers(0, 10)), 0.8, 4.0, coalesce,
            chi2_gate(0.999, 2), int(rng.integers(1, 3)))
    h2, d2 = history.copy(), dup.copy()
    st, hi, tu, upd, n_dead, n_tent = _lifecycle_kernel(
        status, hits, t_update, h2, born_look, d2, match, pos, cov, *args)
    est, ehi, etu, ehist, edup, edead = lifecycle_reference(
        status, hits, t_update, history, born_look, dup, match >= 0, pos, cov, *args)
    np.testing.assert_array_equal(upd, match >= 0)
    np.testing.assert_array_equal(st, np.where(edead, _D, est))
    np.testing.assert_array_equal(hi, ehi)
    np.testing.assert_array_equal(tu, etu)
    np.testing.assert_array_equal(h2, ehist)
    np.testing.assert_array_equal(d2, edup)
    assert n_dead == int(edead.sum())
    assert n_tent == int(np.count_nonzero((est == _T) & ~edead))


def kinematic_F_reference(order: int, dt: float) -> Arr:
    n = order + 1
    F1 = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            F1[i, j] = dt ** (j - i) / float(np.prod(np.arange(1, j - i + 1)))
    return np.kron(F1, np.eye(2)).astype(np.float64)


def kinematic_Q_reference(order: int, dt: float, q: float) -> Arr:
    n = order + 1
    Q1 = np.zeros((n, n))
    fact = [1.0, 1.0, 2.0, 6.0]
    for i in range(n):
        for j in range(n):
            pi, pj = order - i, order - j
            e = pi + pj + 1
            Q1[i, j] = q * dt**e / (e * fact[pi] * fact[pj])
    return np.kron(Q1, np.eye(2)).astype(np.float64)


@pytest.mark.parametrize("model", ["cv", "ca"])
def test_kinematic_F_and_Q_equal_the_kron_formulation(model: str) -> None:
    rng = np.random.default_rng(7)
    for q in (0.0, 0.37, 1.0, 12.5):
        m = make_model(model, q)
        order = 1 if model == "cv" else 2
        for dt in [0.0, 1e-300, 0.1, 0.30000000000000004 - 0.2, *rng.uniform(0.0, 5.0, 40)]:
            np.testing.assert_array_equal(m.F(float(dt)), kinematic_F_reference(order, float(dt)))
            np.testing.assert_array_equal(m.Q(float(dt)),
                                          kinematic_Q_reference(order, float(dt), q))
